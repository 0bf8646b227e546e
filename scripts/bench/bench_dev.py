#!/usr/bin/env python
"""Strict micro-F1 (and per type) of run directories on the CCKS 2019 dev split (the last 100 records of part 2),
whatever they were trained on: the demo model, a soup, a student, an exported run.

    .venv/bin/python scripts/bench/bench_dev.py runs/emr_zh [RUN ...]

Needs ../shared/data (exits with a message when absent). Prints one JSON line per run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ccks2019_dev() -> list | None:
    """The dev records of configs/ccks2019.yaml (the last 100 of part 2), or None, said on stderr, without the
    CCKS 2019 files in ../shared/data."""
    if not (ROOT.parent / "shared" / "data" / "corpora" / "ccks2019_yidu").is_dir():
        print("../shared/data/corpora/ccks2019_yidu not found: this benchmark needs the CCKS 2019 files", file=sys.stderr)
        return None
    from medner.config import load_config
    from medner.training.records import split_train_dev

    return split_train_dev(load_config(ROOT / "configs" / "ccks2019.yaml"))[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    args = parser.parse_args()
    dev = ccks2019_dev()
    if dev is None:
        return 2
    import medner
    from medner.evaluate import score

    for run in args.runs:
        started = time.perf_counter()
        result = score(dev, medner.load(run, device="cpu").predict_records(dev))
        print(json.dumps({"run": run, "dev_micro_f1": round(100 * result["micro"]["f1"], 2),
                          "per_type": {k: round(100 * v["f1"], 2) for k, v in result.get("per_type", {}).items()},
                          "seconds": round(time.perf_counter() - started, 1)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
