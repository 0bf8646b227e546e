#!/usr/bin/env python
"""fp32 vs bf16-autocast prediction on the CCKS 2019 dev records: strict F1, span agreement and time.

    .venv/bin/python scripts/bench/bench_precision.py --model runs/bench2/lora_crf [--threads 1]

Dev = the last 100 records of part 2 (as in bench_ccks2019.py). Both passes load the run afresh and predict
the same records at batch 16 on CPU, one after the other in one process; times are wall seconds of
`predict_records`. bf16 is fast only on CPUs with AMX bf16 units (elsewhere it is emulated).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run directory trained on CCKS 2019")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not (ROOT.parent / "shared" / "data" / "corpora" / "ccks2019_yidu").is_dir():
        print("../shared/data/corpora/ccks2019_yidu not found: this benchmark needs the CCKS 2019 files", file=sys.stderr)
        return 2
    import torch

    import medner
    from medner.config import load_config
    from medner.evaluate import score
    from medner.training.records import split_train_dev

    torch.set_num_threads(args.threads)
    _, dev = split_train_dev(load_config(ROOT / "configs" / "ccks2019.yaml"))
    spans = {}
    for name in ("fp32", "bf16"):
        annotator = medner.load(args.model, device="cpu", batch_size=args.batch_size, precision=name)
        started = time.perf_counter()
        predicted = list(annotator.predict_records(dev))
        seconds = time.perf_counter() - started
        f1 = score(dev, predicted)["micro"]["f1"]
        spans[name] = {(r.id, s.start, s.end, s.label) for r in predicted for s in r.spans}
        print(f"{name}: strict micro-F1 {100 * f1:.2f}, {seconds:.1f} s for {len(dev)} records "
              f"({sum(len(r.text) for r in dev) / seconds:,.0f} chars/s)")
    same = len(spans["fp32"] & spans["bf16"])
    print(f"spans: fp32 {len(spans['fp32'])}, bf16 {len(spans['bf16'])}, identical {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
