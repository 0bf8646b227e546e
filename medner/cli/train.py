"""`medner finetune`, `medner soup` and `medner predict`."""
from __future__ import annotations

import argparse
import json
import logging
import os

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune encoder + LoRA + CRF from a YAML config")
    p.add_argument("config", help="YAML run configuration, e.g. configs/emr_zh.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_finetune)

    p = sub.add_parser("soup", help="average the weights of runs fine-tuned from the same start into one run")
    p.add_argument("runs", nargs="+", help="two or more run directories (same labels, tokenizer and starting weights)")
    p.add_argument("-o", "--output", required=True, help="new run directory for the averaged model")
    p.set_defaults(func=run_soup)

    p = sub.add_parser("predict", help="predict spans for a corpus with a trained run directory")
    p.add_argument("input", help="corpus file or folder")
    p.add_argument("--model", required=True, help="run directory written by `medner finetune`")
    p.add_argument("--format", default="jsonl", help="input corpus format (default: jsonl)")
    p.add_argument("--encoding", default=None, help="input encoding, e.g. gb18030")
    p.add_argument("-o", "--output", required=True, help="output jsonl (the project's format)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--icd-lexicon", default=None,
                   help="link predicted spans to ICD codes with this coded lexicon TSV (default: the run's own, if any)")
    p.set_defaults(func=run_predict)


def run_finetune(args: argparse.Namespace) -> int:
    from medner.config import load_config
    from medner.training.supervision import train

    config = load_config(args.config, args.overrides)
    out = train(config, resume=args.resume, progress=not args.no_progress)
    report = out / "dev_report.json"
    if report.exists() and int(os.environ.get("RANK", "0")) == 0:
        from medner.evaluate import format_table

        print(f"dev strict F1 of the best epoch ({out}):")
        print(format_table(json.loads(report.read_text(encoding="utf-8"))))
    log.info("run directory: %s", out)
    return 0


def run_soup(args: argparse.Namespace) -> int:
    from medner.run.soup import average_runs

    out = average_runs(args.runs, args.output)
    log.info("run directory: %s (load it like any run: medner predict --model %s ...)", out, out)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from medner import load
    from medner.corpus import read_corpus, write_jsonl

    annotator = load(args.model, device=args.device, batch_size=args.batch_size, icd_lexicon=args.icd_lexicon)
    records = read_corpus(args.input, format=args.format, encoding=args.encoding)
    count = write_jsonl(annotator.predict_records(records), args.output)
    log.info("wrote predictions for %s records to %s", count, args.output)
    return 0
