#!/usr/bin/env python
"""Benchmark the tagger on CCKS 2019 Yidu-S4K: train on 900 EMRs, dev = the last 100 records of part 2.

Trains each variant in its own process (so peak memory is that variant's), then prints and writes a table:
dev strict micro-F1 (seqeval, IOB2) and per-type F1 of the best epoch, wall time, peak resident memory,
trainable parameters, and the share of inference time spent in CRF decoding at batch 16.

    .venv/bin/python scripts/bench/bench_ccks2019.py                       # all variants, config epochs
    .venv/bin/python scripts/bench/bench_ccks2019.py --variants lora_crf --epochs 3 --markdown BENCHMARKS.md
    # another target seed after the same intermediate phase (copied in, trains nothing); --resume after a kill
    .venv/bin/python scripts/bench/bench_ccks2019.py --variants tapt_multi --set seed=29 \
        --reuse-phase auxiliary=runs/bench15/tapt_multi/phases/auxiliary --out-dir runs/bench16s29 [--resume]

Variants: lora_crf, full_crf, lora_softmax (issue 3); lora_crf_lexicon, weak (no gold at all: weak labels
for train and for picking the epoch), weak_relabel (the weak run, then a round on its own relabelling of the
weak training texts), weak_relabel_fresh (the same round, but a new model trained from the encoder on the weak
model's labels), weak_more_text (weak on the 900 texts + 1,198 CCKS 2017 EMR texts), weak_lexicon (weak
with lexicon features), gold10 (10% of the gold records), gold10_lexicon (the same with lexicon features),
weak_gold10 (the weak run, then the same 10%), weak_gold10_joint (the weak run, then the same 10% together
with the weak labels of the other 90%), weak_lexicon_gold10 (the weak_lexicon run, then the same 10%
with lexicon features), weak_gold (the weak run, then all the gold records), weak_gold10_self (then one
self-training round on the confidently labelled texts of the other 90%), weak_gold10_relabel (then a round on
the model's labels of all the other 90%) and weak_gold10_relabel_fresh (that round trains a new model from the
weak run) for the weak-supervision targets. Every variant is scored on the gold dev records. The variants
without gold (WEAK_ONLY) start from configs/ccks2019_weak.yaml; tapt, tapt_weak and tapt_weak_gold10 are the same
recipes on the clinically pretrained encoder, and tapt_multi (configs/ccks2019_multi.yaml) adds an intermediate phase
on CCKS 2017 + CMeEE (tapt_multi_weak and tapt_multi_weak_gold10: the same phase, without CCKS 2019 gold, before
the weak labels); the others start from configs/ccks2019.yaml (BASE_CONFIG).

The table shows the latest figures of each variant and command (so a 10-epoch run of a variant is a row of
its own beside the 5-epoch one); a variant's run directory is OUT_DIR/VARIANT, so use another --out-dir to keep
an earlier run's model.

Needs ../shared/data (exits with a message when absent). Runs on CPU or GPU (`device: auto`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "ccks2019.yaml"
# the weak-only recipe (ccks2019.yaml + weak labels of configs/weak_labels/ccks2019.yaml, warmup 0.25): the base config of
# the WEAK_ONLY variants, so --set overrides it and its rows reproduce `medner finetune configs/ccks2019_weak.yaml`
WEAK_CONFIG = ROOT / "configs" / "ccks2019_weak.yaml"
ICD_LEXICON = ROOT / "lexicons" / "build" / "lexicon_zh.tsv"  # `medner lexicon build configs/lexicon_zh.yaml`
LEXICON_FEATURES = ("lexicon_features={lexicon: [lexicons/build/lexicon_zh.tsv, lexicons/anatomy.tsv, "
                    "lexicons/drugs.tsv, lexicons/lab_tests.tsv, lexicons/imaging.tsv, lexicons/symptoms.tsv], "
                    "min_length: 1}")
# 10% of the gold records, seeded; no early stopping: with 14 steps an epoch the model emits no entity for the
# first epochs (F1 0). Shared by every 10%-gold variant, so a REUSES variant's phase matches the run it reuses.
GOLD10 = ["supervision.gold_fraction=0.1", "train.epochs=10", "train.patience=0"]
WEAK_ONLY = {"weak", "weak_relabel", "weak_relabel_fresh", "weak_more_text", "weak_lexicon", "tapt_weak"}  # no gold
# (tapt_multi_weak is without gold too, from configs/ccks2019_multi_weak.yaml)
# variant: the config it starts from, when not CONFIG (so its row reproduces `medner finetune` of that config)
BASE_CONFIG = {**{name: WEAK_CONFIG for name in WEAK_ONLY}, "tapt_multi": ROOT / "configs" / "ccks2019_multi.yaml",
               "tapt_multi_weak": ROOT / "configs" / "ccks2019_multi_weak.yaml"}
# raw EMR texts (CCKS 2017 CNER), a path relative to the working directory like the config's data paths
CCKS2017 = "../shared/data/corpora/ccks2017_cner/data_origin.zip"
# the encoder after masked-LM pretraining on the clinical text of ../shared/data (`medner pretrain
# configs/pretrain_clinical.yaml`; CCKS 2019 dev texts left out), relative to the working directory
TAPT = "encoder.name=runs/encoders/clinical_tapt"
# name: (title, overrides applied after --epochs/--set, so a variant's own epochs win)
VARIANTS = {
    "lora_crf": ("LoRA + CRF", []),
    "full_crf": ("full fine-tuning + CRF", ["lora=null", "train.lr_encoder=5e-5"]),
    "lora_softmax": ("LoRA + softmax (no CRF)", ["crf.enabled=false", "crf.transition_weights={}"]),
    "lora_crf_lexicon": ("LoRA + CRF + lexicon features", [LEXICON_FEATURES]),
    "weak": ("LoRA + CRF on weak labels only (no gold)", []),
    # the `weak` run (same --out-dir, reused as the finished weak phase: REUSES), then one round of 2 epochs on the
    # model's own labels of the weak training texts in place of the weak labels (BOND-style); still no gold
    "weak_relabel": ("weak labels, then one round on the model's relabelling (no gold)",
                     ["supervision.self_training_rounds=1", "supervision.self_training_relabel=true",
                      "supervision.self_training_epochs=2"]),
    # the same, but the round's model is a new one trained from the encoder on the `weak` model's labels for
    # train.epochs (noisy-student style) instead of the `weak` model continued for 2 epochs
    "weak_relabel_fresh": ("weak labels, then a new model trained on the weak model's relabelling (no gold)",
                           ["supervision.self_training_rounds=1", "supervision.self_training_relabel=true",
                            "supervision.self_training_fresh_student=true"]),
    # more weakly labelled text: the 900 training texts + the 1,198 raw texts of CCKS 2017 CNER (another
    # hospital's EMRs; their annotations are dropped, their texts weak-labelled like the 900); still no gold
    "weak_more_text": ("LoRA + CRF on weak labels of the 900 + 1,198 CCKS 2017 EMR texts (no gold)",
                       [f"supervision.unlabelled=[{CCKS2017}]", "supervision.unlabelled_format=ccks2017"]),
    # lexicon features with weak labels: does the model do better than the lexicons it is shown and taught by?
    "weak_lexicon": ("LoRA + CRF + lexicon features on weak labels only (no gold)", [LEXICON_FEATURES]),
    "gold10": ("LoRA + CRF on 10% of the gold records", GOLD10),
    # the same recipes on the clinically pretrained encoder (issue 20's ladder)
    "tapt": ("LoRA + CRF, encoder pretrained on clinical text (masked LM)", [TAPT]),
    # configs/ccks2019_multi.yaml (BASE_CONFIG): the adapted encoder, 2 epochs on CCKS 2017 + CMeEE (each with its own
    # labels) + the 900 target records, then the target
    "tapt_multi": ("LoRA + CRF, adapted encoder, intermediate phase on CCKS 2017 + CMeEE (own label sets)", []),
    "tapt_weak": ("LoRA + CRF on weak labels only (no gold), encoder pretrained on clinical text", [TAPT]),
    # configs/ccks2019_multi_weak.yaml (BASE_CONFIG): the adapted encoder, 2 epochs on CCKS 2017 + CMeEE + the weak
    # labels of the 900 texts (no CCKS 2019 gold, dev included), then 3 on the weak labels with a fresh head; then
    # (tapt_multi_weak_gold10) the same 10% gold as gold10
    "tapt_multi_weak": ("LoRA + CRF on weak labels only (no gold), adapted encoder, intermediate phase on CCKS 2017 "
                        "+ CMeEE", []),
    "tapt_multi_weak_gold10": ("weak pre-training + 10% of the gold records, adapted encoder, intermediate phase on "
                               "CCKS 2017 + CMeEE", GOLD10 + [TAPT]),
    "tapt_weak_gold10": ("weak pre-training + 10% of the gold records, encoder pretrained on clinical text",
                         GOLD10 + [TAPT]),
    # lexicon features where gold is scarce: the same 10% as `gold10`
    "gold10_lexicon": ("LoRA + CRF + lexicon features on 10% of the gold records",
                       GOLD10 + [LEXICON_FEATURES]),
    # the `weak` variant's run (in the same --out-dir) is the pre-training; then the same 10% as `gold10`
    "weak_gold10": ("weak pre-training + 10% of the gold records", GOLD10),
    # the `weak_lexicon` run, then the same 10% with the same lexicon features
    "weak_lexicon_gold10": ("weak pre-training + 10% of the gold records, both with lexicon features",
                            GOLD10 + [LEXICON_FEATURES]),
    # the `weak` run, then 3 epochs on the same 10% gold (each record 5 times an epoch) + the weak labels of the other
    # 810 training texts (gold unread): joint training, so the gold phase does not forget what the weak labels taught
    "weak_gold10_joint": ("weak pre-training, then the 10% gold (x5) + weak labels of the other 90% together",
                          GOLD10 + ["train.epochs=3", "supervision.weak_config=configs/weak_labels/ccks2019.yaml",
                                    "supervision.gold_phase_weak=true", "supervision.gold_repeat=5"]),
    # the `weak` run, then all the gold records: does weak pre-training help where gold is plentiful?
    "weak_gold": ("weak pre-training + all the gold records", []),
    # weak_gold10, then one self-training round: the model labels the other 810 training texts (gold unread)
    # and trains 4 more epochs on the 10% gold + the texts whose spans all score >= 0.8
    "weak_gold10_self": ("weak pre-training + 10% gold + self-training on the other 90% texts",
                         GOLD10 + ["supervision.self_training_rounds=1", "supervision.self_training_epochs=4",
                                   "supervision.self_training_min_score=0.8"]),
    # the `weak_gold10` run (reused as the finished gold phase), then one round of 2 epochs on the 10% gold + the
    # model's labels of all the other 810 training texts (no score filter: min score 0), gold unread
    "weak_gold10_relabel": ("weak pre-training + 10% gold, then a round on the model's labels of the other 90%",
                            GOLD10 + ["supervision.self_training_rounds=1", "supervision.self_training_epochs=2",
                                      "supervision.self_training_min_score=0"]),
    # the same round, but its model is a new one trained from the `weak` run (init_from) for 3 epochs on the 10% gold
    # + the `weak_gold10` model's labels of the other 810 texts, instead of the teacher continued for 2 epochs
    "weak_gold10_relabel_fresh": ("weak pre-training + 10% gold, then a new model from the weak run on the 10% gold "
                                  "+ its labels of the other 90%",
                                  GOLD10 + ["supervision.self_training_rounds=1", "supervision.self_training_epochs=3",
                                            "supervision.self_training_min_score=0",
                                            "supervision.self_training_fresh_student=true"]),
}
# variant: the weak-only variant whose finished run (same --out-dir) it starts from (`init_from`)
STARTS_FROM = {"tapt_weak_gold10": "tapt_weak", "tapt_multi_weak_gold10": "tapt_multi_weak", "weak_gold10": "weak", "weak_gold10_joint": "weak", "weak_gold": "weak", "weak_gold10_self": "weak",
               "weak_gold10_relabel": "weak", "weak_gold10_relabel_fresh": "weak",
               "weak_lexicon_gold10": "weak_lexicon"}
# variant: (the variant whose finished run it reuses as a phase, that phase's name); the run is copied to
# OUT_DIR/VARIANT/phases/PHASE and resumed, which trains nothing, so only the self-training round runs
REUSES = {"weak_relabel": ("weak", "weak"), "weak_relabel_fresh": ("weak", "weak"),
          "weak_gold10_relabel": ("weak_gold10", "gold"), "weak_gold10_relabel_fresh": ("weak_gold10", "gold")}
TYPES = ["疾病和诊断", "影像检查", "实验室检验", "手术", "药物", "解剖部位"]


def run_one(name: str, out_dir: Path, extra: list[str], reuse: list[str] = (), resume: bool = False) -> dict:
    """Train one variant in this process; returns its figures, scored on the gold dev records.

    ``reuse``: ``PHASE=RUN_DIR`` items; each finished run is copied in as that phase, which then trains nothing
    (e.g. several target seeds after one intermediate phase); the wall time excludes it. ``resume``: continue
    the variant's run in OUT_DIR/VARIANT from its last checkpoint (phases already copied in are kept); without
    it a rerun retrains."""
    import medner
    from medner.config import load_config
    from medner.evaluate import score
    from medner.training.supervision import run_phases
    from medner.training.records import split_train_dev

    overrides = extra + VARIANTS[name][1] + [f"output_dir={out_dir / name}"]
    if name in STARTS_FROM:
        weak = STARTS_FROM[name]
        if not (out_dir / weak / "medner_model.json").exists():
            raise SystemExit(f"{name} starts from the `{weak}` variant's run: run --variants {weak} first "
                             f"(with the same --out-dir {out_dir})")
        overrides.append(f"init_from={out_dir / weak}")
    copies = [(out_dir / REUSES[name][0], REUSES[name][1])] if name in REUSES else []
    copies += [(Path(source), phase) for phase, _, source in (item.partition("=") for item in reuse)]
    for source, phase in copies:
        if not (source / "medner_model.json").exists():
            raise SystemExit(f"{name} reuses {source} as its `{phase}` phase, but that is not a finished run "
                             "(no medner_model.json): train it first")
    if copies and not resume:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for source, phase in copies:
        if not (out_dir / name / "phases" / phase / "medner_model.json").exists():
            shutil.copytree(source, out_dir / name / "phases" / phase, dirs_exist_ok=True)
    config = load_config(BASE_CONFIG.get(name, CONFIG), overrides)
    started = time.time()
    run = run_phases(config, progress=False, resume=resume or bool(copies),  # copied phases: finished, train nothing
                     overwrite=not (resume or copies))
    wall = time.time() - started
    meta = json.loads((run / "medner_model.json").read_text(encoding="utf-8"))
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    _, dev = split_train_dev(config)  # gold dev, whatever the training saw (weak variants pick epochs on weak dev)
    report = score(dev, medner.load(run).predict_records(dev))
    figures = {
        "variant": name, "run": str(run), "wall_s": round(wall, 1), "epochs": len(epochs),
        "resumed": resume,  # then wall_s is this process's share only
        "best_epoch": meta.get("best_epoch"), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "trainable": meta["trainable_parameters"], "total": meta["total_parameters"],
        "micro_f1": report["micro"]["f1"], "per_type": per_type_f1(report),
        "span_micro_f1": report["span"]["micro"]["f1"],
    }
    figures.update(decode_share(run, [r.text for r in dev]))
    return figures


def decode_share(run: Path, texts: list[str]) -> dict:
    """Encoder+head vs CRF decoding time over ``texts`` at batch 16 (see bench_decode_share.py)."""
    import medner

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_decode_share import decode_share as measure

    return measure(medner.load(run, batch_size=16), texts)


def markdown(rows: list[dict]) -> str:
    """The '## Model on CCKS 2019' section: one row per variant, then the command behind each row."""
    head = ("| variant | dev strict micro-F1 | " + " | ".join(TYPES) +
            " | epochs (best) | wall | peak RSS | trainable params | decode share @16 |")
    sep = "|" + "---|" * (7 + len(TYPES))
    lines = ["## Model on CCKS 2019 (900 train / 100 dev EMRs)", "",
             "Dev = the last 100 records of `subtask1_training_part2.txt`; train = the other 900. F1 is seqeval "
             "strict IOB2 on character tags, in %, always against the gold dev spans (weak variants pick their "
             "epoch on weak-labelled dev). Peak RSS is the training process's maximum resident memory; wall time "
             "includes dev scoring after every epoch.", "",
             head, sep]
    for r in rows:
        decode = f"{100 * r['decode_share']:.1f}%" if r.get("decode_share") is not None else "–"
        lines.append(
            f"| {VARIANTS[r['variant']][0]} | {100 * r['micro_f1']:.2f} | "
            + " | ".join(f"{100 * r['per_type'][t]:.2f}" for t in TYPES)
            + f" | {r['epochs']} ({r['best_epoch']}) | {r['wall_s'] / 60:.1f} min | {r['peak_rss_mib']} MiB | "
            f"{r['trainable']:,} of {r['total']:,} ({100 * r['trainable'] / r['total']:.2f}%) | {decode} |")
    lines += ["", "Commands (`.venv/bin/python`; weak pre-training rows start from the `weak` (or `weak_lexicon`) "
              "run in the same `--out-dir`, and their wall time excludes that run):", ""]
    lines += [f"- {VARIANTS[r['variant']][0]}: `{r.get('command', 'python scripts/bench/bench_ccks2019.py')}`"
              for r in rows]
    return "\n".join(lines) + "\n\n"


def per_type_f1(report: dict) -> dict[str, float]:
    """F1 of each CCKS type in a :func:`medner.evaluate.score` report (0 for a type with no spans)."""
    return {t: report["per_type"].get(t, {}).get("f1", 0.0) for t in TYPES}


def publish(section: str, markdown_path: str | None) -> None:
    """Print a Markdown section and, when a file is named, put it there (see :func:`write_section`)."""
    print(section)
    if markdown_path:
        write_section(Path(markdown_path), section)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the '## Model on CCKS 2019' section of a Markdown file."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    title = section.splitlines()[0]
    if title in text:
        start = text.index(title)
        nxt = text.find("\n## ", start + len(title))
        text = text[:start] + section + (text[nxt + 1:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def command_line(name: str, extra: list[str], out_dir: Path, default_out_dir: str, reuse: list[str] = ()) -> str:
    """The command behind a row, as the table shows it (``--out-dir`` relative to the repository when inside it)."""
    parts = ["python scripts/bench/bench_ccks2019.py --variants", name] + [f"--set {item}" for item in extra]
    parts += [f"--reuse-phase {item}" for item in reuse]
    if out_dir.resolve() != Path(default_out_dir).resolve():
        where = out_dir.resolve()
        parts.append(f"--out-dir {where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}")
    return " ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_ccks2019"))
    parser.add_argument("--markdown", help="write the table into this Markdown file (e.g. BENCHMARKS.md)")
    parser.add_argument("--table-only", action="store_true", help="train nothing: print (and write) the table "
                        "of the figures already in OUT_DIR/results.jsonl")
    parser.add_argument("--reuse-phase", action="append", default=[], metavar="PHASE=RUN_DIR",
                        help="copy a finished run in as this phase of every variant (it trains nothing), e.g. "
                        "auxiliary=runs/bench15/tapt_multi/phases/auxiliary for more target seeds")
    parser.add_argument("--resume", action="store_true", help="continue each variant's run in OUT_DIR from its last "
                        "checkpoint (after an interruption; the same --set and --reuse-phase as the first command)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant in this process
    args = parser.parse_args()
    if not (ROOT.parent / "shared" / "data" / "corpora" / "ccks2019_yidu").is_dir():
        print("../shared/data/corpora/ccks2019_yidu not found: this benchmark needs the CCKS 2019 files", file=sys.stderr)
        return 2
    extra = ([f"train.epochs={args.epochs}"] if args.epochs else []) + list(args.overrides)
    if any(LEXICON_FEATURES in VARIANTS[name][1] for name in args.variants) and not ICD_LEXICON.exists():
        subprocess.run([sys.executable, "-m", "medner", "lexicon", "build", str(ROOT / "configs" / "lexicon_zh.yaml"),
                        "-o", str(ICD_LEXICON)], check=True)
    out_dir = Path(args.out_dir)
    if args.one:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        print(json.dumps(run_one(args.one, out_dir, extra, args.reuse_phase, args.resume)))
        return 0
    results = out_dir / "results.jsonl"  # figures, appended; the table shows the latest of each variant + command
    rows = []
    for name in args.variants if not args.table_only else []:
        cmd = [sys.executable, __file__, "--one", name, "--out-dir", str(out_dir)]
        for item in extra:
            cmd += ["--set", item]
        for item in args.reuse_phase:
            cmd += ["--reuse-phase", item]
        cmd += ["--resume"] if args.resume else []
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            print(f"variant {name} failed (exit {proc.returncode})", file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        rows[-1]["command"] = command_line(name, extra, out_dir, parser.get_default("out_dir"), args.reuse_phase)
        print(json.dumps(rows[-1], ensure_ascii=False))
        out_dir.mkdir(parents=True, exist_ok=True)
        with results.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
    if results.exists():
        latest = {(r["variant"], r.get("command")): r for r in map(json.loads, results.read_text(encoding="utf-8").splitlines())}
        order = list(VARIANTS)
        rows = sorted(latest.values(), key=lambda r: (order.index(r["variant"]), r["epochs"]))
    publish(markdown(rows), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
