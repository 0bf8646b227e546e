#!/usr/bin/env python
"""Throughput of `medner annotate` (local engine, 1 and 2 workers; fp32 and bf16) against the Hugging Face
`pipeline("token-classification")` over the same encoder weights and window length, in one run.

    .venv/bin/python scripts/bench/bench_annotate.py --model runs/emr_zh
    .venv/bin/python scripts/bench/bench_annotate.py --model runs/emr_zh --limit 400 --json bench_annotate.json

Texts: CCKS 2019 Yidu-S4K training EMRs from ../shared/data (the first --limit of part 1 then part 2);
without that folder, data/sample/*.jsonl (synthetic) with a note in the output.

medner: each configuration is the real command (`python -m medner annotate ... --workers N --threads T`) in
its own process, writing JSONL shards. Throughput is steady state, read from the progress ledger: the records
and characters of all shards after the first N commits, over the time between the N-th and the last commit
(so model loading and worker start-up are left out, while reading, prediction, CRF decoding, span building and
atomic shard writing are all counted).

Reference: the run's encoder with LoRA merged (`load_run(merge_lora=True)`), its weights loaded into a
`BertForTokenClassification` whose `classifier` is the run's linear head; the CRF is not used (the pipeline
takes the arg-max tag of every token, then `aggregation_strategy="simple"` groups B-/I- tags into entities).
Same window: `tokenizer.model_max_length` = the tokens of `window.max_chars` characters (at the measured
tokens-per-character ratio of these texts) + 2 special tokens, `stride` = the tokens of `window.overlap`
characters; the pipeline's default `batch_size` (1; `--hf-batch-size`); `torch.set_num_threads(T)` with the
same T as each medner worker (`--threads`, default 1); fp32, and bf16 through `torch.autocast` like medner's
`--precision bf16`. So "2 workers" uses two cores where the pipeline uses one: that is the local engine's
way to use a machine; `--threads 2` gives the pipeline two threads (and each medner worker two). Timed after a warm-up call, model building left out. Before timing, the script checks that the
pipeline's logits equal medner's emissions on a text (max |difference| printed), i.e. the same weights.

Ratios are given against the HF pipeline in fp32 (the reference) and against the pipeline at the same
precision. medner's own gain at equal precision comes from batching windows of many records sorted by length;
on a CPU the encoder's matrix products dominate, so most of the speed-up comes from bf16 on CPUs with AMX.
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


def load_texts(limit: int) -> tuple[list[tuple[str, str]], str]:
    """``[(id, text)]`` and a description of where they came from."""
    from medner.corpus import read_corpus

    files = [CCKS / "subtask1_training_part1.txt", CCKS / "subtask1_training_part2.txt"]
    if all(f.exists() for f in files):
        records = [r for f in files for r in read_corpus(f, "ccks2019")][:limit]
        return [(r.id, r.text) for r in records], "CCKS 2019 Yidu-S4K training EMRs (../shared/data)"
    records = [r for f in sorted((ROOT / "data" / "sample").glob("*.jsonl")) for r in read_corpus(f, "jsonl")][:limit]
    return [(r.id, r.text) for r in records], "data/sample (synthetic; ../shared/data not found)"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def run_medner(model: Path, data: Path, out: Path, workers: int, threads: int, precision: str, args) -> dict:
    cmd = [sys.executable, "-m", "medner", "annotate", "--model", str(model), str(data), "--out", str(out),
           "--workers", str(workers), "--threads", str(threads), "--shard-size", str(args.shard_size),
           "--precision", precision,
           "--batch-records", str(args.batch_records), "--batch-size", str(args.batch_size), "--no-progress",
           "--device", "cpu"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"medner annotate failed:\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()[1:]]
    shards = sorted((e for e in events if e.get("event") == "shard"), key=lambda e: e["t"])
    if len(shards) <= workers:
        sys.exit(f"too few shards ({len(shards)}) for a steady-state figure: lower --shard-size or raise --limit")
    steady = shards[workers:]
    seconds = shards[-1]["t"] - shards[workers - 1]["t"]
    records = sum(e["records"] for e in steady)
    chars = sum(e["chars"] for e in steady)
    return {"engine": f"medner local, {workers} worker{'s' if workers > 1 else ''} x {threads} thread"
                      f"{'s' if threads > 1 else ''}", "precision": precision,
            "records_per_s": records / seconds, "chars_per_s": chars / seconds, "timed_records": records,
            "timed_s": seconds, "process_wall_s": wall}


def hf_pipeline(model_dir: Path, texts: list[str], threads: int, batch_size: int):
    """The reference pipeline (module docstring) and its window settings."""
    import torch
    from transformers import AutoModelForTokenClassification, pipeline

    from medner.run.directory import load_run

    torch.set_num_threads(threads)
    run = load_run(model_dir, merge_lora=True)
    tagger, tokenizer, config = run.tagger, run.tokenizer, run.config
    encoder = tagger.encoder
    hf_config = encoder.config
    tags = list(tagger.scheme.tags)
    hf_config.num_labels = len(tags)
    hf_config.id2label = dict(enumerate(tags))
    hf_config.label2id = {t: i for i, t in enumerate(tags)}
    model = AutoModelForTokenClassification.from_config(hf_config)
    base = getattr(model, model.base_model_prefix)
    missing, unexpected = base.load_state_dict(encoder.state_dict(), strict=False)
    if missing or [k for k in unexpected if not k.startswith("pooler.")]:
        sys.exit(f"encoder weights do not fit the token-classification model: {missing[:5]} {unexpected[:5]}")
    with torch.no_grad():
        model.classifier.weight.copy_(tagger.head.weight)
        model.classifier.bias.copy_(tagger.head.bias)
    model.eval()
    sample = texts[: min(len(texts), 200)]
    per_char = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in sample) / sum(map(len, sample))
    window = config.window
    tokenizer.model_max_length = round(window.max_chars * per_char) + 2
    stride = max(1, round(window.overlap * per_char))
    pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                    stride=stride, device=-1)
    settings = {"model_max_length": tokenizer.model_max_length, "stride": stride, "tokens_per_char": round(per_char, 3),
                "window_chars": window.max_chars, "overlap_chars": window.overlap, "batch_size": batch_size,
                "aggregation_strategy": "simple", "crf": "not used (arg-max per token)"}
    return pipe, settings


def same_weights(pipe, model_dir: Path, text: str) -> float:
    """max |pipeline logits - medner emissions| at medner's label-bearing tokens of one short text."""
    import torch

    from medner.model.alignment import encode_text
    from medner.run.directory import load_run

    run = load_run(model_dir, merge_lora=True)
    tagger, tokenizer = run.tagger, run.tokenizer
    encoded = encode_text(tokenizer, text)
    ids = torch.tensor([encoded.input_ids])
    mask = torch.ones_like(ids)
    positions = torch.tensor([encoded.label_positions])
    with torch.inference_mode():
        ours = tagger.eval().emissions(ids, mask, positions)[0]
        theirs = pipe.model(input_ids=ids, attention_mask=mask).logits[0, positions[0]]
    return float((ours - theirs.float()).abs().max())


