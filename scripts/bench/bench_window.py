#!/usr/bin/env python
"""Prediction window length vs dev strict F1: one CCKS 2019 run predicting the dev records with windows of
several lengths (the run was trained with its config's ``window.max_chars``).

    .venv/bin/python scripts/bench/bench_window.py --model runs/bench3/lora_crf [--max-chars 250 400 500]

Dev = the last 100 records of part 2 (as in bench_ccks2019.py); the overlap is 16% of the window, batch 16, CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dev import ccks2019_dev  # noqa: E402  (sibling script)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run directory trained on CCKS 2019")
    parser.add_argument("--max-chars", type=int, nargs="+", default=[250, 400, 500])
    args = parser.parse_args()
    dev = ccks2019_dev()
    if dev is None:
        return 2
    import medner
    from medner.evaluate import score

    for max_chars in args.max_chars:
        annotator = medner.load(args.model, device="cpu", batch_size=16,
                                window={"max_chars": max_chars, "overlap": int(0.16 * max_chars)})
        f1 = score(dev, list(annotator.predict_records(dev)))["micro"]["f1"]
        print(f"window {max_chars} chars (overlap {annotator.window.overlap}): dev strict micro-F1 {100 * f1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
