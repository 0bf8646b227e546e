"""`medner soup`."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soup", help="average the weights of runs fine-tuned from the same start into one run")
    p.add_argument("runs", nargs="+", help="two or more run directories (same labels, tokenizer and starting weights)")
    p.add_argument("-o", "--output", required=True, help="new run directory for the averaged model")
    p.set_defaults(func=run_soup)


def run_soup(args: argparse.Namespace) -> int:
    from medner.run.soup import average_runs

    out = average_runs(args.runs, args.output)
    log.info("run directory: %s (load it like any run: medner predict --model %s ...)", out, out)
    return 0
