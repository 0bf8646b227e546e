"""`medner export`: exported runs (ONNX Runtime / OpenVINO, fp32 / static int8) load wherever a run directory
does, predict what the torch run predicts, give a record the same spans and scores in any batch, and are
refused or rejected with one-line errors when the input is bad or the KL gate fails."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import sys
from pathlib import Path

import pytest
import torch

import medner
from medner.cli import main
from medner.corpus import read_corpus, write_jsonl
from medner.errors import ConfigError, ModelError
from medner.run.directory import META_FILE, load_run, read_meta, reseal, save_run, verify
from medner.types import Record

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VARIANTS = [("onnx", None), ("onnx", "int8"), ("openvino", None), ("openvino", "int8")]
EXTRA = {"onnx": ("onnxruntime", "medner[export]"), "openvino": ("openvino", "medner[openvino]")}
LONG = "患者因直肠癌入院，予奥沙利铂治疗，查体示腹部压痛。" * 12  # several windows of the tiny run


def require(fmt: str, quantize: str | None = None) -> None:
    """Skip, naming the extra, when the runtime of ``fmt`` (or its quantiser) is not installed."""
    module, extra = EXTRA[fmt]
    pytest.importorskip(module, reason=f"{module} is not installed (pip install '{extra}')")
    if fmt == "onnx":
        pytest.importorskip("onnx", reason=f"onnx is not installed (pip install '{extra}')")
    if fmt == "openvino" and quantize:
        pytest.importorskip("nncf", reason=f"nncf is not installed (pip install '{extra}')")


@pytest.fixture(scope="module")
def texts(tiny_corpus) -> list[str]:
    return [r.text for r in read_corpus(tiny_corpus / "dev.jsonl")] + [LONG, "", "无特殊。"]


@pytest.fixture(scope="module")
def exported(request, tiny_run, tiny_corpus, tmp_path_factory):
    """``{(format, quantize): exported run directory}``, each exported once per module on first use."""
    from medner.run.export import export_run

    made: dict = {}

    def get(fmt: str, quantize: str | None) -> Path:
        require(fmt, quantize)
        if (fmt, quantize) not in made:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                out = tmp_path_factory.mktemp("exported") / f"{fmt}-{quantize or 'fp32'}"
                export_run(tiny_run, out, fmt=fmt, quantize=quantize,
                           calibrate=tiny_corpus / "train.jsonl" if quantize else None)
            finally:
                torch.set_num_threads(before)
            made[(fmt, quantize)] = out
        return made[(fmt, quantize)]

    return get


def triples(spans) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, s.label) for s in spans]


# --------------------------------------------------------------------------------------------- loading and predicting

@pytest.mark.parametrize("fmt,quantize", VARIANTS)
def test_an_exported_run_is_a_run_directory_with_its_figures(exported, tiny_run, fmt, quantize):
    out = exported(fmt, quantize)
    meta = read_meta(out)
    assert meta["format_version"] == 3 and meta["format"] == fmt
    assert meta["precision"] == ("int8" if quantize else "fp32") and meta["runtime"].startswith(EXTRA[fmt][0])
    assert meta["export"]["source_fingerprint"] == read_meta(tiny_run)["fingerprint"] != meta["fingerprint"]
    check = meta["export"]["check"]
    assert check["windows"] >= 16 and 0 <= check["mean_kl"] <= check["max_kl"] and check["mean_kl"] <= 0.05
    assert 0.9 <= check["token_agreement"] <= 1 and meta["export"]["min_span_agreement"] <= check["span_agreement"] <= 1
    files = set(meta["files"])
    assert {"config.yaml", "labels.json", "head.safetensors", "tokenizer/tokenizer.json"} <= files
    assert any(f.startswith("exported/") for f in files)
    assert not any(f.startswith(("encoder/", "adapter/")) for f in files)  # the torch weights stay behind
    if quantize:
        assert meta["export"]["quantization"]["calibration_windows"] >= 32
        assert meta["export"]["quantization"]["matmuls_fp32"] >= 1  # the head
    assert not list(out.parent.glob(".*"))  # no staging or work folders left
    verify(out)


@pytest.mark.parametrize("fmt,quantize", VARIANTS)
def test_an_exported_run_predicts_what_the_torch_run_predicts(exported, tiny_run, texts, fmt, quantize):
    torch_spans = medner.load(tiny_run, device="cpu").predict(texts)
    annotator = medner.load(exported(fmt, quantize))
    assert annotator.device.type == "cpu" and annotator.precision == "fp32"  # no autocast around the runtime
    spans = annotator.predict(texts)
    same = sum(triples(a) == triples(b) for a, b in zip(torch_spans, spans))
    assert same >= len(texts) - (0 if quantize is None else 2)
    for text, found in zip(texts, spans):
        for span in found:
            assert 0 <= span.start < span.end <= len(text) and 0.0 <= span.score <= 1.0 + 1e-6
    if quantize is None:  # fp32: the same scores up to float rounding
        for a, b in zip(torch_spans, spans):
            assert [s.score for s in a] == pytest.approx([s.score for s in b], abs=1e-4)


@pytest.mark.parametrize("fmt,quantize", VARIANTS)
def test_a_record_gets_the_same_spans_and_scores_in_any_batch(exported, texts, fmt, quantize):
    annotator = medner.load(exported(fmt, quantize), batch_size=4)
    alone = [annotator.predict(t) for t in texts]
    compositions = [
        annotator.predict(texts),
        list(reversed(annotator.predict(list(reversed(texts))))),
        annotator.predict(texts, batch_size=1),
        annotator.predict(texts, batch_size=64),
        annotator.predict(texts + [LONG * 2] + texts)[: len(texts)],
    ]
    for batched in compositions:
        for one, many in zip(alone, batched):
            assert triples(one) == triples(many)
            assert [s.score for s in one] == pytest.approx([s.score for s in many], abs=1e-6)


def test_exported_emissions_match_the_torch_tagger_window_by_window(exported, tiny_run):
    from medner.model.alignment import encode_text
    from medner.model.windows import collate

    run = load_run(tiny_run)
    tagger = load_run(exported("onnx", None)).tagger
    rows = [encode_text(run.tokenizer, t) for t in ("因胃癌入院，", "予头孢治疗，查体示肝压痛，病情稳定。", "无")]
    batch = collate([{"input_ids": e.input_ids, "label_index": e.label_positions} for e in rows],
                    run.tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = run.tagger.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"], batch["lex"])
    got = tagger.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"], batch["lex"])
    assert got.shape == expected.shape
    mask = batch["label_mask"].unsqueeze(-1)
    torch.testing.assert_close(got * mask, expected * mask, atol=1e-4, rtol=0)


def test_precision_and_device_other_than_the_export_are_refused(exported):
    out = exported("onnx", None)
    with pytest.raises(ConfigError, match="precision it was exported with"):
        medner.load(out, precision="bf16")
    with pytest.raises(ConfigError, match="run on the CPU"):
        medner.load(out, device="cuda")
    with pytest.raises(ModelError, match="cannot be trained on"):
        load_run(out, merge_lora=False)


_FORKED: dict = {}


def test_a_forked_worker_opens_its_own_session(exported, texts):
    """A child forked after loading (spaCy n_process) predicts with the annotator it inherited."""
    annotator = medner.load(exported("onnx", None))
    expected = [triples(s) for s in annotator.predict(texts)]
    _FORKED["annotator"], _FORKED["texts"] = annotator, texts
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_predict_in_child, args=(queue,))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and got == (expected, True)


def _predict_in_child(queue) -> None:
    annotator = _FORKED["annotator"]
    try:
        spans = [triples(s) for s in annotator.predict(_FORKED["texts"])]
    except ModelError as exc:
        queue.put(("ModelError", str(exc)))
        return
    queue.put((spans, annotator.tagger._pid == multiprocessing.current_process().pid))


def test_a_forked_worker_refuses_a_model_file_changed_after_loading(exported, texts, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported("onnx", None), copy)
    _FORKED["annotator"], _FORKED["texts"] = medner.load(copy), texts[:2]
    with (copy / "exported" / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_predict_in_child, args=(queue,))
    child.start()
    kind, message = queue.get(timeout=60)
    child.join(timeout=60)
    assert kind == "ModelError" and "exported/model.onnx" in message and "changed" in message


# --------------------------------------------------------------------------------------------- every entry point

def test_cli_export_predict_annotate_and_render_take_an_exported_run(tiny_run, tiny_corpus, tmp_path, capsys):
    require("onnx")
    out = tmp_path / "onnx"
    assert main(["export", str(tiny_run), "-o", str(out), "--format", "onnx", "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["format"] == "onnx" and summary["mean_kl"] <= 0.05
    assert summary["fingerprint"] == read_meta(out)["fingerprint"]

    assert main(["predict", str(tiny_corpus / "dev.jsonl"), "--model", str(out), "-o", str(tmp_path / "p.jsonl")]) == 0
    predicted = list(read_corpus(tmp_path / "p.jsonl"))
    assert len(predicted) == 12 and sum(len(r.spans) for r in predicted) > 0

    for model, name in ((tiny_run, "torch"), (out, "exported")):
        assert main(["annotate", "--model", str(model), str(tiny_corpus / "dev.jsonl"), "--out", str(tmp_path / name),
                     "--shard-size", "5", "--threads", "1", "--no-progress"]) == 0
    capsys.readouterr()
    rows = {name: [json.loads(line) for p in sorted((tmp_path / name / "shards").glob("part-*.jsonl"))
                   for line in p.read_text(encoding="utf-8").splitlines()] for name in ("torch", "exported")}
    assert len(rows["torch"]) == len(rows["exported"]) == 12
    for a, b in zip(rows["torch"], rows["exported"]):
        assert set(a) == set(b) and a["key"] == b["key"]  # the same output schema, record by record
        assert [(s["start"], s["end"], s["label"]) for s in a["spans"]] == \
               [(s["start"], s["end"], s["label"]) for s in b["spans"]]
    assert {r["model"] for r in rows["exported"]} == {read_meta(out)["fingerprint"]}
    manifest = json.loads((tmp_path / "exported" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["failed"] == 0

    html = tmp_path / "r.html"
    assert main(["render", str(tiny_corpus / "dev.jsonl"), "--model", str(out), "-o", str(html), "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert "3 records" in printed and " 0 entities" not in printed and html.stat().st_size > 0


def test_the_spacy_component_takes_an_exported_run_and_stores_it(exported, texts, tmp_path):
    spacy = pytest.importorskip("spacy")
    out = exported("openvino", "int8")
    nlp = spacy.blank("zh")
    nlp.add_pipe("medner", config={"model": str(out)})
    expected = medner.load(out).predict(texts[:4])
    docs = list(nlp.pipe(texts[:4]))
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == \
           [[(s.start, s.end, s.label) for s in spans] for spans in expected]
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "medner" / "model" / "exported" / "model.xml").is_file()
    again = spacy.load(tmp_path / "pipeline")
    bounds = lambda doc: [(e.start_char, e.end_char) for e in doc.ents]  # noqa: E731
    assert bounds(again(texts[0])) == bounds(docs[0])


@pytest.mark.parametrize("crf", [True, False], ids=["crf", "softmax"])
def test_any_run_exports_full_encoder_and_lexicon_features(tiny_run, tiny_corpus, tmp_path, crf):
    """A full-encoder run (no adapter) with lexicon features, with a CRF or a softmax head: the feature embedding
    is part of the graph."""
    require("onnx")
    from medner.config import LexiconFeaturesConfig
    from medner.lexicon import LexiconEntry, write_lexicon
    from medner.model.lexicon_features import LexiconTagger
    from medner.model.tagger import Tagger
    from medner.run.export import export_run

    lexicon_file = tmp_path / "terms.tsv"
    write_lexicon([LexiconEntry(t, "疾病和诊断", None, t, "test") for t in ("直肠癌", "胃癌", "肺炎")], lexicon_file)
    source = load_run(tiny_run)
    config = dataclasses.replace(source.config, lora=None, crf=dataclasses.replace(source.config.crf, enabled=crf),
                                 lexicon_features=LexiconFeaturesConfig(lexicon=[str(lexicon_file)], min_length=1))
    lexicon = LexiconTagger(lexicon_file, min_length=1)
    tagger = Tagger.from_config(source.tagger.encoder, source.tagger.scheme, config, n_lexicon_tags=len(lexicon))
    tagger.head.load_state_dict(source.tagger.head.state_dict())
    if crf:
        tagger.crf.load_state_dict(source.tagger.crf.state_dict())
    torch.manual_seed(3)
    torch.nn.init.normal_(tagger.lexicon.weight, std=1.0)
    run_dir = tmp_path / "full"
    save_run(tagger.eval(), source.tokenizer, config, run_dir, tiny_corpus / "encoder", lexicon=lexicon)
    assert read_meta(run_dir)["encoder"] == "full"
    out = tmp_path / "full-onnx"
    meta = export_run(run_dir, out, fmt="onnx")
    assert meta["export"]["check"]["mean_kl"] < 1e-4 and meta["export"]["source_encoder"] == "full"
    text = "因直肠癌入院，予头孢治疗，胃癌术后。"
    reference, got = medner.load(run_dir, device="cpu").predict(text), medner.load(out).predict(text)
    assert triples(reference) == triples(got)
    assert [s.score for s in reference] == pytest.approx([s.score for s in got], abs=1e-4)
    without = LexiconTagger(lexicon_file, min_length=1)
    assert without.token_ids(text, [(i, i + 1) for i in range(len(text))]) != [0] * len(text)  # features in use


# --------------------------------------------------------------------------------------------- bad input

def test_a_truncated_or_tampered_exported_file_is_named(exported, tmp_path):
    source = exported("openvino", None)
    for name in ("exported/model.bin", "exported/model.xml"):
        copy = tmp_path / name.replace("/", "_")
        shutil.copytree(source, copy)
        data = (copy / name).read_bytes()
        (copy / name).write_bytes(data[: len(data) // 2] if name.endswith(".bin") else data.replace(b"f32", b"f16", 1))
        with pytest.raises(ModelError, match="damaged or changed") as err:
            medner.load(copy)
        assert name in str(err.value)


def test_a_missing_runtime_names_the_extra_to_install(exported, monkeypatch, capsys, tiny_corpus, tmp_path):
    out = exported("onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(ModelError, match=r"pip install 'medner\[export\]'"):
        medner.load(out)
    assert main(["predict", str(tiny_corpus / "dev.jsonl"), "--model", str(out), "-o", str(tmp_path / "y.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "medner[export]" in err and "Traceback" not in err


def test_bad_exports_are_refused_in_one_line_and_leave_nothing(tiny_run, tiny_corpus, tmp_path, capsys):
    require("onnx")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(tiny_run, incomplete)
    (incomplete / META_FILE).unlink()  # a run still training has no medner_model.json
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    (damaged / "head.safetensors").write_bytes(b"\0" * 10)
    wrong_format = tmp_path / "notes.txt"
    wrong_format.write_text("患者因直肠癌入院。\n", encoding="utf-8")
    small = tmp_path / "small.jsonl"
    write_jsonl([Record(f"s{i}", "因胃癌入院。") for i in range(3)], small)
    moved = tmp_path / "moved"  # a run whose own corpus is gone: an fp32 export needs --calibrate then
    shutil.copytree(tiny_run, moved)
    config = (moved / "config.yaml").read_text(encoding="utf-8")
    (moved / "config.yaml").write_text(config.replace(str(tiny_corpus), str(tmp_path / "gone")), encoding="utf-8")
    reseal(moved)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    cases = [
        ([str(incomplete)], "no medner_model.json"),
        ([str(damaged)], "damaged or changed"),
        ([str(tiny_run), "--quantize", "int8"], "needs a calibration corpus"),
        ([str(tiny_run), "--quantize", "int8", "--calibrate", str(wrong_format)], str(wrong_format)),
        ([str(tiny_run), "--quantize", "int8", "--calibrate", str(small)], "corpus too small"),
        ([str(tiny_run), "--calibrate", str(tmp_path / "absent.jsonl")], "no such file"),
        ([str(moved)], "no corpus to check the export on"),
        ([str(tiny_run), "--min-span-agreement", "1.5"], "--min-span-agreement must be in [0, 1], got 1.5"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        assert main(["export", *args, "-o", str(out), "--threads", "1"]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, (args, err)
        assert not out.exists()
    assert main(["export", str(tiny_run), "-o", str(taken)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err and (taken / "keep.txt").exists()
    assert main(["export", str(tiny_run), "-o", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt exists and is not a folder" in capsys.readouterr().err  # was "is not empty"
    holder = tmp_path / "holder"  # a folder holding the run and the data beside it
    shutil.copytree(tiny_run, holder / "run")
    (holder / "gold.jsonl").write_text("{}\n")
    for out, message in ((taken, "holds no earlier medner run: --overwrite deletes only a run's folder"),
                         (holder, "lies in the output_dir"), (holder / "run" / "adapter", "lies inside the source run"),
                         (tmp_path / "notes.txt", "exists and is not a folder")):
        assert main(["export", str(holder / "run"), "-o", str(out), "--overwrite"]) == 2, out
        err = capsys.readouterr().err
        assert message in err, (out, err)
    assert (taken / "keep.txt").exists() and (holder / "gold.jsonl").exists() and wrong_format.exists()
    shutil.rmtree(holder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "incomplete", "moved", "notes.txt", "small.jsonl",
                                                          "taken"]


def test_the_kl_gate_refuses_an_export_over_max_kl(tiny_run, tiny_corpus, tmp_path, capsys):
    require("onnx", "int8")
    previous = tmp_path / "previous"  # an earlier export (--overwrite replaces only an export's folder)
    previous.mkdir()
    last_good = json.dumps({"format_version": 3, "format": "onnx", "fingerprint": "the last good export"})
    (previous / META_FILE).write_text(last_good)
    rc = main(["export", str(tiny_run), "-o", str(previous), "--format", "onnx", "--quantize", "int8", "--calibrate",
               str(tiny_corpus / "train.jsonl"), "--max-kl", "1e-15", "--max-fp32-layers", "1", "--overwrite",
               "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("medner: error:") and "export refused" in err[-1] and "exceeds --max-kl 1e-15" in err[-1]
    assert "kept fp32" in err[-1]  # the most sensitive layer was kept fp32 first, and still the gate failed
    assert (previous / META_FILE).read_text() == last_good  # --overwrite waits for success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous"]


def test_overwrite_replaces_only_an_earlier_export(tiny_run, tmp_path, capsys):
    require("onnx")
    training_run = tmp_path / "training_run"  # a finetune run: encoder or adapter, checkpoint, metrics
    shutil.copytree(tiny_run, training_run)
    encoder = tmp_path / "encoder"  # a `medner pretrain` output
    encoder.mkdir()
    for name in ("medner_encoder.json", "pretrain_config.yaml", "config.json", "model.safetensors"):
        (encoder / name).write_text("{}")
    for out in (training_run, encoder):
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        assert main(["export", str(tiny_run), "-o", str(out), "--format", "onnx", "--overwrite"]) == 2, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds a training run / encoder, not an export" in err, err
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    out = tmp_path / "export"
    assert main(["export", str(tiny_run), "-o", str(out), "--format", "onnx", "--threads", "1"]) == 0
    first = read_meta(out)["export"]["seconds"]
    assert main(["export", str(tiny_run), "-o", str(out), "--format", "onnx", "--threads", "1", "--overwrite"]) == 0
    capsys.readouterr()
    assert read_meta(out)["format"] == "onnx" and first is not None


@pytest.mark.parametrize("option,value,minimum", [("--check-windows", "0", 16), ("--check-windows", "1", 16),
                                                  ("--calibration-windows", "0", 32)])
def test_window_counts_below_the_minimum_are_refused(tiny_run, tiny_corpus, tmp_path, capsys, option, value,
                                                     minimum):
    require("onnx", "int8")
    out = tmp_path / "out"
    args = ["export", str(tiny_run), "-o", str(out), "--format", "onnx", "--threads", "1", option, value]
    if option == "--calibration-windows":
        args += ["--quantize", "int8", "--calibrate", str(tiny_corpus / "train.jsonl")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option} must be at least {minimum}, got {value}" in err, err
    assert "Traceback" not in err and not out.exists()


def test_calibration_texts_are_read_past_a_bad_gold_span(tiny_run, tiny_corpus, tmp_path, caplog):
    require("onnx")
    from medner.run.export import export_run

    lines = (tiny_corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[0])
    bad["spans"] = [{"start": 5, "end": 2, "label": "疾病和诊断"}]  # start > end: the gold span is bad, the text fine
    lines[0] = json.dumps(bad, ensure_ascii=False)
    calibrate = tmp_path / "calibrate.jsonl"
    calibrate.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level("INFO", logger="medner.run.export"):
        export_run(tiny_run, tmp_path / "out", fmt="onnx", calibrate=calibrate)
    assert read_meta(tmp_path / "out")["export"]["check_corpus"].startswith("calibrate.jsonl (jsonl, 48 records)")
    assert any("skipped" in r.getMessage() for r in caplog.records)
    assert not any(bad["text"][:6] in r.getMessage() for r in caplog.records)


def test_the_gate_names_every_limit_a_candidate_misses():
    from medner.run.export import Gate

    def figures(kl, spans):
        return {"mean_kl": kl, "span_agreement": spans, "spans_reference": 125, "spans_export": 130}

    gate = Gate(max_kl=0.05, min_span_agreement=0.95)
    assert gate.failures(figures(0.05, 0.95)) == []  # the limits themselves pass
    assert gate.failures(figures(0.0496, 0.872)) == [  # the ONNX int8 export the KL gate let through
        "span agreement 0.872 (130 spans against 125) is below --min-span-agreement 0.95"]
    assert gate.spans_fail(figures(0.0496, 0.872)) and not gate.spans_fail(figures(0.2, 0.872))
    assert gate.failures(figures(0.05, 0.94996))[0].startswith("span agreement 0.94996 ")  # never "0.9500 < 0.95"
    assert len(gate.failures(figures(0.2, 0.5))) == 2
    assert len(gate.failures(figures(float("nan"), float("nan")))) == 2  # NaN passes no limit
    assert Gate(max_kl=0.05, min_span_agreement=0.0).failures(figures(0.0, 0.0)) == []


def test_the_gate_refuses_an_export_whose_spans_disagree_despite_a_low_kl(tiny_run, tiny_corpus, tmp_path, capsys,
                                                                        monkeypatch):
    import medner.run.export as export

    require("onnx", "int8")
    real = export.measure
    monkeypatch.setattr(export, "measure", lambda ref, cand: {**real(ref, cand), "span_agreement": 0.5})
    out = tmp_path / "out"
    rc = main(["export", str(tiny_run), "-o", str(out), "--format", "onnx", "--quantize", "int8", "--calibrate",
               str(tiny_corpus / "train.jsonl"), "--max-fp32-layers", "1", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    reason = err[-1].split("export refused")[1].split(" fix")[0]
    assert rc == 2 and "span agreement 0.5 (" in reason and "is below --min-span-agreement 0.95" in reason
    assert "--max-kl" not in reason  # the KL passed
    assert "kept fp32" in err[-1]  # a failing span agreement also tries keeping the most sensitive layer fp32
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_exported_runs_cannot_be_exported_again_or_souped(exported, tmp_path):
    from medner.run.export import export_run
    from medner.run.soup import average_runs

    out = exported("onnx", None)
    with pytest.raises(ModelError, match="itself exported"):
        export_run(out, tmp_path / "again")
    with pytest.raises(ModelError, match="no torch weights"):
        average_runs([out, out], tmp_path / "soup")


def test_the_cli_knows_the_library_formats_and_default():
    from medner.cli import export as cli
    from medner.run.export import DEFAULT_FORMAT, DEFAULT_MAX_KL, DEFAULT_MIN_SPAN_AGREEMENT
    from medner.run.runtime import FORMATS

    assert cli.FORMATS == FORMATS and cli.DEFAULT_MAX_KL == DEFAULT_MAX_KL and cli.DEFAULT_FORMAT == DEFAULT_FORMAT
    assert cli.DEFAULT_MIN_SPAN_AGREEMENT == DEFAULT_MIN_SPAN_AGREEMENT


# --------------------------------------------------------------------------------------------- batch annotation

BATCH = Path(__file__).parent / "data" / "batch"


def batch_lines(out: Path) -> list[str]:
    return sorted(line for p in (out / "shards").glob("part-*.jsonl") for line in p.read_text("utf-8").splitlines())


def test_annotate_with_an_exported_run_is_exactly_once_across_crashes_and_workers(exported, tmp_path, monkeypatch):
    from medner.batch.items import ReadOptions
    from batch_fakes import crash_after_shards
    from medner.batch.runner import AnnotateOptions, annotate

    common = dict(model=exported("openvino", "int8"), inputs=[BATCH / "notes", BATCH / "records.jsonl"],
                  read=ReadOptions(id_field="doc", text_field="body"), shard_size=3, threads=1, progress=False)
    whole = annotate(AnnotateOptions(out=tmp_path / "whole", **common))
    with crash_after_shards(monkeypatch, 2):
        annotate(AnnotateOptions(out=tmp_path / "crashed", **common))
    resumed = annotate(AnnotateOptions(out=tmp_path / "crashed", workers=2, **common))
    assert resumed["resumed_shards"] == 2 and resumed["counts"] == whole["counts"]
    assert batch_lines(tmp_path / "crashed") == batch_lines(tmp_path / "whole")  # same bytes, each record once


@pytest.mark.slow
def test_the_ray_engine_takes_an_exported_run(exported, tmp_path):
    ray = pytest.importorskip("ray")
    from medner.batch.items import ReadOptions
    from medner.batch.runner import AnnotateOptions, annotate

    common = dict(model=exported("onnx", "int8"), inputs=[BATCH / "notes", BATCH / "records.jsonl"],
                  read=ReadOptions(id_field="doc", text_field="body"), shard_size=3, threads=1, progress=False)
    local = annotate(AnnotateOptions(out=tmp_path / "local", **common))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = annotate(AnnotateOptions(out=tmp_path / "ray", engine="ray", workers=2, **common))
    finally:
        ray.shutdown()
    assert on_ray["counts"] == local["counts"] and on_ray["engine"] == "ray"
    assert batch_lines(tmp_path / "ray") == batch_lines(tmp_path / "local")
