"""`medner cache`: list the cache root's entries (imported encoders, tokenised windows, soft targets) and remove
those no run has used for a while. Every entry is rebuilt on demand, so removing one costs time, never data."""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from medner.cache import KINDS, cache_entries, cache_root, remove_entries, select_for_pruning
from medner.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cache`` command group."""
    group = subparsers.add_parser("cache", help="list or prune the cache (encoders, tokenised windows, soft targets)",
                                  description=__doc__)
    sub = group.add_subparsers(dest="cache_command", metavar="COMMAND")
    sub.required = True

    ls = sub.add_parser("list", help="every entry with its kind, size and last use, oldest first")
    _add_root(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per entry instead of a table")
    ls.set_defaults(func=run_list)

    prune = sub.add_parser("prune", help="remove entries not used for DAYS days (or all of them)",
                           description="Remove cache entries that no run has written or read for --unused-for DAYS "
                                       "days (or every one with --all), and temporary folders of writers that died. "
                                       "A run training now may be reading an entry: prune between runs, or with a "
                                       "--unused-for longer than your longest run.")
    _add_root(prune)
    when = prune.add_mutually_exclusive_group(required=True)
    when.add_argument("--unused-for", type=_days, metavar="DAYS", help="entries last used at least DAYS days ago")
    when.add_argument("--all", action="store_true", help="every entry")
    prune.add_argument("--kind", nargs="+", choices=list(KINDS), default=None,
                       help="only entries of these kinds (default: every kind)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    prune.set_defaults(func=run_prune)


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"cache root, as encoder.cache_dir in a config (default: $MEDNER_CACHE or {cache_root()})")


def _root(args: argparse.Namespace) -> Path:
    """The cache root; a ``--cache-dir`` that is no folder, or a ``$MEDNER_CACHE`` that is a file, is refused (a typo
    listed "0 entries"); a root from the environment or the default may not exist yet (nothing cached)."""
    if args.cache_dir is not None and not args.cache_dir.is_dir():
        raise ConfigError("--cache-dir is not a folder", where=str(args.cache_dir), field="--cache-dir",
                          fix="give the cache root (encoder.cache_dir of a config, or $MEDNER_CACHE)")
    root = cache_root(args.cache_dir)
    if args.cache_dir is None and os.environ.get("MEDNER_CACHE") and root.exists() and not root.is_dir():
        raise ConfigError("$MEDNER_CACHE is not a folder", where=str(root), field="MEDNER_CACHE",
                          fix="point MEDNER_CACHE at the cache root, or unset it")
    return root


def run_list(args: argparse.Namespace) -> int:
    """Print the entries of the cache root (a table, or JSON lines with ``--json``)."""
    root = _root(args)
    entries = cache_entries(root)
    if args.json:
        for e in entries:
            print(json.dumps({"kind": e.kind, "path": str(e.path), "bytes": e.size_bytes,
                              "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.last_used))}))
        return 0
    print(f"{'kind':<9} {'MB':>8}  {'last used':<16}  folder (under {root})")
    for e in entries:
        print(f"{e.kind:<9} {e.size_bytes / 2**20:8.1f}  {_when(e.last_used)}  {e.path.relative_to(root)}")
    print(f"{len(entries)} entries, {sum(e.size_bytes for e in entries) / 2**20:.1f} MB")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Remove the selected entries (or only list them with ``--dry-run``)."""
    root = _root(args)
    chosen = select_for_pruning(cache_entries(root), unused_for_days=None if args.all else args.unused_for,
                                kinds=set(args.kind) if args.kind else None)
    verb = "would remove" if args.dry_run else "removing"
    for e in chosen:
        log.info("%s %s (%s, %.1f MB, last used %s)", verb, e.path.relative_to(root), e.kind, e.size_bytes / 2**20,
                 _when(e.last_used))
    freed = sum(e.size_bytes for e in chosen) if args.dry_run else remove_entries(chosen)
    print(f"{'would free' if args.dry_run else 'freed'} {freed / 2**20:.1f} MB in {len(chosen)} entries under {root}")
    return 0


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        days = float("nan")
    if not days >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"a number of days >= 0, got {value}")
    return days


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
