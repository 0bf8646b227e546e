#!/usr/bin/env python
"""Throughput of the spaCy component (``nlp.pipe``) against the bare Annotator on the same texts.

    .venv/bin/python scripts/bench/bench_spacy.py --model runs/emr_zh [--texts 200] [--batch-size 1000]
        [--repeats 3] [--segmenter char|jieba] [--threads N] [--device auto] [--json]

Texts: the last ``--texts`` records of CCKS 2019 part 2 when ``../shared/data`` (or ``$MEDNER_SHARED``) is
present, else the records of ``data/sample/*.jsonl``. Both sides process the texts in chunks of
``--batch-size`` docs (``nlp.pipe(texts, batch_size=B)`` and ``annotator.predict(chunk)``) so they batch the
model the same way; each has its own copy of the model, loaded before timing, and one warm-up pass.
Passes alternate (bare, pipe, bare, pipe, ...); the reported speed is the median over ``--repeats`` passes.
The pipe time includes spaCy tokenisation, alignment and writing ``doc.ents``/``doc.spans``.
The spans of both sides are compared (``._.char_offsets``, the model's offsets, so a word segmenter's
expansion does not count), and the run fails (exit 1) when they differ.

The model is a finished run directory; ``scripts/finetune.sh configs/emr_zh.yaml`` writes ``runs/emr_zh``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def shared_data() -> Path | None:
    path = Path(os.environ.get("MEDNER_SHARED") or REPO.parent / "shared" / "data")
    return path if path.is_dir() else None


def load_texts(limit: int) -> tuple[list[str], str]:
    from medner.corpus import read_corpus

    shared = shared_data()
    part2 = shared / "corpora" / "ccks2019_yidu" / "subtask1_training_part2.txt" if shared else None
    if part2 is not None and part2.is_file():
        texts = [r.text for r in read_corpus(part2, format="ccks2019")]
        return texts[-limit:], f"CCKS 2019 part 2, last {min(limit, len(texts))} records"
    texts = [r.text for f in sorted((REPO / "data" / "sample").glob("*.jsonl")) for r in read_corpus(f)]
    return texts[:limit], f"data/sample/*.jsonl, {min(limit, len(texts))} records"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", metavar="RUN", help="finished run directory (e.g. runs/emr_zh)")
    parser.add_argument("--texts", type=int, default=200, help="number of records (default 200)")
    parser.add_argument("--batch-size", type=int, default=1000, help="docs per nlp.pipe batch (default 1000)")
    parser.add_argument("--model-batch", type=int, default=16, help="windows per forward pass (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side (default 3)")
    parser.add_argument("--segmenter", default="char", help="spaCy zh segmenter: char (default) or jieba")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if not args.model or not (Path(args.model) / "medner_model.json").is_file():
        print(f"bench_spacy: {args.model or '--model'} is not a finished run directory. Train one with "
              "`scripts/finetune.sh configs/emr_zh.yaml` (writes runs/emr_zh), then pass --model runs/emr_zh",
              file=sys.stderr)
        return 2

    import spacy
    import torch

    import medner
    from medner.spacy.model_component import MednerComponent  # noqa: F401  (registers the factory)

    if args.threads:
        torch.set_num_threads(args.threads)
    texts, source = load_texts(args.texts)
    chars = sum(map(len, texts))

    bare = medner.load(args.model, device=args.device, batch_size=args.model_batch)
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": args.segmenter}}})
    component = nlp.add_pipe("medner", config={"model": args.model, "device": args.device,
                                               "batch_size": args.model_batch})
    _ = component.annotator  # load now, not inside the timed passes

    def run_bare() -> list:
        out = []
        for lo in range(0, len(texts), args.batch_size):
            out.extend(bare.predict(texts[lo : lo + args.batch_size]))
        return out

    def run_pipe() -> list:
        return list(nlp.pipe(texts, batch_size=args.batch_size))

    warm = texts[: min(8, len(texts))]
    bare.predict(warm)
    list(nlp.pipe(warm))
    times: dict[str, list[float]] = {"bare": [], "pipe": []}
    predicted = docs = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        predicted = run_bare()
        times["bare"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        docs = run_pipe()
        times["pipe"].append(time.perf_counter() - t0)

    mismatched = sum(
        [(*e._.char_offsets, e.label_) for e in doc.spans["medner"]] != [(s.start, s.end, s.label) for s in p]
        for doc, p in zip(docs, predicted))
    bare_s, pipe_s = statistics.median(times["bare"]), statistics.median(times["pipe"])
    result = {
        "texts": len(texts), "chars": chars, "source": source, "model": args.model,
        "fingerprint": bare.fingerprint, "device": str(bare.device), "torch_threads": torch.get_num_threads(),
        "segmenter": args.segmenter, "batch_size": args.batch_size, "model_batch": args.model_batch,
        "repeats": args.repeats,
        "bare": {"seconds": round(bare_s, 3), "docs_per_s": round(len(texts) / bare_s, 2),
                 "chars_per_s": round(chars / bare_s, 1), "passes": [round(t, 3) for t in times["bare"]]},
        "pipe": {"seconds": round(pipe_s, 3), "docs_per_s": round(len(texts) / pipe_s, 2),
                 "chars_per_s": round(chars / pipe_s, 1), "passes": [round(t, 3) for t in times["pipe"]]},
        "pipe_over_bare": round(bare_s / pipe_s, 4),
        "docs_with_different_spans": mismatched,
        "alignment": dict(component.stats),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        print(f"{len(texts)} texts, {chars} chars ({source}); model {args.model} ({bare.fingerprint}) on "
              f"{bare.device}, {result['torch_threads']} torch threads; segmenter {args.segmenter}; "
              f"{args.batch_size} docs per batch; median of {args.repeats}")
        for side in ("bare", "pipe"):
            r = result[side]
            label = "Annotator.predict" if side == "bare" else "nlp.pipe"
            print(f"  {label:<18} {r['seconds']:8.2f} s  {r['docs_per_s']:8.2f} docs/s  "
                  f"{r['chars_per_s']:10.0f} chars/s  passes {r['passes']}")
        print(f"  nlp.pipe throughput / bare: {result['pipe_over_bare']:.3f}"
              f"  ({'within' if result['pipe_over_bare'] >= 0.85 else 'NOT within'} 15%)")
        print(f"  docs whose spans differ: {mismatched}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
