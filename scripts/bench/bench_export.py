#!/usr/bin/env python
"""The exported-model table for one trained run: HF pipeline fp32 (reference), medner fp32, medner bf16 (opt-in),
exported fp32 and exported int8 (with --student, also the distilled student fp32 and int8), each with chars/s (1
worker, 1 thread), p95 latency of a 500-character record, CCKS 2019 dev strict F1, span agreement with medner fp32
and mean KL(fp32 || variant) of the tag marginals.

    .venv/bin/python scripts/bench/bench_export.py --model runs/ccks2019
    .venv/bin/python scripts/bench/bench_export.py --model runs/ccks2019 --exported runs/ccks-ov runs/ccks-ov-int8
    .venv/bin/python scripts/bench/bench_export.py --model runs/ccks2019 --student runs/ccks2019-6l [runs/6l-ov-int8]

chars/s: medner rows run the real `medner annotate --workers 1 --threads 1` (steady state from the ledger, as in
bench_annotate.py, on the same --limit CCKS training EMRs); the HF row is bench_annotate.py's
`pipeline("token-classification")` over the same weights and window, 1 thread, fp32. p95 latency: one `predict(text)`
per record for --repeats records of 500 characters, warm (bench_latency.py). Dev: the last 100 records of part 2
(configs/ccks2019.yaml); F1 is seqeval strict micro-F1; span agreement is the F1 of the row's dev spans against
medner fp32's; mean KL is over every label-bearing token of the dev windows (each window alone), against medner
fp32's CRF marginals (the HF pipeline has no CRF: no KL; a student's KL and span agreement are against its teacher,
--model). Without --exported the script exports --model (--format, default openvino; int8 calibrated on CCKS training
part 1, which holds no dev record). Without ../shared/data it falls back to data/sample and says so.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_annotate  # noqa: E402  (sibling scripts)
import bench_latency  # noqa: E402

ROOT = bench_latency.ROOT


def dev_records() -> tuple[list, str]:
    from medner.config import load_config
    from medner.corpus import read_corpus
    from medner.training.records import split_train_dev

    if bench_latency.CCKS.is_dir():
        return split_train_dev(load_config(ROOT / "configs" / "ccks2019.yaml"))[1], "CCKS 2019 dev (last 100 of part 2)"
    return list(read_corpus(ROOT / "data" / "sample" / "dev.jsonl")), "data/sample/dev.jsonl (synthetic)"


def dev_windows(run, dev: list, limit: int) -> list:
    from medner.run.export import _spread, record_windows

    return _spread([w for r in dev for w in record_windows(run, r.text)], limit)


def mean_kl(emissions_fn, run, windows, reference) -> float:
    from medner.run.export import distributions, measure

    pad = run.tokenizer.pad_token_id or 0
    return measure(reference, distributions(emissions_fn, run.tagger.crf, run.tagger.scheme, windows, pad))["mean_kl"]


def agreement(a: set, b: set) -> float:
    return 1.0 if not a and not b else 2 * len(a & b) / (len(a) + len(b))


def hf_dev_spans(pipe, dev: list) -> list:
    """The pipeline's entities on each dev record, as Records with spans (label = entity_group)."""
    from medner.types import Span

    out = []
    for record, entities in zip(dev, pipe([r.text for r in dev], batch_size=1)):
        spans = [Span(int(e["start"]), int(e["end"]), e["entity_group"]) for e in entities if e["end"] > e["start"]]
        out.append(record.with_spans(sorted(spans, key=lambda s: (s.start, s.end))))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="torch run directory (trained on CCKS 2019)")
    parser.add_argument("--exported", nargs=2, type=Path, metavar=("FP32_DIR", "INT8_DIR"),
                        help="exported fp32 and int8 directories of --model (default: export here)")
    parser.add_argument("--student", nargs="+", type=Path, metavar=("STUDENT", "STUDENT_INT8"),
                        help="a student distilled from --model (`medner distill --layers N`) and optionally its "
                        "exported int8 directory (default: export it here): adds the student's fp32 and int8 rows")
    parser.add_argument("--format", default="openvino", choices=("onnx", "openvino"), help="format to export")
    parser.add_argument("--limit", type=int, default=100, help="EMRs for chars/s (default 100)")
    parser.add_argument("--repeats", type=int, default=30, help="500-character records for the latency")
    parser.add_argument("--kl-windows", type=int, default=400, help="at most this many dev windows for the KL")
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--batch-records", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.student and len(args.student) > 2:
        parser.error("--student takes the student run and at most its exported int8 directory")

    import torch

    import medner
    from medner.evaluate import score
    from medner.model.device import autocast
    from medner.run.directory import load_run
    from medner.run.export import Reference, distributions

    torch.set_num_threads(1)
    dev, dev_source = dev_records()
    rows, source = bench_annotate.load_texts(args.limit)
    texts = [t for _, t in rows]
    print(f"throughput: {len(texts)} EMRs, {sum(map(len, texts)):,} chars from {source}; dev: {dev_source}; "
          f"1 worker x 1 thread", flush=True)
    run = load_run(args.model)
    windows = dev_windows(run, dev, args.kl_windows)
    reference: Reference = distributions(run.tagger.emissions, run.tagger.crf, run.tagger.scheme, windows,
                                         run.tokenizer.pad_token_id or 0)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        tmp = Path(tmp)
        exported = args.exported
        if exported is None:
            exported = [p for _, p in bench_latency.export_variants(args.model, [args.format], tmp)]
        data = tmp / "texts.jsonl"
        data.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in rows),
                        encoding="utf-8")
        variants = [("medner fp32", args.model, "fp32"), ("medner bf16 (opt-in)", args.model, "bf16"),
                    (f"exported {read_format(exported[0])} fp32", exported[0], "auto"),
                    (f"exported {read_format(exported[1])} int8", exported[1], "auto")]
        if args.student:
            student, *student_int8 = args.student
            if not student_int8:
                student_int8 = [bench_latency.export_one(student, args.format, "int8", tmp / "student-int8")]
            variants += [("student fp32", student, "fp32"),
                         (f"student {read_format(student_int8[0])} int8", student_int8[0], "auto")]
        fp32_spans: set = set()
        for name, path, precision in variants:
            annotator = medner.load(path, device="cpu", precision=precision, batch_size=args.batch_size)
            predicted = list(annotator.predict_records(dev))
            spans = {(r.id, s.start, s.end, s.label) for r in predicted for s in r.spans}
            if name == "medner fp32":
                fp32_spans = spans
                kl = 0.0
            elif precision == "bf16":
                def bf16_emissions(*batch, tagger=annotator.tagger):
                    with autocast(torch.device("cpu"), torch.bfloat16):
                        return tagger.emissions(*batch)
                kl = mean_kl(bf16_emissions, run, windows, reference)
            else:
                kl = mean_kl(annotator.tagger.emissions, run, windows, reference)
            speed = bench_annotate.run_medner(path, data, tmp / f"out-{len(results)}", 1, 1,
                                              "fp32" if precision == "auto" else precision, args)
            latency = bench_latency.warm(path, precision, args.repeats, lengths=(500,))[500]
            results.append({"variant": name, "path": str(path), "chars_per_s": speed["chars_per_s"],
                            "p95_ms_500": latency["p95_ms"], "p50_ms_500": latency["p50_ms"],
                            "dev_f1": score(dev, predicted)["micro"]["f1"],
                            "span_agreement": agreement(spans, fp32_spans), "mean_kl": kl})
            print(f"  {name}: {speed['chars_per_s']:,.0f} chars/s, p95 {latency['p95_ms']:.1f} ms, dev F1 "
                  f"{100 * results[-1]['dev_f1']:.2f}, mean KL {kl:.4g}", flush=True)
    if not args.skip_hf:
        pipe, settings = bench_annotate.hf_pipeline(args.model, texts, 1, 1)
        hf = bench_annotate.run_hf(pipe, settings, texts, 1, "fp32", 1)
        lat = []
        for text in bench_latency.records_of_length(500, args.repeats):
            started = time.perf_counter()
            pipe(text)
            lat.append(1000 * (time.perf_counter() - started))
        predicted = hf_dev_spans(pipe, dev)
        spans = {(r.id, s.start, s.end, s.label) for r in predicted for s in r.spans}
        results.insert(0, {"variant": "HF pipeline fp32 (reference)", "chars_per_s": hf["chars_per_s"],
                           "p95_ms_500": bench_latency.percentile(lat, 0.95),
                           "p50_ms_500": bench_latency.percentile(lat, 0.5),
                           "dev_f1": score(dev, predicted)["micro"]["f1"],
                           "span_agreement": agreement(spans, fp32_spans), "mean_kl": None, "settings": settings})
    base = results[0]["chars_per_s"] if not args.skip_hf else None
    print()
    print("| variant | chars/s (1 worker, 1 thread) | x HF fp32 | p95 ms, 500 chars | dev strict F1 | "
          "span agreement with fp32 | mean KL |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['chars_per_s'] / base:.2f}" if base else "-"
        kl = "-" if r["mean_kl"] is None else f"{r['mean_kl']:.4g}"
        print(f"| {r['variant']} | {r['chars_per_s']:,.0f} | {ratio} | {r['p95_ms_500']:.1f} | "
              f"{100 * r['dev_f1']:.2f} | {r['span_agreement']:.4f} | {kl} |")
    if args.json:
        args.json.write_text(json.dumps({"dev": dev_source, "throughput_texts": source, "results": results},
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def read_format(path: Path) -> str:
    from medner.run.directory import read_meta

    return read_meta(path).get("format", "torch")


if __name__ == "__main__":
    sys.exit(main())
