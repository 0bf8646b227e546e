"""The `medner` command. Parses arguments and calls library functions; nothing else.

Each sub-module registers one command group with ``register(subparsers)``; a command is a function
``run(args) -> int``. A :class:`medner.errors.MednerError` is printed as one line (no traceback)
and the exit status is 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from medner.errors import MednerError

# command-group modules under medner.cli, in help order
_GROUPS = ("corpus", "evaluate", "finetune", "predict", "pretrain", "encoder", "lexicon", "weak", "annotate", "render",
           "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medner", description="Chinese clinical NER on EMRs: corpora, lexicons, training, prediction, scoring.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"medner.cli.{name}")
        except ModuleNotFoundError as exc:  # a group not written yet
            if exc.name == f"medner.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except MednerError as exc:
        print(f"medner: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medner: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
