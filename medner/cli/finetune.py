"""`medner finetune`."""
from __future__ import annotations

import argparse
import json
import logging
import os

from medner.cli import RESUME_HINT

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune encoder + LoRA + CRF from a YAML config")
    p.add_argument("config", help="YAML run configuration, e.g. configs/emr_zh.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="delete an earlier run in output_dir first (default: a non-empty output_dir is refused)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (training, dev evaluation); log lines as when stderr is not a terminal")
    p.set_defaults(func=run_finetune, on_interrupt=RESUME_HINT)


def run_finetune(args: argparse.Namespace) -> int:
    from medner.config import load_config
    from medner.run.output_dir import check_output

    config = load_config(args.config, args.overrides)
    check_output(config.output_dir, resume=args.resume, overwrite=args.overwrite)  # at once, before torch loads
    from medner.training.supervision import run_phases  # start-up time: torch, only once the run may start

    out = run_phases(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    report = out / "dev_report.json"
    if report.exists() and int(os.environ.get("RANK", "0")) == 0:
        from medner.evaluate import format_table

        print(f"dev strict F1 of the best epoch ({out}):")
        print(format_table(json.loads(report.read_text(encoding="utf-8"))))
    log.info("run directory: %s", out)
    return 0
