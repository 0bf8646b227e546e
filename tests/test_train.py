"""End-to-end training on a tiny encoder built in code: run directory, save -> load identity, resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import medner
from medner.annotate import Annotator
from medner.cli import main
from medner.config import load_config
from medner.corpus import read_corpus
from medner.training.finetune import finetune
from medner.types import Span
from interrupt import killed_after_checkpoint
from tiny_model import write_config

@pytest.fixture(scope="module")
def corpus(tiny_corpus):
    return tiny_corpus


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run, load_config(tiny_run.parent / "config.yaml")


def test_run_directory_is_complete(trained):
    run, _ = trained
    for name in ("config.yaml", "labels.json", "head.safetensors", "medner_model.json", "metrics.jsonl",
                 "training.png", "dev_report.json", "dev_report.md", "adapter/adapter_config.json",
                 "encoder/model.safetensors", "tokenizer/tokenizer.json"):
        assert (run / name).exists(), name
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert all(0.0 <= m["dev_f1"] <= 1.0 for m in metrics)
    meta = json.loads((run / "medner_model.json").read_text())
    assert meta["encoder"] == "lora" and 0 < meta["trainable_parameters"] < meta["total_parameters"]
    from medner.encoders.loading import load_tokenizer
    from medner.encoders.punctuation import isolate_punctuation

    assert isolate_punctuation(load_tokenizer(run / "tokenizer")) is False  # saved as trained: isolated already


def test_learns_the_pattern(trained):
    run, _ = trained
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert max(m["dev_f1"] for m in metrics) > 0.6  # a random tagger scores ~0


def test_save_load_gives_identical_predictions(trained, corpus):
    run, config = trained
    dev = list(read_corpus(corpus / "dev.jsonl"))
    texts = [r.text for r in dev]
    merged = medner.load(run, device="cpu")
    from medner.run.directory import load_run

    unmerged_run = load_run(run, merge_lora=False)
    unmerged = Annotator(unmerged_run.tagger, unmerged_run.tokenizer, unmerged_run.config, device="cpu")
    a, b = merged.predict(texts), unmerged.predict(texts)
    again = medner.load(run, device="cpu").predict(texts)
    assert a == again and [[s.score for s in p] for p in a] == [[s.score for s in p] for p in again]
    assert a == b  # merged LoRA == adapter on top of the base
    for text, spans in zip(texts, a):
        for span in spans:
            assert 0 <= span.start < span.end <= len(text) and 0.0 <= span.score <= 1.0 + 1e-6


def test_predicted_spans_never_start_or_end_on_invisible_characters(trained, monkeypatch):
    import medner.annotate as annotate_module

    run, _ = trained
    annotator = medner.load(run, device="cpu")
    whole = lambda windows, spans: [Span(0, windows[-1].end, "疾病和诊断", score=0.5)]  # noqa: E731
    monkeypatch.setattr(annotate_module, "merge_window_predictions", whole)  # a model that tags everything
    texts = ["\x00 胃癌\u200b\n", "\x00 \t", "胃癌e\u0301"]
    got = annotator.predict(texts)
    assert [[(s.start, s.end, s.score) for s in spans] for spans in got] == [[(2, 4, 0.5)], [], [(0, 4, 0.5)]]


def test_predict_cli_writes_jsonl(trained, corpus, tmp_path):
    run, _ = trained
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(run), str(corpus / "dev.jsonl"), "-o", str(out), "--device", "cpu"]) == 0
    pred = list(read_corpus(out))
    gold = list(read_corpus(corpus / "dev.jsonl"))
    assert [r.id for r in pred] == [r.id for r in gold]
    assert all(p.text == g.text for p, g in zip(pred, gold))
    assert main(["evaluate", "--gold", str(corpus / "dev.jsonl"), "--pred", str(out)]) == 0


def test_second_run_reuses_tokenised_windows_and_logs_the_loss(trained, corpus, tmp_path, caplog):
    run, config = trained
    cache = Path(config.encoder.cache_dir) / "features"
    before = sorted(p.name for p in cache.iterdir())
    config.output_dir = str(tmp_path / "again")
    config.train.epochs = 1
    config.train.log_every = 2
    with caplog.at_level("INFO"):
        finetune(config, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == before
    assert any("cached" in r.getMessage() for r in caplog.records)
    steps = json.loads((tmp_path / "again" / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(logged) == steps // 2 and logged[0].startswith(f"step 2/{steps}: train_loss=")


def test_a_run_that_never_scores_says_so(trained, tmp_path, caplog, monkeypatch):
    import medner.training.finetune as train_module

    real = train_module.evaluate_dev

    def nothing_found(*args, **kwargs):
        result = real(*args, **kwargs)
        result["micro"]["f1"] = 0.0
        return result

    run, config = trained
    config.output_dir = str(tmp_path / "collapsed")
    config.train.epochs = 1
    monkeypatch.setattr(train_module, "evaluate_dev", nothing_found)
    with caplog.at_level("WARNING"):
        finetune(config, progress=False)
    assert any("stayed 0 for all 1 epochs" in r.getMessage() and "Fix:" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setattr(train_module, "evaluate_dev", real)
    config.output_dir = str(tmp_path / "fine")
    with caplog.at_level("WARNING"):
        finetune(config, progress=False)
    assert not any("stayed 0" in r.getMessage() for r in caplog.records)


def test_resume_after_a_kill_matches_an_uninterrupted_run(corpus, tmp_path):
    whole = load_config(write_config(tmp_path / "a", corpus, epochs=2))
    finetune(whole, progress=False)

    import medner.training.checkpoint as ckpt

    killed = load_config(write_config(tmp_path / "b", corpus, epochs=2))
    with killed_after_checkpoint(3):  # mid-epoch 2 (checkpoint_every=4 steps, 6 steps per epoch)
        finetune(killed, progress=False)
    latest = ckpt.checkpoints(Path(killed.output_dir) / "checkpoint")[0]
    state = json.loads((latest / "trainer_state.json").read_text())["state"]
    assert not state["finished"]
    finetune(killed, resume=True, progress=False)

    a = load_file(str(ckpt.checkpoints(Path(whole.output_dir) / "checkpoint")[0] / "trainable.safetensors"))
    b = load_file(str(ckpt.checkpoints(Path(killed.output_dir) / "checkpoint")[0] / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_full_finetuning_and_softmax_variants(corpus, tmp_path):
    path = write_config(tmp_path, corpus, epochs=1)
    config = load_config(path, ["lora=null", "crf.enabled=false", "crf.transition_weights={}"])
    run = finetune(config, progress=False)
    meta = json.loads((run / "medner_model.json").read_text())
    assert meta["encoder"] == "full" and not (run / "adapter").exists()
    assert meta["trainable_parameters"] == meta["total_parameters"]
    annotator = medner.load(run, device="cpu")
    assert annotator.tagger.crf is None  # the softmax head was saved and loaded as such
    texts = [r.text for r in read_corpus(corpus / "train.jsonl")][:12]
    predictions = annotator.predict(texts)
    assert any(predictions), "a trained softmax tagger must find some span on its own training texts"
    for text, spans in zip(texts, predictions):
        assert all(isinstance(s, Span) and 0 <= s.start < s.end <= len(text) for s in spans)


@pytest.mark.slow
def test_data_parallel_training_with_torchrun(corpus, trained, tmp_path):
    """Two CPU processes on gloo train one model: same run directory layout, each rank half the batches."""
    import os
    import subprocess
    import sys

    path = write_config(tmp_path, corpus, epochs=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "medner", "finetune", str(path), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # written once, by rank 0
    single = [json.loads(line) for line in (trained[0] / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == -(-single[0]["step"] // 2)  # each rank runs half the batches
    assert metrics[-1]["dev_f1"] > 0  # the two ranks trained one model that finds dev entities
    texts = [r.text for r in read_corpus(corpus / "dev.jsonl")]
    assert any(medner.load(run, device="cpu").predict(texts))  # and the saved run loads and predicts them


def test_lexicon_features_are_learned_saved_and_used(corpus, tmp_path):
    from medner.lexicon import LexiconEntry, write_lexicon

    diseases, drugs = tmp_path / "diseases.tsv", tmp_path / "drugs.tsv"
    write_lexicon([LexiconEntry(t, "疾病和诊断", None, t, "test") for t in ("直肠癌", "胃癌", "肺炎")], diseases)
    write_lexicon([LexiconEntry(t, "药物", None, t, "test") for t in ("阿司匹林", "头孢")], drugs)
    path = write_config(tmp_path, corpus, epochs=2)
    config = load_config(path, [f"lexicon_features={{lexicon: [{diseases}, {drugs}], min_length: 1}}"])
    run = finetune(config, progress=False)
    meta = json.loads((run / "medner_model.json").read_text())
    kept = (run / "lexicon_features.tsv").read_text(encoding="utf-8")
    assert "直肠癌" in kept and "阿司匹林" in kept  # the two files, merged into the run directory
    head = load_file(str(run / "head.safetensors"))
    assert head["lexicon.weight"].abs().sum() > 0  # starts at zero, so training moved it
    annotator = medner.load(run, device="cpu")
    assert annotator.lexicon is not None and len(annotator.lexicon) == 5  # O + B/I for two labels
    assert annotator.lexicon.fingerprint == meta["lexicon_fingerprint"]  # the features it was trained with
    texts = [r.text for r in read_corpus(corpus / "dev.jsonl")]
    assert annotator.predict(texts) == medner.load(run, device="cpu").predict(texts)
    # the features change the emissions: without them, predictions' scores differ
    plain = Annotator(annotator.tagger, annotator.tokenizer, annotator.config, device="cpu", lexicon=None)
    scores = lambda preds: [s.score for p in preds for s in p]
    assert scores(plain.predict(texts)) != scores(annotator.predict(texts))


def test_icd_linking_carries_codes_to_predictions(trained, corpus, tmp_path):
    from medner.lexicon import LexiconEntry, write_lexicon

    run, _ = trained
    lexicon = tmp_path / "icd.tsv"
    write_lexicon([LexiconEntry("直肠癌", "疾病和诊断", "C20.x00", "直肠恶性肿瘤", "icd10"),
                   LexiconEntry("胃恶性肿瘤", "疾病和诊断", "C16.900", "胃恶性肿瘤", "icd10"),
                   LexiconEntry("肺炎", "疾病和诊断", "J18.900", "肺炎", "icd10")], lexicon)
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(run), str(corpus / "dev.jsonl"), "-o", str(out), "--device", "cpu",
                 "--icd-lexicon", str(lexicon)]) == 0
    spans = [(r.text, s) for r in read_corpus(out) for s in r.spans]
    coded = [(t, s) for t, s in spans if s.code]
    assert coded, "no disease span was linked"
    expected = {"直肠癌": "C20.x00", "肺炎": "J18.900"}
    for text, span in coded:
        assert span.label == "疾病和诊断"
        if span.mention(text) in expected:
            assert span.code == expected[span.mention(text)]
    assert all(s.code is None for _, s in spans if s.label != "疾病和诊断")
    # a run whose config links: the lexicon travels inside the run directory
    import shutil

    import yaml

    linked = tmp_path / "linked_run"
    shutil.copytree(run, linked, ignore=shutil.ignore_patterns("checkpoint"))
    cfg = yaml.safe_load((linked / "config.yaml").read_text(encoding="utf-8"))
    cfg["link"] = {"lexicon": str(lexicon), "labels": ["疾病和诊断"], "min_score": 0.6}
    (linked / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    shutil.copyfile(lexicon, linked / "icd_lexicon.tsv")
    from medner.run.directory import reseal

    reseal(linked)  # a deliberate edit of the run: record the new files
    annotator = medner.load(linked, device="cpu")
    texts = [r.text for r in read_corpus(corpus / "dev.jsonl")]
    assert any(s.code for p in annotator.predict(texts) for s in p)


@pytest.mark.parametrize("total,ratio,minimum,expected", [
    (1320, 0.06, 50, 80),   # the ratio wins on a long run (CCKS 2019, 10 epochs)
    (140, 0.06, 50, 35),    # a short run gets the floor, capped at a quarter of its steps (90 records)
    (1000, 0.06, 50, 60),
    (400, 0.06, 50, 50),
    (8, 0.0, 50, 2),
    (100, 0.0, 0, 0),       # no warmup when both say so
])
def test_warmup_steps_have_a_floor(total, ratio, minimum, expected):
    from medner.training.finetune import warmup_steps

    assert warmup_steps(total, ratio, minimum) == expected
