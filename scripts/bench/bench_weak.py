#!/usr/bin/env python
"""Weak supervision on CCKS 2019: per-type precision/recall/F1 of every labelling function and of the
aggregated weak labels, before and after normalisation, plus ICD-linking speed.

    .venv/bin/python scripts/bench/bench_weak.py [--config configs/weak_labels/ccks2019.yaml] [--json OUT.json] [--train]

Data: the 1,000 CCKS 2019 training records in ../shared/data (or $MEDNER_SHARED); "dev" is the last 100
records of part 2, "all" the 1,000. Nothing is trained: the label model is fitted on the records it labels,
without their gold. Matching is exact (start, end and label).

* before: raw official names, no aliases, no curated lists, no rules: ICD-10 names (the four ICD-10 sources
  of the lexicon, official rows only) -> 疾病和诊断, ICD-9-CM-3 names -> 手术, the crawled drug list -> 药物;
  nothing exists for 解剖部位, 实验室检验, 影像检查. Overlaps resolved by majority vote (longest first).
* after: the config as written (normalised lexicon with aliases, curated lists, rules), aggregated by
  majority vote and by Dawid-Skene.

The ICD lexicon is lexicons/build/lexicon_zh.tsv when present, else built in memory (about 10 s).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from medner.corpus import read_corpus  # noqa: E402
from medner.lexicon.link import IcdLinker  # noqa: E402
from medner.weak import WeakPipeline, read_weak_config, weak_report  # noqa: E402

LABELS = ["疾病和诊断", "手术", "药物", "解剖部位", "实验室检验", "影像检查"]
ICD10 = ["icd10_national", "icd10_beijing", "gnuhealth_zh", "icd10_cn_3char"]
BEFORE = [
    {"name": "icd10_official", "kind": "lexicon", "lexicon": "icd", "sources": ICD10,
     "label_map": {"疾病和诊断": "疾病和诊断"}, "include_aliases": False},
    {"name": "icd9cm3_official", "kind": "lexicon", "lexicon": "icd", "sources": ["icd9cm3_national"],
     "label_map": {"手术": "手术"}, "include_aliases": False},
    {"name": "drug_list_raw", "kind": "lexicon", "lexicon": "icd", "sources": ["qasystem_drug"],
     "label_map": {"药物": "药物"}},
]


def shared_data() -> Path:
    path = Path(os.environ.get("MEDNER_SHARED") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        sys.exit(f"../shared/data not found ({path}): this benchmark needs the CCKS 2019 corpus")
    return path


def load_records(shared: Path) -> list:
    folder = shared / "corpora" / "ccks2019_yidu"
    records = []
    for name in ("subtask1_training_part1.txt", "subtask1_training_part2.txt"):
        records += list(read_corpus(folder / name, "ccks2019"))
    return records


def evaluate(pipeline: WeakPipeline, records: list) -> dict:
    t0 = time.perf_counter()
    outputs = pipeline.outputs(records)
    t_lf = time.perf_counter() - t0
    aggregated, timing = {}, {"functions_s": round(t_lf, 2)}
    reliability = None
    for method in ("majority", "dawid_skene"):
        t0 = time.perf_counter()
        result = pipeline.label(records, method=method, outputs=outputs, link=False)
        timing[f"{method}_s"] = round(time.perf_counter() - t0, 2)
        aggregated[f"weak:{method}"] = [r.spans for r in result.records]
        if method == "dawid_skene":
            reliability = result.aggregator.reliability()
    report = weak_report(records, outputs, aggregated, reliability=reliability, labels=LABELS)
    report["timing"] = timing
    return report


def cell(report: dict, source: str, label: str) -> str:
    row = report["sources"].get(source, {}).get("per_type", {}).get(label)
    if not row:
        return "– / – / –"
    return f"{row['precision']:.2f} / {row['recall']:.2f} / {row['f1']:.2f}"


def best_function(report: dict, label: str) -> str:
    rows = [(item["per_type"][label]["f1"], name) for name, item in report["sources"].items()
            if item["kind"] == "function" and label in item["per_type"]]
    return max(rows)[1] if rows else ""


def table(before: dict, after: dict, split: str) -> str:
    lines = [f"**{split}** ({after['records']} records; P / R / F1, exact spans)", "",
             "| type | gold | before (raw official names) | best single function after | after: majority vote | "
             "after: Dawid-Skene |", "|---|---:|---|---|---|---|"]
    for label in LABELS:
        best = best_function(after, label)
        lines.append(f"| {label} | {after['gold_spans'].get(label, 0)} | {cell(before, 'weak:majority', label)} | "
                     f"{best}: {cell(after, best, label)} | {cell(after, 'weak:majority', label)} | "
                     f"{cell(after, 'weak:dawid_skene', label)} |")
    mb, ma, md = (before["sources"]["weak:majority"]["micro"], after["sources"]["weak:majority"]["micro"],
                  after["sources"]["weak:dawid_skene"]["micro"])
    fmt = lambda m: f"{m['precision']:.2f} / {m['recall']:.2f} / {m['f1']:.2f}"  # noqa: E731
    lines.append(f"| micro | {sum(after['gold_spans'].values())} | {fmt(mb)} | | {fmt(ma)} | {fmt(md)} |")
    return "\n".join(lines)


def per_function(after: dict) -> str:
    lines = ["| function | type | spans | P | R | F1 | conflicts |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, item in after["sources"].items():
        if item["kind"] != "function":
            continue
        for label, row in item["per_type"].items():
            lines.append(f"| {name} | {label} | {row['spans']} | {row['precision']:.3f} | {row['recall']:.3f} | "
                         f"{row['f1']:.3f} | {row['conflicts']} |")
    return "\n".join(lines)


def linker_speed(records: list, lexicon_entries) -> dict:
    t0 = time.perf_counter()
    linker = IcdLinker(lexicon_entries)
    build = time.perf_counter() - t0
    mentions = [(r.text[s.start:s.end], s.label) for r in records for s in r.spans if s.label in ("疾病和诊断", "手术")]
    t0 = time.perf_counter()
    found = [linker.best(m, label) for m, label in mentions]
    dt = time.perf_counter() - t0
    methods: dict[str, int] = {}
    for f in found:
        key = f.method if f else "none"
        methods[key] = methods.get(key, 0) + 1
    return {"mentions": len(mentions), "mentions_per_s": round(len(mentions) / dt), "by_method": methods,
            "build_s": round(build, 2), "entries": len(linker)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "weak_labels/ccks2019.yaml"))
    parser.add_argument("--json", default=None, help="write every number as JSON here")
    parser.add_argument("--train", action="store_true", help="also the first 900 records (where the conventions "
                        "of the config are decided; the dev 100 are not looked at)")
    args = parser.parse_args()
    records = load_records(shared_data())
    splits = {"dev (last 100 of part 2)": records[-100:], "all 1,000": records}
    if args.train:
        splits["train (first 900)"] = records[:-100]
    t0 = time.perf_counter()
    config = read_weak_config(args.config)
    after_pipe = WeakPipeline(config)
    before_pipe = WeakPipeline(config, functions=BEFORE, lexicons=after_pipe.lexicons)
    setup = time.perf_counter() - t0
    results = {}
    for split, recs in splits.items():
        results[split] = {"before": evaluate(before_pipe, recs), "after": evaluate(after_pipe, recs)}
    out = [f"Setup (lexicons + labelling functions): {setup:.1f} s", ""]
    for split, res in results.items():
        out += [table(res["before"], res["after"], split), ""]
        t = res["after"]["timing"]
        out += [f"time: functions {t['functions_s']} s, majority {t['majority_s']} s, dawid-skene "
                f"{t['dawid_skene_s']} s", ""]
    out += ["Per labelling function (all 1,000 records):", "", per_function(results["all 1,000"]["after"]), ""]
    speed = linker_speed(records, after_pipe.lexicon("icd"))
    out.append(f"ICD linker ({speed['entries']} coded entries, built in {speed['build_s']} s): {speed['mentions']} "
               f"gold 疾病和诊断/手术 mentions, {speed['mentions_per_s']} mentions/s (one core), "
               f"by step: {speed['by_method']}")
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "linker": speed}, ensure_ascii=False, indent=1),
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
