#!/usr/bin/env python
"""Latency of text -> spans for one record of 100, 500 and 2,000 characters on one thread, warm and cold, per
model format: torch fp32, torch bf16 (opt-in autocast), exported fp32 and exported int8, and any other model
directory named with --extra (a distilled student, torch or exported).

    .venv/bin/python scripts/bench/bench_latency.py --model runs/ccks2019
    .venv/bin/python scripts/bench/bench_latency.py --model runs/ccks2019 --exported runs/ccks-ov-int8 \\
        --extra runs/student runs/student-ov-int8 --json latency.json

Exported models: the directories given with --exported; without it, the script exports --model itself into a
temporary folder, fp32 and int8 for each of --formats (default: openvino onnx), int8 calibrated on CCKS 2019
training part 1 (../shared/data; data/sample/train.jsonl without it).

Warm: after loading and 3 warm-up calls, one `annotator.predict(text)` per record for --repeats records of each
length; p50/p95 over those calls. All models are loaded together and each record goes through them in turn, so
that load from other processes falls on all alike (ratios stay fair on a busy machine; absolute figures do not).
Cold: the first call after loading, each sample in a fresh process (the load time is shown beside it and not
counted). Records: CCKS 2019 EMRs (the dev records, the last 100 of part 2) joined and cut to exactly N
characters at evenly spaced starting points; data/sample otherwise. One thread: torch.set_num_threads(1) and
OMP_NUM_THREADS=1 (the exported runtimes take torch's thread count).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CCKS = ROOT.parent / "shared" / "data" / "corpora" / "ccks2019_yidu"
LENGTHS = (100, 500, 2000)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def source_texts() -> tuple[list[str], str]:
    """Record texts to cut test records from, and where they came from."""
    from medner.corpus import read_corpus

    part2 = CCKS / "subtask1_training_part2.txt"
    if part2.exists():
        return [r.text for r in read_corpus(part2, "ccks2019")][-100:], "CCKS 2019 dev records (../shared/data)"
    records = [r for f in sorted((ROOT / "data" / "sample").glob("*.jsonl")) for r in read_corpus(f, "jsonl")]
    return [r.text for r in records], "data/sample (synthetic; ../shared/data not found)"


def records_of_length(n: int, count: int) -> list[str]:
    """``count`` records of exactly ``n`` characters, cut from the joined source texts at spread-out offsets."""
    texts, _ = source_texts()
    pool = "".join(texts)
    while len(pool) < n * 2:
        pool += pool
    step = max(1, (len(pool) - n) // count)
    return [pool[i * step : i * step + n] for i in range(count)]


def calibration_corpus() -> tuple[Path, str]:
    part1 = CCKS / "subtask1_training_part1.txt"
    if part1.exists():
        return part1, "ccks2019"
    return ROOT / "data" / "sample" / "train.jsonl", "jsonl"


def export_variants(model: Path, formats: list[str], folder: Path) -> list[tuple[str, Path]]:
    """Export ``model`` fp32 and int8 for each format into ``folder``."""
    return [(f"exported {fmt} {q or 'fp32'}", export_one(model, fmt, q, folder / f"{fmt}-{q or 'fp32'}"))
            for fmt in formats for q in (None, "int8")]


def export_one(model: Path, fmt: str, quantize: str | None, target: Path) -> Path:
    """Export ``model`` into ``target`` (int8 calibrated on CCKS training part 1), printing the gate's figures.

    A timing benchmark: the span-agreement floor is off so that every runtime gets a row; an export below the
    default floor is marked (``medner export`` would refuse it or keep layers fp32)."""
    from medner.run.export import DEFAULT_MIN_SPAN_AGREEMENT, export_run

    calibrate, corpus_format = calibration_corpus()
    started = time.perf_counter()
    meta = export_run(model, target, fmt=fmt, quantize=quantize, calibrate=calibrate, corpus_format=corpus_format,
                      min_span_agreement=0.0)
    check = meta["export"]["check"]
    below = check["span_agreement"] < DEFAULT_MIN_SPAN_AGREEMENT
    print(f"  exported {target.name} in {time.perf_counter() - started:.0f} s: mean KL {check['mean_kl']:.4g}, "
          f"span agreement {check['span_agreement']:.4f}"
          + (f" (below the default floor {DEFAULT_MIN_SPAN_AGREEMENT}: `medner export` would refuse it)" if below
             else ""), flush=True)
    return target


def load(path: Path, precision: str):
    import medner

    return medner.load(path, device="cpu", precision=precision, batch_size=16)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def warm(path: Path, precision: str, repeats: int, lengths=LENGTHS) -> dict[int, dict]:
    """p50/p95 ms per record length for one model, one thread, after 3 warm-up calls."""
    return warm_interleaved([(path, precision)], repeats, lengths)[0]


def warm_interleaved(models: list[tuple[Path, str]], repeats: int, lengths=LENGTHS) -> list[dict[int, dict]]:
    """p50/p95 ms per record length for each model, one thread: every record goes through the models in turn,
    so that load from other processes hits all of them alike and their ratios stay fair."""
    annotators = [load(path, precision) for path, precision in models]
    out: list[dict[int, dict]] = [{} for _ in models]
    for n in lengths:
        records = records_of_length(n, repeats)
        for annotator in annotators:
            for text in records[:3]:
                annotator.predict(text)
        times: list[list[float]] = [[] for _ in models]
        for text in records:
            for m, annotator in enumerate(annotators):
                started = time.perf_counter()
                annotator.predict(text)
                times[m].append(1000 * (time.perf_counter() - started))
        for m, values in enumerate(times):
            out[m][n] = {"p50_ms": percentile(values, 0.5), "p95_ms": percentile(values, 0.95), "calls": len(values)}
    return out


def cold(path: Path, precision: str, samples: int) -> dict[int, dict]:
    """First call after loading, in fresh processes: p50/p95 ms per record length, and the load seconds."""
    out = {}
    for n in LENGTHS:
        firsts, loads = [], []
        for _ in range(samples):
            done = subprocess.run([sys.executable, __file__, "--cold-probe", str(path), precision, str(n)], cwd=ROOT,
                                  env=ENV, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"cold probe failed for {path}:\n{done.stderr[-2000:]}")
            probe = json.loads(done.stdout.strip().splitlines()[-1])
            firsts.append(probe["first_ms"])
            loads.append(probe["load_s"])
        out[n] = {"p50_ms": percentile(firsts, 0.5), "p95_ms": percentile(firsts, 0.95),
                  "load_s": percentile(loads, 0.5), "samples": samples}
    return out


def cold_probe(path: str, precision: str, n: int) -> None:
    import torch

    torch.set_num_threads(1)
    text = records_of_length(n, 1)[0]
    started = time.perf_counter()
    annotator = load(Path(path), precision)
    loaded = time.perf_counter()
    annotator.predict(text)
    print(json.dumps({"load_s": loaded - started, "first_ms": 1000 * (time.perf_counter() - loaded)}))


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--cold-probe":
        cold_probe(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="torch run directory")
    parser.add_argument("--exported", nargs="*", type=Path, default=None,
                        help="exported directories of --model (default: export it here, see --formats)")
    parser.add_argument("--formats", nargs="+", default=["openvino", "onnx"], choices=("onnx", "openvino"),
                        help="formats to export when --exported is not given (default: openvino onnx)")
    parser.add_argument("--extra", nargs="*", type=Path, default=[], help="more model directories (a student)")
    parser.add_argument("--no-bf16", action="store_true", help="leave out torch bf16")
    parser.add_argument("--repeats", type=int, default=30, help="warm calls per length (default 30)")
    parser.add_argument("--cold", type=int, default=3, help="cold samples (fresh processes) per length (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    os.environ.update({k: ENV[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")})
    _, source = source_texts()
    print(f"records cut from {source}; lengths {', '.join(map(str, LENGTHS))} characters; {os.cpu_count()} CPUs "
          f"(1 thread used)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_latency_") as tmp:
        variants = [("torch fp32", args.model, "fp32")]
        if not args.no_bf16:
            variants.append(("torch bf16 (opt-in)", args.model, "bf16"))
        exported = [(f"exported {p.name}", p) for p in args.exported] if args.exported is not None \
            else export_variants(args.model, args.formats, Path(tmp))
        variants += [(name, path, "auto") for name, path in exported]
        variants += [(f"extra {p.name}", p, "auto") for p in args.extra]
        torch.set_num_threads(1)
        warm_all = warm_interleaved([(path, precision) for _, path, precision in variants], args.repeats)
        results = []
        for (name, path, precision), warm_row in zip(variants, warm_all):
            row = {"model": name, "path": str(path), "precision": precision, "warm": warm_row,
                   "cold": cold(path, precision, args.cold)}
            results.append(row)
            print(f"  {name}: " + ", ".join(f"{n} chars warm p50 {row['warm'][n]['p50_ms']:.1f} ms" for n in LENGTHS),
                  flush=True)
    print()
    print("| model | chars | warm p50 ms | warm p95 ms | cold p50 ms | cold p95 ms | load s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in results:
        for n in LENGTHS:
            w, c = row["warm"][n], row["cold"][n]
            print(f"| {row['model']} | {n} | {w['p50_ms']:.1f} | {w['p95_ms']:.1f} | {c['p50_ms']:.1f} | "
                  f"{c['p95_ms']:.1f} | {c['load_s']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"source": source, "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
