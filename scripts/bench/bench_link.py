#!/usr/bin/env python
"""ICD link precision per match kind on a checked sample of CCKS 2019 links, and coverage.

    .venv/bin/python scripts/bench/bench_link.py [--lexicon lexicons/build/lexicon_zh.tsv] [--min-score 0.6]
                                                 [--no-head-check] [--json OUT.json] [--todo]

The sample (``tests/data/link/ccks2019_link_sample.tsv``) holds, for gold 疾病和诊断 / 手术 mentions of CCKS 2019
part 2, the codes some linker gave them and a verdict (correct / partial / wrong) made by reading the mention
next to the code's ICD name; it holds no record text (record line, offsets, a sha256 of the mention). This
script re-links every sampled mention with the linker as it is now and counts, per match kind (exact / alias /
normalised / fuzzy), the links judged correct, partial and wrong, and those not judged yet (a code the sample
has no verdict for: ``--todo`` prints them on this terminal, mention and ICD name included, so that a person
can judge them and add rows). Precision = correct / judged. Strata (see the sample's header):

* dev: the census of the last 100 records of part 2 (every link there is in the sample); the head-word rules
  were designed on it, so its precision is optimistic;
* alias_301_500: the alias links of lines 301-500 (dev has few);
* tuning_401_500: normalised and fuzzy links of lines 401-500, judged after the dev rules, then used to add
  the multi-site rules;
* blind_301_400: normalised and fuzzy links of lines 301-400, judged once the rules were frozen: the honest
  figure for those two kinds.

Coverage = linked / gold 疾病和诊断 + 手术 mentions of dev.

Needs ../shared/data (or $MEDNER_SHARED); without it the script says so and exits 0. The ICD lexicon is
lexicons/build/lexicon_zh.tsv when present, else built in memory from configs/lexicon_zh.yaml (about 10 s).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from medner.corpus import read_corpus  # noqa: E402
from medner.lexicon.build import build_lexicon  # noqa: E402
from medner.lexicon.link import FUZZY_MIN_SCORE, MATCH_KINDS, IcdLinker  # noqa: E402
from medner.lexicon.store import load_lexicon  # noqa: E402

SAMPLE = REPO / "tests" / "data" / "link" / "ccks2019_link_sample.tsv"
CORPUS = ("corpora", "ccks2019_yidu", "subtask1_training_part2.txt")
LABELS = ("疾病和诊断", "手术")
DEV_LINES = range(501, 601)
VERDICTS = ("correct", "partial", "wrong")
#: the match kinds each stratum samples (None: all)
STRATA = {"dev": None, "alias_301_500": ("alias",), "tuning_401_500": ("normalised", "fuzzy"),
          "blind_301_400": ("normalised", "fuzzy")}


def shared_data() -> Path | None:
    path = Path(os.environ.get("MEDNER_SHARED") or REPO.parent / "shared" / "data")
    return path if path.is_dir() else None


def read_sample(path: Path) -> list[dict]:
    """Rows of the sample TSV (comment lines skipped), with ints for line, start and end."""
    rows = []
    header = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if header is None:
            header = fields
            continue
        row = dict(zip(header, fields))
        for key in ("line", "start", "end"):
            row[key] = int(row[key])
        rows.append(row)
    return rows


def load_linker(args: argparse.Namespace) -> IcdLinker:
    path = Path(args.lexicon)
    if path.is_file():
        entries = load_lexicon(path).entries
    else:
        print(f"{path} not found: building the lexicon in memory from configs/lexicon_zh.yaml", file=sys.stderr)
        entries = build_lexicon(REPO / "configs" / "lexicon_zh.yaml").entries
    return IcdLinker(entries, labels=LABELS, min_score=args.min_score, head_check=not args.no_head_check)


def evaluate(linker: IcdLinker, sample: list[dict], records: dict[int, object], todo: bool) -> dict:
    """Per stratum and match kind: counts of verdicts, precision; plus dev coverage."""
    verdicts = {(r["line"], r["start"], r["end"], r["code"]): r["verdict"] for r in sample}
    mentions: dict[tuple[int, int, int], dict] = {}
    for r in sample:
        mentions.setdefault((r["line"], r["start"], r["end"]), r)
    counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    unjudged = []
    for (line, start, end), row in sorted(mentions.items()):
        text = records[line].text
        mention = text[start:end]
        if hashlib.sha256(mention.encode("utf-8")).hexdigest() != row["mention_sha256"]:
            sys.exit(f"line {line} [{start}, {end}): the mention's sha256 differs from the sample's: "
                     "not the corpus the sample was made on")
        link = linker.best(mention, row["label"])
        if link is None:
            counts[row["stratum"]]["unlinked"]["n"] += 1
            continue
        verdict = verdicts.get((line, start, end, link.code), "unjudged")
        kinds = STRATA.get(row["stratum"])
        if kinds is not None and link.match not in kinds:
            continue  # the stratum samples other kinds only
        counts[row["stratum"]][link.match][verdict] += 1
        if verdict == "unjudged":
            unjudged.append((line, start, end, row["label"], mention, link))
    if todo and unjudged:
        print(f"{len(unjudged)} links without a verdict (add rows to {SAMPLE.name}):", file=sys.stderr)
        for line, start, end, label, mention, link in unjudged:
            print(f"  line {line} [{start}, {end}) {label}: {mention} -> {link.code} {link.canonical} "
                  f"({link.match} {link.score})", file=sys.stderr)
    dev_mentions = sum(1 for line in DEV_LINES for s in records[line].spans if s.label in LABELS)
    out: dict = {"min_score": linker.min_score, "head_check": linker.head_check, "strata": {}}
    for stratum, kinds in counts.items():
        table = {}
        for kind in (*MATCH_KINDS, "all"):
            c = Counter()
            for k in (MATCH_KINDS if kind == "all" else (kind,)):
                c.update(kinds.get(k, Counter()))
            judged = sum(c[v] for v in VERDICTS)
            table[kind] = {**{v: c[v] for v in (*VERDICTS, "unjudged")}, "links": judged + c["unjudged"],
                           "precision": round(c["correct"] / judged, 4) if judged else None}
        out["strata"][stratum] = table
    dev = out["strata"].get("dev", {}).get("all", {"links": 0})
    out["coverage"] = {"dev_mentions": dev_mentions, "linked": dev["links"],
                       "coverage": round(dev["links"] / dev_mentions, 4) if dev_mentions else None}
    return out


def markdown(result: dict) -> str:
    lines = [f"min_score {result['min_score']}, head check {'on' if result['head_check'] else 'off'}", "",
             "| stratum | match | links | correct | partial | wrong | unjudged | precision |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for stratum, kinds in STRATA.items():
        table = result["strata"].get(stratum, {})
        for kind in (*(kinds or MATCH_KINDS), "all"):
            row = table.get(kind)
            if not row or not row["links"] or (kind == "all" and kinds is not None and len(kinds) == 1):
                continue
            p = "" if row["precision"] is None else f"{row['precision']:.3f}"
            name = ("**all emitted**" if kinds is None else "all") if kind == "all" else kind
            lines.append(f"| {stratum} | {name} | {row['links']} | {row['correct']} | {row['partial']} | "
                         f"{row['wrong']} | {row['unjudged']} | {p} |")
    cov = result["coverage"]
    lines += ["", f"coverage (dev): {cov['linked']} of {cov['dev_mentions']} gold 疾病和诊断 + 手术 mentions linked "
              f"({cov['coverage']:.1%})"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lexicon", default=str(REPO / "lexicons" / "build" / "lexicon_zh.tsv"))
    parser.add_argument("--sample", default=str(SAMPLE))
    parser.add_argument("--min-score", type=float, default=FUZZY_MIN_SCORE,
                        help=f"lowest Dice coefficient of a fuzzy link (default {FUZZY_MIN_SCORE})")
    parser.add_argument("--no-head-check", action="store_true", help="link without the head-word check")
    parser.add_argument("--json", default=None, help="also write the numbers as JSON here")
    parser.add_argument("--todo", action="store_true", help="print the links that have no verdict yet")
    args = parser.parse_args()
    shared = shared_data()
    if shared is None:
        print("skipped: ../shared/data not found (set MEDNER_SHARED): this benchmark needs CCKS 2019")
        return 0
    records = {r.meta["line"]: r for r in read_corpus(shared.joinpath(*CORPUS), "ccks2019")}
    result = evaluate(load_linker(args), read_sample(Path(args.sample)), records, args.todo)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
