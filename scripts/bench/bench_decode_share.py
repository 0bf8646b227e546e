#!/usr/bin/env python
"""Share of inference time spent in CRF decoding (Viterbi + marginals) versus encoder + head, at batch 16.

    .venv/bin/python scripts/bench/bench_decode_share.py --model runs/emr_zh [--corpus data/sample/dev.jsonl --format jsonl]
    .venv/bin/python scripts/bench/bench_decode_share.py --model runs/emr_zh --marginals-only

``--marginals-only`` times the CRF's two marginal algorithms (log-space and scaled forward-backward) on the
same random emissions (batch 16 x 200 tokens) in one process, which is immune to machine load differences.

Windows are built as the Annotator builds them, sorted by length and batched; each phase is timed with
perf_counter around the call (CUDA synchronised). Prints seconds per phase and the decode share.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def decode_share(annotator, texts: list[str], batch_size: int = 16, repeats: int = 1) -> dict:
    """Seconds in encoder+head vs CRF decoding over the windows of ``texts``."""
    import torch

    from medner.model.windows import collate, token_windows

    windows = [(t, w, enc) for t in texts for w, enc in token_windows(annotator.tokenizer, t, annotator.window)]
    windows.sort(key=lambda item: len(item[2].input_ids))
    pad = annotator.tokenizer.pad_token_id or 0
    encode_s = decode_s = 0.0
    with torch.inference_mode():
        for _ in range(repeats):
            for lo in range(0, len(windows), batch_size):
                chunk = windows[lo:lo + batch_size]
                rows = [{"input_ids": e.input_ids, "label_index": e.label_positions,
                         "lex": annotator._lexicon_ids(t, w, e)} for t, w, e in chunk]
                batch = {k: v.to(annotator.device) for k, v in collate(rows, pad).items()}
                t0 = time.perf_counter()
                emissions = annotator.tagger.emissions(batch["input_ids"], batch["attention_mask"],
                                                       batch["label_index"], batch["lex"])
                if emissions.is_cuda:
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                annotator.tagger.decode_emissions(emissions, batch["label_mask"])
                t2 = time.perf_counter()
                encode_s += t1 - t0
                decode_s += t2 - t1
    return {"windows": len(windows), "batch_size": batch_size, "encode_s": round(encode_s, 3),
            "decode_s": round(decode_s, 3), "decode_share": round(decode_s / max(1e-9, encode_s + decode_s), 4)}


def compare_marginals(crf, batch_size: int, seq: int = 200, repeats: int = 5) -> dict:
    """Median seconds of log-space vs scaled marginals on identical random emissions, and their max difference."""
    import statistics

    import torch

    torch.manual_seed(0)
    emissions = torch.randn(seq, batch_size, crf.num_tags) * 3  # time-first, as the CRF's internals take it
    mask = torch.ones(seq, batch_size, dtype=torch.bool)
    out = {}
    with torch.inference_mode():
        results = {}
        for name, fn in (("log_space_s", crf._marginals), ("scaled_s", crf._marginals_scaled)):
            fn(emissions, mask)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                results[name] = fn(emissions, mask)
                times.append(time.perf_counter() - t0)
            out[name] = round(statistics.median(times), 4)
    out["speedup"] = round(out["log_space_s"] / out["scaled_s"], 1)
    out["max_abs_diff"] = float((results["log_space_s"] - results["scaled_s"]).abs().max())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run directory")
    parser.add_argument("--corpus", default=str(ROOT / "data" / "sample" / "dev.jsonl"))
    parser.add_argument("--format", default="jsonl")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--marginals-only", action="store_true", help="compare the two marginal algorithms")
    args = parser.parse_args()
    import medner
    from medner.corpus import read_corpus

    annotator = medner.load(args.model, batch_size=args.batch_size)
    if args.marginals_only:
        print(json.dumps(compare_marginals(annotator.tagger.crf, args.batch_size)))
        return 0
    texts = [r.text for r in read_corpus(args.corpus, format=args.format)]
    decode_share(annotator, texts[:1], args.batch_size)  # warm-up
    print(json.dumps(decode_share(annotator, texts, args.batch_size, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
