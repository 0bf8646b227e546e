"""`medner predict`: spans for a corpus with a trained run directory."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
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


def run_predict(args: argparse.Namespace) -> int:
    from medner import load
    from medner.corpus import read_corpus, write_jsonl

    annotator = load(args.model, device=args.device, batch_size=args.batch_size, icd_lexicon=args.icd_lexicon)
    records = read_corpus(args.input, format=args.format, encoding=args.encoding)
    count = write_jsonl(annotator.predict_records(records), args.output)
    log.info("wrote predictions for %s records to %s", count, args.output)
    return 0
