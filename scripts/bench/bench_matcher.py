#!/usr/bin/env python
"""Throughput, build time and memory of the lexicon matcher on one core.

    .venv/bin/python scripts/bench/bench_matcher.py [--lexicon FILE] [--min-chars 2000000] [--json]

Lexicon: ``--lexicon FILE`` (a built lexicon TSV); else the real ICD lexicons, built in a temporary
folder from ``configs/lexicon_zh.yaml`` when ``../shared/data`` (or ``$MEDNER_SHARED``) is present; else
50,000 synthetic terms (seeded). Text: the 1,000 CCKS 2019 training records when present, else synthetic
records (seeded) in which about one character in ten belongs to a term. Records are matched one
``find()`` call each, in passes over all records until ``--min-chars`` characters have been matched;
the reported speed is the median over passes. "Reload" is the pickle-free persistence path: read the
lexicon file and rebuild the automaton (:meth:`LexiconMatcher.from_file`). Memory is the resident-set
growth while building the matcher, and pyahocorasick's own estimate of the automaton size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from medner.lexicon import LexiconEntry, LexiconMatcher, build_lexicon, load_lexicon, write_lexicon  # noqa: E402
from medner.lexicon.normalize import fold  # noqa: E402


def shared_data() -> Path | None:
    path = Path(os.environ.get("MEDNER_SHARED") or REPO.parent / "shared" / "data")
    return path if path.is_dir() else None


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"  # noqa: E501


def synthetic_terms(n: int, rng: random.Random) -> list[LexiconEntry]:
    labels = ["疾病和诊断", "手术", "药物"]
    terms: set[str] = set()
    while len(terms) < n:
        terms.add("".join(rng.choice(_CHARS) for _ in range(rng.randint(2, 10))))
    return [LexiconEntry(t, labels[i % 3], f"X{i:05d}", t, "synthetic") for i, t in enumerate(sorted(terms))]


def synthetic_texts(terms: list[str], rng: random.Random, records: int = 1000, length: int = 420) -> list[str]:
    texts = []
    for _ in range(records):
        parts: list[str] = []
        size = 0
        while size < length:
            if rng.random() < 0.02:
                piece = rng.choice(terms)
            else:
                piece = rng.choice(_CHARS) + ("，" if rng.random() < 0.1 else "")
            parts.append(piece)
            size += len(piece)
        texts.append("".join(parts))
    return texts


def ccks_texts(shared: Path) -> list[str] | None:
    folder = shared / "corpora" / "ccks2019_yidu"
    files = [folder / "subtask1_training_part1.txt", folder / "subtask1_training_part2.txt"]
    if not all(f.is_file() for f in files):
        return None
    texts = []
    for f in files:
        for line in f.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                texts.append(json.loads(line)["originalText"])
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lexicon", help="lexicon TSV (default: real ICD lexicons if present, else synthetic)")
    parser.add_argument("--config", default=str(REPO / "configs" / "lexicon_zh.yaml"), help="lexicon config")
    parser.add_argument("--terms", type=int, default=50_000, help="synthetic lexicon size (default 50000)")
    parser.add_argument("--min-chars", type=int, default=2_000_000, help="characters to match in total")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    rng = random.Random(13)
    shared = shared_data()

    with tempfile.TemporaryDirectory() as tmp:
        if args.lexicon:
            lexicon_path, lexicon_kind = Path(args.lexicon), "file"
        elif shared is not None:
            lexicon_path, lexicon_kind = Path(tmp) / "lexicon.tsv", "real ICD lexicons (configs/lexicon_zh.yaml)"
            os.environ.setdefault("MEDNER_SHARED", str(shared))
            build_lexicon(args.config, lexicon_path)
        else:
            lexicon_path, lexicon_kind = Path(tmp) / "lexicon.tsv", f"{args.terms} synthetic terms"
            write_lexicon(synthetic_terms(args.terms, rng), lexicon_path, version="synthetic")

        t0 = time.perf_counter()
        entries = load_lexicon(lexicon_path).entries
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        fold("build the fold tables")  # once per process
        t_tables = time.perf_counter() - t0
        rss0 = rss_mb()
        t0 = time.perf_counter()
        matcher = LexiconMatcher(entries, label_priority=["疾病和诊断", "手术", "药物"])
        t_build = time.perf_counter() - t0
        rss1 = rss_mb()
        t0 = time.perf_counter()
        LexiconMatcher.from_file(lexicon_path, label_priority=["疾病和诊断", "手术", "药物"])
        t_reload = time.perf_counter() - t0
        automaton_mb = matcher._automaton.get_stats()["total_size"] / 2**20

    texts = ccks_texts(shared) if shared is not None else None
    text_kind = "CCKS 2019 training records"
    if texts is None:
        texts = synthetic_texts([e.term for e in entries[:: max(1, len(entries) // 5000)]], rng)
        text_kind = "synthetic records"
    chars_per_pass = sum(len(t) for t in texts)
    passes = max(3, -(-args.min_chars // chars_per_pass))
    speeds = []
    spans = 0
    for _ in range(passes):
        t0 = time.perf_counter()
        spans = sum(len(matcher.find(t)) for t in texts)
        speeds.append(chars_per_pass / (time.perf_counter() - t0))
    for text in texts[:50]:  # offsets are sacred: every span is exactly its raw characters
        for span in matcher.find(text):
            assert 0 <= span.start < span.end <= len(text)

    result = {
        "lexicon": lexicon_kind,
        "entries": len(entries),
        "keys": len(matcher),
        "text": text_kind,
        "records": len(texts),
        "chars_per_pass": chars_per_pass,
        "passes": passes,
        "spans_per_pass": spans,
        "chars_per_s_median": round(statistics.median(speeds)),
        "chars_per_s_min": round(min(speeds)),
        "read_lexicon_s": round(t_read, 3),
        "fold_tables_s": round(t_tables, 3),
        "build_matcher_s": round(t_build, 3),
        "reload_from_file_s": round(t_reload, 3),
        "rss_growth_build_mb": round(rss1 - rss0, 1),
        "automaton_mb": round(automaton_mb, 1),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"lexicon: {result['lexicon']}: {result['entries']} entries, {result['keys']} folded keys")
        print(f"text: {text_kind}: {len(texts)} records, {chars_per_pass} chars x {passes} passes, "
              f"{spans} spans per pass")
        print(f"speed: {result['chars_per_s_median']:,} chars/s median (min {result['chars_per_s_min']:,}), one core")
        print(f"build: read file {t_read:.2f} s, fold tables {t_tables:.2f} s (once per process), "
              f"build automaton {t_build:.2f} s, "
              f"reload from file (read + build) {t_reload:.2f} s")
        print(f"memory: +{result['rss_growth_build_mb']} MiB RSS while building, "
              f"automaton {result['automaton_mb']} MiB (pyahocorasick estimate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