def run_hf(pipe, settings: dict, texts: list[str], threads: int, precision: str, batch_size: int) -> dict:
    import contextlib

    import torch

    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    with context():
        pipe(texts[:2], batch_size=batch_size)  # warm-up
        started = time.perf_counter()
        pipe(texts, batch_size=batch_size)
        seconds = time.perf_counter() - started
    chars = sum(map(len, texts))
    return {"engine": f"HF pipeline (token-classification), batch_size {batch_size}, {threads} thread"
                      f"{'s' if threads > 1 else ''}", "precision": precision,
            "records_per_s": len(texts) / seconds, "chars_per_s": chars / seconds, "timed_records": len(texts),
            "timed_s": seconds, "settings": settings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="run directory")
    parser.add_argument("--limit", type=int, default=200, help="number of EMRs (default 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="medner worker counts (default 1 2)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"),
                        help="precisions to measure, both sides (default fp32 bf16)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process, both sides (default 1: on a shared machine OpenMP threads "
                             "spin-wait behind other processes and multi-threaded figures collapse)")
    parser.add_argument("--shard-size", type=int, default=20)
    parser.add_argument("--batch-records", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="medner: windows per forward pass (default 8)")
    parser.add_argument("--hf-batch-size", type=int, default=1, help="HF pipeline batch_size (default 1, its own)")
    parser.add_argument("--skip-hf", action="store_true", help="only medner")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    rows, source = load_texts(args.limit)
    texts = [t for _, t in rows]
    threads = args.threads
    print(f"texts: {len(texts)} records, {sum(map(len, texts)):,} characters from {source}; {cores()} cores")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_annotate_") as tmp:
        data = Path(tmp) / "texts.jsonl"
        data.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in rows),
                        encoding="utf-8")
        for precision in args.precisions:
            for workers in args.workers:
                out = Path(tmp) / f"out_{precision}_{workers}"
                results.append(run_medner(args.model, data, out, workers, threads, precision, args))
                print(f"  {results[-1]['engine']}, {precision}: {results[-1]['chars_per_s']:,.0f} chars/s, "
                      f"{results[-1]['records_per_s']:.2f} records/s", flush=True)
    reference: dict[str, dict] = {}
    if not args.skip_hf:
        pipe, settings = hf_pipeline(args.model, texts, threads, args.hf_batch_size)
        settings["max_abs_logit_diff_vs_medner"] = same_weights(pipe, args.model, texts[0][:120])
        for precision in args.precisions:
            reference[precision] = run_hf(pipe, settings, texts, threads, precision, args.hf_batch_size)
            results.append(reference[precision])
            print(f"  {results[-1]['engine']}, {precision}: {results[-1]['chars_per_s']:,.0f} chars/s", flush=True)
    base = reference.get("fp32")
    print()
    print("| engine | precision | chars/s | records/s | x HF fp32 | x HF same precision |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        same = reference.get(r["precision"])
        r["x_hf_fp32"] = round(r["chars_per_s"] / base["chars_per_s"], 2) if base else None
        r["x_hf_same_precision"] = round(r["chars_per_s"] / same["chars_per_s"], 2) if same else None
        print(f"| {r['engine']} | {r['precision']} | {r['chars_per_s']:,.0f} | {r['records_per_s']:.2f} | "
              f"{r['x_hf_fp32'] if base else '-'} | {r['x_hf_same_precision'] if same else '-'} |")
    if reference:
        print(f"\nHF pipeline settings: {next(iter(reference.values()))['settings']}")
    if args.json:
        args.json.write_text(json.dumps({"source": source, "records": len(texts), "cores": cores(),
                                         "results": results}, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
