"""`medner distill`: a student run trained on the soft targets of teacher runs."""
from __future__ import annotations

import argparse
import logging

from medner.cli import RESUME_HINT

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="train one student run on the averaged CRF marginals of teacher runs",
                       description="The student starts from the first teacher (LoRA merged, optionally cut to "
                                   "--layers layers) and trains on alpha x the teachers' mean marginals + "
                                   "(1 - alpha) x the gold loss, with the first teacher's data and settings.")
    p.add_argument("teachers", nargs="+", help="teacher run directories (a soup counts as one; several = an ensemble)")
    p.add_argument("-o", "--output", required=True, help="the student's run directory")
    p.add_argument("--layers", type=int, default=0, help="keep this many encoder layers (0 = all)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the soft-target loss (default 0.5)")
    p.add_argument("--unlabelled", nargs="+", default=[], metavar="CORPUS",
                   help="extra texts that carry soft targets only (their annotations are dropped)")
    p.add_argument("--unlabelled-format", default="jsonl", help="corpus format of --unlabelled (default: jsonl)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the student's config, e.g. --set train.epochs=5 (repeatable)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true",
                       help="delete an earlier run in --output first (default: refused)")
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted student in --output from its last checkpoint (same teachers "
                            "and options)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_distill, on_interrupt=RESUME_HINT)


def run_distill(args: argparse.Namespace) -> int:
    from medner.training.distill import distill  # start-up time: torch

    out = distill(args.teachers, args.output, layers=args.layers, alpha=args.alpha, unlabelled=args.unlabelled,
                  unlabelled_format=args.unlabelled_format, overrides=args.overrides, progress=not args.no_progress,
                  overwrite=args.overwrite, resume=args.resume)
    log.info("student run directory: %s", out)
    return 0
