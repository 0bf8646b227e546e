#!/usr/bin/env python
"""Weight averaging (model soup) on CCKS 2019: members, their soup, and an ensemble of their outputs, on dev.

    .venv/bin/python scripts/bench/bench_soup.py RUN RUN [RUN ...] [--out-dir runs/bench_soup] \
        [--markdown BENCHMARKS.md]

RUNs are run directories fine-tuned from the same starting weights (e.g. the `weak_gold` variant of
bench_ccks2019.py with other seeds or epochs). Scores, on the dev records of CCKS 2019 (the last 100 of
part 2, as in bench_ccks2019.py): every member; the soup of all members (`medner soup`, written to
OUT_DIR/soup); with three or more members, the soup of every pair; and, for comparison, the ensemble of all
members' outputs (mean emissions and mean CRF potentials, one Viterbi), which costs one encoder pass per
member. Prints seqeval strict micro-F1, per-type F1 and the prediction time of the dev records per row.

Needs ../shared/data (exits with a message when absent).
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from bench_ccks2019 import CONFIG, TYPES, per_type_f1, publish  # noqa: E402


def output_ensemble(annotators):
    """The first annotator, predicting with the mean emissions and mean CRF potentials of all of them.

    Members must share tokenizer and tags (as soup members do); used here only to measure what a soup gives up.
    """
    import torch

    first = annotators[0]
    members = [a.tagger.emissions for a in annotators]
    first.tagger.emissions = lambda *args, **kw: sum(f(*args, **kw) for f in members) / len(members)
    with torch.no_grad():
        for name in ("start_transitions", "end_transitions", "transitions"):
            mean = sum(getattr(a.tagger.crf, name) for a in annotators) / len(annotators)
            getattr(first.tagger.crf, name).copy_(mean)
    return first


def scored(title: str, annotator, dev) -> dict:
    from medner.evaluate import score

    started = time.perf_counter()
    report = score(dev, annotator.predict_records(dev))
    row = {"model": title, "seconds": time.perf_counter() - started, "micro_f1": report["micro"]["f1"],
           "precision": report["micro"]["precision"], "recall": report["micro"]["recall"],
           "per_type": per_type_f1(report)}
    print(f"{title}: F1 {100 * row['micro_f1']:.2f} (P {100 * row['precision']:.2f} R {100 * row['recall']:.2f}) "
          f"in {row['seconds']:.0f} s", flush=True)
    return row


def markdown(rows: list[dict], command: str) -> str:
    lines = ["## Weight averaging (model soup) on CCKS 2019", "",
             "Same split and scorer as the model table (dev = the last 100 records of part 2, seqeval strict, %). "
             "A soup is one model whose weights are the mean of its members' (LoRA merged first): the cost of "
             "inference is one model's. The output ensemble runs every member and averages emissions and CRF "
             "potentials. Time: predicting the 100 dev records on this machine, batch 16.", "",
             "| model | dev strict micro-F1 | P | R | " + " | ".join(TYPES) + " | predict time |",
             "|" + "---|" * (5 + len(TYPES))]
    for r in rows:
        lines.append(f"| {r['model']} | {100 * r['micro_f1']:.2f} | {100 * r['precision']:.2f} | "
                     f"{100 * r['recall']:.2f} | " + " | ".join(f"{100 * r['per_type'][t]:.2f}" for t in TYPES)
                     + f" | {r['seconds']:.0f} s |")
    return "\n".join(lines + ["", f"Command: `{command}`", ""]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories fine-tuned from the same starting weights")
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_soup"), help="the soup goes to OUT_DIR/soup")
    parser.add_argument("--markdown", help="write the table into this Markdown file (e.g. BENCHMARKS.md)")
    args = parser.parse_args()
    if not (ROOT.parent / "shared" / "data" / "corpora" / "ccks2019_yidu").is_dir():
        print("../shared/data/corpora/ccks2019_yidu not found: this benchmark needs the CCKS 2019 files",
              file=sys.stderr)
        return 2
    if len(args.runs) < 2:
        parser.error("name at least two runs")
    import medner
    from medner.config import load_config
    from medner.run.soup import average_runs
    from medner.training.records import split_train_dev

    _, dev = split_train_dev(load_config(CONFIG))
    names = [Path(r).parent.name + "/" + Path(r).name for r in args.runs]
    rows = [scored(f"member {n}", medner.load(r), dev) for n, r in zip(names, args.runs)]
    soup_dir = Path(args.out_dir) / "soup"
    if soup_dir.exists():
        shutil.rmtree(soup_dir)  # this script's own output from an earlier call
    rows.append(scored(f"soup of all {len(args.runs)}", medner.load(average_runs(args.runs, soup_dir)), dev))
    if len(args.runs) > 2:
        for (i, a), (j, b) in itertools.combinations(enumerate(args.runs), 2):
            with tempfile.TemporaryDirectory(dir=args.out_dir) as tmp:
                rows.append(scored(f"soup of {names[i]} + {names[j]}",
                                   medner.load(average_runs([a, b], Path(tmp) / "soup")), dev))
    rows.append(scored(f"output ensemble of all {len(args.runs)}",
                       output_ensemble([medner.load(r) for r in args.runs]), dev))
    publish(markdown(rows, "python scripts/bench/bench_soup.py " + " ".join(args.runs)), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
