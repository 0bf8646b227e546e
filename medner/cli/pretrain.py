"""`medner pretrain`: continued masked-LM pretraining of an encoder on raw clinical text."""
from __future__ import annotations

import argparse
import logging

from medner.cli import RESUME_HINT

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="continue masked-LM pretraining of an encoder on raw clinical text",
                       description="Masked-LM pretraining on the texts a YAML config names (configs/pretrain_*.yaml); "
                                   "writes a Hugging Face encoder directory for `encoder.name` in a finetune config.")
    p.add_argument("config", help="YAML pretraining configuration, e.g. configs/pretrain_clinical.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=100 (repeatable)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the earlier pretraining output in output_dir (never a finetune run or an imported "
                            "encoder)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: progress is logged every 10%% instead (as when stderr is not a terminal)")
    p.set_defaults(func=run_pretrain, on_interrupt=RESUME_HINT)


def run_pretrain(args: argparse.Namespace) -> int:
    from medner.config import load_pretrain_config
    from medner.training.pretrain import pretrain

    config = load_pretrain_config(args.config, args.overrides)
    out = pretrain(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    log.info("encoder directory: %s (use it as `encoder.name` in a finetune config)", out)
    return 0
