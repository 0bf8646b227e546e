"""`medner lexicon`: build, inspect and try the project's lexicon.

    medner lexicon build configs/lexicon_zh.yaml -o lexicons/build/lexicon_zh.tsv [--strict] [--json]
    medner lexicon stats lexicons/build/lexicon_zh.tsv [--json]
    medner lexicon match lexicons/build/lexicon_zh.tsv "右肺上叶肺癌术后" [--label-priority 疾病和诊断,手术]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from collections import Counter

from medner.errors import ConfigError
from medner.lexicon.build import build_lexicon, sidecar_path
from medner.lexicon.matcher import LexiconMatcher
from medner.lexicon.store import load_lexicon

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("lexicon", help="build and inspect the ICD lexicon",
                                  description=__doc__.splitlines()[0])
    sub = group.add_subparsers(dest="lexicon_command", metavar="ACTION")
    sub.required = True

    build = sub.add_parser("build", help="merge the sources of a lexicon config into one versioned TSV + .json")
    build.add_argument("config", help="lexicon config (YAML), e.g. configs/lexicon_zh.yaml")
    build.add_argument("-o", "--output", required=True,
                       help="lexicon TSV to write; its sidecar: FILE.tsv -> FILE.json, another name gets .json added")
    build.add_argument("--strict", action="store_true", help="fail at the first bad row of any source")
    build.add_argument("--json", action="store_true", help="print the sidecar JSON instead of a table")
    build.set_defaults(func=run_build)

    stats = sub.add_parser("stats", help="entries, labels, sources, aliases and fingerprint of a lexicon file")
    stats.add_argument("path", help="lexicon TSV")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=run_stats)

    match = sub.add_parser("match", help="print the lexicon matches in texts (arguments or stdin lines)")
    match.add_argument("path", help="lexicon TSV")
    match.add_argument("texts", nargs="*", help="texts to match; none: read lines from stdin")
    match.add_argument("--label-priority", default="", help="comma-separated labels, highest first (default: the `label_priority` the lexicon was built "
                            "with, from its .json sidecar)")
    match.add_argument("--min-length", type=int, default=2, help="shortest term matched (default 2)")
    match.set_defaults(func=run_match)


def run_build(args: argparse.Namespace) -> int:
    result = build_lexicon(args.config, args.output, strict=True if args.strict else None)
    side = result.sidecar
    if args.json:
        print(json.dumps(side, ensure_ascii=False, indent=2))
        return 0
    print(f"{args.output}: {side['entries']} entries ({side['aliases']} aliases), version {side['version']}, "
          f"{side['fingerprint']}")
    print(f"sidecar: {sidecar_path(args.output)}")
    header = f"{'source':<20} {'rows':>7} {'loaded':>7} {'merged':>7} {'bad':>6} {'skipped':>7} " \
             f"{'shadowed':>8} {'aliases':>7}"
    print(header)
    for s in side["sources"]:
        if s.get("missing"):
            print(f"{s['name']:<20} (missing, optional)")
            continue
        print(f"{s['name']:<20} {s['rows']:>7} {s['loaded']:>7} {s['merged_duplicates']:>7} "
              f"{sum(s['bad'].values()):>6} {sum(s['skipped'].values()):>7} {s.get('shadowed', 0):>8} "
              f"{s.get('aliases_added', 0):>7}")
    print("by label: " + ", ".join(f"{k} {v}" for k, v in side["by_label"].items()))
    return 0


def lexicon_stats(path: str) -> dict:
    """Summary of a lexicon file: counts by label, source and kind, term lengths, fingerprint."""
    lexicon = load_lexicon(path)
    entries = lexicon.entries
    lengths = sorted(len(e.term) for e in entries)
    return {
        "path": path,
        "version": lexicon.version,
        "fingerprint": lexicon.fingerprint,
        "entries": len(entries),
        "aliases": sum(1 for e in entries if e.is_alias),
        "with_code": sum(1 for e in entries if e.code),
        "distinct_terms": len({e.term for e in entries}),
        "by_label": dict(sorted(Counter(e.label for e in entries).items())),
        "by_source": dict(sorted(Counter(e.source for e in entries).items())),
        "term_length": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]}
        if lengths else {},
    }


def run_stats(args: argparse.Namespace) -> int:
    stats = lexicon_stats(args.path)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
        return 0
    print(f"{stats['path']}: {stats['entries']} entries, {stats['distinct_terms']} distinct terms, "
          f"{stats['aliases']} aliases, {stats['with_code']} with a code")
    print(f"version {stats['version']}, {stats['fingerprint']}")
    for key in ("by_label", "by_source"):
        print(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
    if stats["term_length"]:
        t = stats["term_length"]
        print(f"term length: min {t['min']}, median {t['median']}, max {t['max']}")
    return 0


def run_match(args: argparse.Namespace) -> int:
    if args.min_length < 1:
        raise ConfigError(f"--min-length must be >= 1, got {args.min_length}", field="--min-length",
                          fix="give the shortest term length to match in characters (default 2)")
    lexicon = load_lexicon(args.path)
    given = [p for p in args.label_priority.split(",") if p]
    priority = given or _sidecar_priority(args.path, lexicon.fingerprint)
    unknown = [p for p in priority if p not in lexicon.labels()]
    if unknown and given:
        raise ConfigError(f"--label-priority names {unknown[0]!r}, not a label of {args.path} "
                          f"({', '.join(lexicon.labels())})", field="--label-priority", fix="list labels the lexicon has")
    if unknown:  # from the build config: a label whose (optional) source was absent when the lexicon was built
        log.info("the build's label_priority names %s, which %s does not hold: left out", ", ".join(unknown),
                 args.path)
        priority = [p for p in priority if p not in unknown]
    matcher = LexiconMatcher(lexicon.entries, min_length=args.min_length, label_priority=priority)
    texts = args.texts or (line.rstrip("\n") for line in sys.stdin)
    for text in texts:
        print(json.dumps({"text": text, "spans": [s.to_dict(text) for s in matcher.find(text)]}, ensure_ascii=False))
    return 0


def _sidecar_priority(path: str, fingerprint: str) -> list[str]:
    """The `label_priority` the lexicon was built with (its JSON sidecar), or none. A lexicon not named ``*.tsv``
    built before sidecars kept the whole name (``lex.v1`` -> ``lex.json``) is still found, when the old sidecar's
    fingerprint is the lexicon's."""
    for side in dict.fromkeys((sidecar_path(path), Path(path).with_suffix(".json"))):
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or (side != sidecar_path(path) and meta.get("fingerprint") != fingerprint):
            continue
        if side != sidecar_path(path):
            log.warning("%s: label_priority read from %s, the sidecar's name before medner named it %s (build the "
                        "lexicon again to rename it)", path, side, sidecar_path(path).name)
        priority = meta.get("label_priority") or []
        return [str(p) for p in priority] if isinstance(priority, list) else []
    return []
