"""The `medner` command. Parses arguments and calls library functions; nothing else.

Each sub-module registers one command group with ``register(subparsers)``; a command is a function
``run(args) -> int``. A :class:`medner.errors.MednerError` is printed as one line (no traceback)
and the exit status is 2. ``-v`` / ``-q`` (more / less logging) are accepted before or after the command;
output cut short by a closed pipe (``medner evaluate --json | head``) ends quietly with status 141.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from medner import __version__
from medner.corpus.validate import ON_ERROR
from medner.errors import MednerError

# command-group modules under medner.cli, in help order
_GROUPS = ("corpus", "evaluate", "finetune", "soup", "predict", "pretrain", "distill", "encoder", "lexicon", "weak",
           "annotate", "render", "export", "cache")
_SUB = "_sub"  # suffix of the dests of -v/-q given after the command
BROKEN_PIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _add_verbosity(parser: argparse.ArgumentParser, suffix: str = "") -> None:
    group = parser.add_argument_group("logging")
    default = 0 if not suffix else argparse.SUPPRESS
    group.add_argument("-v", "--verbose", action="count", default=default, dest=f"verbose{suffix}",
                       help="more logging (-v: debug); accepted before or after the command")
    group.add_argument("-q", "--quiet", action="count", default=default, dest=f"quiet{suffix}",
                       help="less logging (-q: warnings and errors only, -qq: errors only)")


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield sub
                yield from _subparsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medner", description="Chinese clinical NER on EMRs: corpora, lexicons, training, prediction, scoring.")
    parser.add_argument("--version", action="version", version=f"medner {__version__}")
    _add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(f"medner.cli.{name}").register(sub)
    for child in _subparsers(parser):
        if not any(a.dest == "verbose" + _SUB for a in child._actions):
            _add_verbosity(child, _SUB)
    return parser


def add_on_error_option(parser: argparse.ArgumentParser) -> None:
    """``--on-error raise|skip`` for a command that reads a corpus (`on_error` of its readers)."""
    parser.add_argument("--on-error", choices=ON_ERROR, default="raise",
                        help="a malformed record or span: stop with its file and line (raise, the default), or skip "
                             "it, count it and go on (skip)")


#: what an interrupted training command prints: how to continue it (`--overwrite` would start it over)
RESUME_HINT = "rerun the command with --resume (in place of --overwrite, if given) to continue from the last checkpoint"


def log_level(args: argparse.Namespace) -> int:
    """INFO by default; each -v one step towards DEBUG, each -q one towards ERROR (counted wherever given)."""
    verbose = getattr(args, "verbose", 0) + getattr(args, "verbose" + _SUB, 0)
    quiet = getattr(args, "quiet", 0) + getattr(args, "quiet" + _SUB, 0)
    return min(logging.ERROR, max(logging.DEBUG, logging.INFO + 10 * (quiet - verbose)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=log_level(args), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except MednerError as exc:
        print(f"medner: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", None)  # set by commands that resume
        print("medner: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_STATUS
    except OSError as exc:  # the file system said no (a path through a file, no permission, a full disk): one line
        logging.getLogger("medner").debug("the error's traceback (-v)", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        what = exc.strerror or exc
        if isinstance(exc, FileExistsError) and exc.filename and os.path.isfile(exc.filename):
            what = "is a file, so no folder can be made there for the output"  # mkdir of an output's parents
        print(f"medner: error: {where}{what}. Fix: check the path, its permissions and free space", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again (Python docs,
    "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
