"""medner distill: soft targets from teachers, a cut student initialised from the first teacher, checks."""
from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch

import medner
from medner.corpus import read_corpus, write_jsonl
from medner.errors import ConfigError, MednerError
from medner.training.distill import distill, keep_layers
from interrupt import killed_after_checkpoint
from tiny_model import make_records


@pytest.mark.parametrize("n,keep,expected", [(12, 6, [1, 3, 5, 7, 9, 11]), (12, 4, [2, 5, 8, 11]),
                                             (2, 1, [1]), (3, 3, [0, 1, 2])])
def test_keep_layers_spreads_and_ends_with_the_last(n, keep, expected):
    assert keep_layers(n, keep) == expected


def test_keep_layers_refuses_impossible_counts():
    with pytest.raises(ConfigError, match="--layers"):
        keep_layers(2, 3)


def _mean_kl(teacher_dir, student_dir, records) -> float:
    """Mean per-token KL(teacher marginals || student marginals) on the windows of ``records``."""
    from medner.model.windows import build_dataset
    from medner.run.directory import load_run
    from medner.training.soft_targets import soft_targets

    teacher, student = load_run(teacher_dir), load_run(student_dir)
    dataset, _, _ = build_dataset(records, teacher.tokenizer, teacher.config.window, teacher.tagger.scheme,
                                  "keep_longest")
    n_tags = len(teacher.tagger.scheme)
    p = torch.tensor([x for row in soft_targets(dataset, [teacher], 1) for x in row]).view(-1, n_tags)
    q = torch.tensor([x for row in soft_targets(dataset, [student], 1) for x in row]).view(-1, n_tags)
    return float((p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(-1).mean())


def test_a_cut_student_learns_to_agree_with_its_teacher(tiny_run, tiny_corpus, tmp_path):
    dev = list(read_corpus(tiny_corpus / "dev.jsonl"))
    # a student whose head starts afresh: far from the teacher until distillation teaches it
    fresh = ["distill.init_head_from_teacher=false", "train.warmup_min_steps=0"]
    frozen = fresh + ["train.lr_encoder=1e-12", "train.lr_head=1e-12", "train.max_steps=1", "train.epochs=1"]
    untrained = distill([str(tiny_run)], tmp_path / "untrained", layers=1, overrides=frozen, progress=False)
    raw = tmp_path / "raw.jsonl"  # texts the teacher never saw, not the dev texts the agreement is measured on
    write_jsonl([r.with_spans(()) for r in make_records(12, 3)], raw)
    student = distill([str(tiny_run)], tmp_path / "student", layers=1, alpha=0.9, unlabelled=[str(raw)],
                      overrides=fresh + ["train.epochs=8", "train.lr_encoder=1e-3", "train.lr_head=1e-2"],
                      progress=False)
    before, after = _mean_kl(tiny_run, untrained, dev), _mean_kl(tiny_run, student, dev)
    assert before > 0.01 and after < 0.5 * before, (before, after)
    loaded = medner.load(student, device="cpu")
    assert loaded.tagger.encoder.config.num_hidden_layers == 1  # an ordinary run directory with one layer
    assert not (student / "student_init").exists()
    assert loaded.config.distill.teachers == [str(tiny_run)] and loaded.config.lora is None


def test_soft_targets_of_identical_teachers_equal_one_teachers(tiny_run, tiny_corpus):
    from medner.model.windows import build_dataset
    from medner.run.directory import load_run
    from medner.training.soft_targets import soft_targets

    run = load_run(tiny_run)
    records = list(read_corpus(tiny_corpus / "dev.jsonl"))[:4]
    dataset, _, _ = build_dataset(records, run.tokenizer, run.config.window, run.tagger.scheme, "keep_longest")
    one = soft_targets(dataset, [run], run.tokenizer.pad_token_id)
    two = soft_targets(dataset, [run, load_run(tiny_run)], run.tokenizer.pad_token_id)
    n_tags = len(run.tagger.scheme)
    for a, b, row in zip(one, two, dataset):
        assert len(a) == len(row["label_index"]) * n_tags
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-6, rtol=0)
        sums = torch.tensor(a).view(-1, n_tags).sum(-1)
        torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-4, rtol=0)  # distributions over tags


def test_soft_targets_are_cached_by_windows_and_teachers_in_any_order(tiny_run, tiny_corpus, tmp_path, monkeypatch):
    import datasets
    from safetensors.torch import load_file, save_file

    import medner.training.soft_targets as st
    from medner.model.windows import build_dataset, fingerprint
    from medner.run.directory import load_run, reseal

    other = tmp_path / "other"  # a second teacher: the same run with another head
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("checkpoint"))
    head = load_file(str(other / "head.safetensors"))
    torch.manual_seed(0)
    save_file({k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in head.items()},
              str(other / "head.safetensors"))
    reseal(other)
    a, b = load_run(tiny_run), load_run(other)
    records = list(read_corpus(tiny_corpus / "dev.jsonl"))[:4]
    window = a.config.window
    dataset, _, _ = build_dataset(records, a.tokenizer, window, a.tagger.scheme, "keep_longest")
    key = fingerprint(records, a.tokenizer, window, a.tagger.scheme, "keep_longest")
    cache, pad, ids = tmp_path / "cache", a.tokenizer.pad_token_id, {r.id for r in records}
    first = st.add_soft_targets(dataset, [a, b], ids, pad, cache_dir=cache, windows_key=key)
    assert first["soft"] != st.add_soft_targets(dataset, [a], ids, pad)["soft"]  # b counts
    (stored,) = cache.iterdir()  # float32, as computed: exact in half the space of Python floats
    assert str(datasets.load_from_disk(str(stored)).features["soft"].feature.dtype) == "float32"
    monkeypatch.setattr(st, "soft_targets", lambda *_, **__: pytest.fail("soft targets computed again"))
    os.utime(stored, (1, 1))
    assert st.add_soft_targets(dataset, [b, a], ids, pad, cache_dir=cache, windows_key=key)["soft"] == first["soft"]
    assert stored.stat().st_mtime > 1  # the hit marks the entry used (`medner cache prune --unused-for`)
    with pytest.raises(pytest.fail.Exception):  # other teachers: another key
        st.add_soft_targets(dataset, [a], ids, pad, cache_dir=cache, windows_key=key)
    with pytest.raises(ConfigError, match="cached soft targets have"):  # never misaligned rows
        st.add_soft_targets(dataset.select(range(len(dataset) - 1)), [a, b], ids, pad, cache_dir=cache,
                            windows_key=key)


def test_teachers_with_other_labels_or_tokenizers_are_refused_before_training(tiny_run, tmp_path):
    from medner.run.directory import reseal

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("checkpoint"))
    labels = json.loads((other / "labels.json").read_text(encoding="utf-8"))
    labels["types"] = labels["types"][:-1]
    labels["tags"] = [t for t in labels["tags"] if not t.endswith(labels["types"][-1] + "x")][:-2]
    (other / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    reseal(other)
    with pytest.raises(ConfigError, match="teacher has tags"):
        distill([str(tiny_run), str(other)], tmp_path / "s1", progress=False)
    assert not (tmp_path / "s1").exists()
    shutil.rmtree(other)
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("checkpoint"))
    tok = json.loads((other / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    tok["model"]["vocab"] = tok["model"]["vocab"][:-1]
    (other / "tokenizer" / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    reseal(other)
    with pytest.raises(ConfigError, match="another tokenizer"):
        distill([str(tiny_run), str(other)], tmp_path / "s2", progress=False)


@pytest.mark.usefixtures("one_torch_thread")  # bit-equal weights need the same reduction order in both runs
def test_an_interrupted_student_resumes_to_the_weights_of_an_unbroken_one(tiny_run, tmp_path, monkeypatch, caplog):
    import logging

    from safetensors.torch import load_file

    import medner.training.checkpoint as ckpt
    import medner.training.distill as ds
    import medner.training.soft_targets as st

    options = dict(layers=1, overrides=["train.epochs=2", "train.checkpoint_every=3"], progress=False)
    whole = distill([str(tiny_run)], tmp_path / "whole", **options)
    killed = tmp_path / "killed"
    with killed_after_checkpoint(2):
        distill([str(tiny_run)], killed, **options)
    assert (killed / "student_init" / "config.json").is_file()
    with pytest.raises(ConfigError, match="--resume"):
        distill([str(tiny_run)], killed, **options)
    with caplog.at_level(logging.INFO, logger="medner.training"), monkeypatch.context() as patch:
        patch.setattr(st, "soft_targets", lambda *_, **__: pytest.fail("soft targets computed again on resume"))
        resumed = distill([str(tiny_run)], killed, resume=True, **options)
    assert "resumed from epoch 0, step 6" in caplog.text  # not trained again from the start
    assert "loaded from cache soft-" in caplog.text
    a = load_file(str(ckpt.checkpoints(whole / "checkpoint")[0] / "trainable.safetensors"))
    b = load_file(str(ckpt.checkpoints(resumed / "checkpoint")[0] / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    assert not (resumed / "student_init").exists()
    monkeypatch.setattr(ds, "load_run", lambda *a, **k: pytest.fail("a finished student loaded its teacher again"))
    monkeypatch.setattr(ds, "check_unlabelled", lambda *a, **k: pytest.fail("a finished student read its texts"))
    assert distill([str(tiny_run)], killed, resume=True, **options) == resumed


@pytest.fixture(scope="module")
def half_gold_teacher(tmp_path_factory, tiny_corpus):
    """A finished run that read the gold of half the training records (seed 3's sample); treat it as read-only."""
    from medner.config import load_config
    from medner.training.finetune import finetune
    from tiny_model import write_config

    root = tmp_path_factory.mktemp("half_gold")
    config = load_config(write_config(root, tiny_corpus, epochs=2), ["supervision.gold_fraction=0.5", "seed=3"])
    return finetune(config, progress=False)


def test_a_student_reads_only_the_gold_share_its_teacher_read(half_gold_teacher, tmp_path, monkeypatch):
    import medner.training.finetune as ft
    from medner.run.directory import read_run_config
    from medner.training.records import split_train_dev
    from medner.training.gold_share import gold_share

    teacher_config = read_run_config(half_gold_teacher)
    train, _ = split_train_dev(teacher_config)
    gold, left_out = gold_share(teacher_config, train)
    assert gold and left_out
    seen = {}
    real = ft.add_soft_targets

    def spy(dataset, teachers, gold_ids, *args, **kwargs):
        seen.update(gold_ids=set(gold_ids), windowed={row["record_id"] for row in dataset})
        return real(dataset, teachers, gold_ids, *args, **kwargs)

    monkeypatch.setattr(ft, "add_soft_targets", spy)
    # another student seed: the gold share is still the teachers' (drawn with their seed, kept as gold_seed)
    student = distill([str(half_gold_teacher)], tmp_path / "student", overrides=["train.epochs=1", "seed=11"],
                      progress=False)
    assert seen["gold_ids"] == {r.id for r in gold}
    assert {r.id for r in left_out} <= seen["windowed"]  # the rest: texts with soft targets only
    supervision = read_run_config(student).supervision
    assert (supervision.gold_fraction, supervision.gold_seed) == (0.5, 3)


def _with_config(run, out, **changes):
    """A copy of ``run`` whose config.yaml has the dotted ``changes`` (resealed, so it loads)."""
    import yaml

    from medner.config import apply_overrides
    from medner.run.directory import reseal

    shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoint"))
    tree = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    apply_overrides(tree, [f"{key}={value}" for key, value in changes.items()])
    (out / "config.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    reseal(out)
    return out


def test_teachers_of_other_gold_shares_or_without_gold_are_refused_before_training(half_gold_teacher, tiny_run,
                                                                                  tmp_path):
    other_sample = _with_config(half_gold_teacher, tmp_path / "seed5", seed=5)
    with pytest.raises(ConfigError, match="different shares of the gold records.*seed 3.*seed 5"):
        distill([str(half_gold_teacher), str(other_sample)], tmp_path / "s1", progress=False)
    with pytest.raises(ConfigError, match="different shares of the gold records"):  # all the gold vs a half
        distill([str(tiny_run), str(half_gold_teacher)], tmp_path / "s2", progress=False)
    weak = _with_config(tiny_run, tmp_path / "weak", **{"supervision.mode": "weak", "supervision.weak_config": "w.yaml"})
    with pytest.raises(ConfigError, match="without gold"):
        distill([str(weak)], tmp_path / "s3", progress=False)
    # the same share drawn by runs of other seeds: one gold_seed
    same = _with_config(half_gold_teacher, tmp_path / "seed5_same", seed=5, **{"supervision.gold_seed": 3})
    from medner.training.distill import teachers_gold_share
    assert teachers_gold_share([str(half_gold_teacher), str(same)]) == {"gold_fraction": 0.5, "gold_seed": 3}
    for name in ("s1", "s2", "s3"):
        assert not (tmp_path / name / "metrics.jsonl").exists()


def test_a_teacher_that_is_not_a_finished_run_is_refused_by_name_before_anything_is_written(tiny_run, tmp_path):
    killed = tmp_path / "killed"  # a teacher killed while training: its config and a checkpoint, no model yet
    (killed / "checkpoint").mkdir(parents=True)
    shutil.copy(tiny_run / "config.yaml", killed / "config.yaml")
    for teacher in (killed, tmp_path / "never_trained"):
        with pytest.raises(MednerError, match=f"{teacher}: (not a medner run directory|no such run directory).*"
                                              "finished"):
            distill([str(tiny_run), str(teacher)], tmp_path / "student", progress=False)
        assert not (tmp_path / "student").exists()


QUICK = ["train.max_steps=1", "train.epochs=1", "train.warmup_min_steps=0"]  # one step: what a student reads and writes


def test_unlabelled_dev_texts_carry_no_soft_targets_and_a_test_split_or_wrong_format_is_refused(
        tiny_run, tiny_corpus, tmp_path, caplog):
    held_out = tmp_path / "test" / "notes.jsonl"  # in a folder named like a held-out split
    held_out.parent.mkdir()
    shutil.copy(tiny_corpus / "dev.jsonl", held_out)
    with pytest.raises(ConfigError, match="looks like a test split.*distill.unlabelled"):
        distill([str(tiny_run)], tmp_path / "refused", unlabelled=[str(held_out)], overrides=QUICK, progress=False)
    assert not (tmp_path / "refused").exists()
    with pytest.raises(MednerError, match="dev.jsonl: cannot be read as ccks2017.*distill.unlabelled_format"):
        distill([str(tiny_run)], tmp_path / "refused", unlabelled=[str(tiny_corpus / "dev.jsonl")],
                unlabelled_format="ccks2017", overrides=QUICK, progress=False)
    assert not (tmp_path / "refused").exists()  # nor after reading the first record in another format

    with caplog.at_level(logging.INFO):
        distill([str(tiny_run)], tmp_path / "student", unlabelled=[str(tiny_corpus / "dev.jsonl")], overrides=QUICK,
                progress=False)
    assert "distill.unlabelled: left out 12 text(s) that are dev records' texts" in caplog.text
    assert "(0 from unlabelled texts)" in caplog.text  # no dev window carries the teacher's soft targets


def test_a_student_trained_without_a_terminal_draws_no_bar(tiny_run, tmp_path, capfd):
    capfd.readouterr()  # saving a cut encoder and a full (non-LoRA) run: no "Writing model shards" bar in a job log
    distill([str(tiny_run)], tmp_path / "student", layers=1, progress=True, overrides=QUICK)
    err = capfd.readouterr().err
    assert "it/s" not in err and "\r" not in err


def test_overwrite_of_a_student_whose_data_cannot_be_read_keeps_the_earlier_student(tiny_corpus, tmp_path):
    """`medner distill --overwrite` deletes the earlier student only once the new one's records are read."""
    from medner.config import load_config
    from medner.training.finetune import finetune
    from tiny_model import write_config

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    teacher = finetune(load_config(write_config(tmp_path / "teacher", corpus, epochs=1)), progress=False)
    student = distill([str(teacher)], tmp_path / "student", overrides=QUICK, progress=False)
    before = {p.name: p.read_bytes() for p in student.iterdir() if p.is_file()}
    broken = tmp_path / "notes.jsonl"  # unlabelled texts whose second line is broken: read in full first
    broken.write_text('{"id": "n1", "text": "患者因胸痛入院"}\n{"id": "n2", "text": \n', encoding="utf-8")
    with pytest.raises(MednerError, match="notes.jsonl:2"):
        distill([str(teacher)], student, unlabelled=[str(broken)], overrides=QUICK, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in student.iterdir() if p.is_file()} == before
    with pytest.raises(ConfigError, match="`--layers` must be between 1"):
        distill([str(teacher)], student, layers=9, overrides=QUICK, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in student.iterdir() if p.is_file()} == before
    (corpus / "train.jsonl").unlink()  # the teachers' training records, which the student reads too
    with pytest.raises(MednerError, match="train.jsonl"):
        distill([str(teacher)], student, overrides=QUICK, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in student.iterdir() if p.is_file()} == before


def test_refused_students_leave_no_folder(tiny_run, tmp_path):
    """Bad options and an exported first teacher (the student's start must be trainable) are refused before the
    student's folder is made."""
    from medner.run.directory import update_meta

    for layers in (-1, 9):
        with pytest.raises(ConfigError, match="`--layers` must be between 1"):
            distill([str(tiny_run)], tmp_path / "student", layers=layers, progress=False)
        assert not (tmp_path / "student").exists()
    with pytest.raises(ConfigError, match="lies inside the teacher run"):
        distill([str(tiny_run)], tiny_run / "student", progress=False)
    assert not (tiny_run / "student").exists()
    exported = tmp_path / "exported"  # stands for `medner export`'s output: its metadata says ONNX
    shutil.copytree(tiny_run, exported)
    update_meta(exported, format="onnx")
    with pytest.raises(ConfigError, match="first teacher is the student's start, but it is an exported run"):
        distill([str(exported), str(tiny_run)], tmp_path / "student", progress=False)
    assert not (tmp_path / "student").exists()


def test_resume_into_a_run_that_is_no_student_of_these_teachers_is_refused_before_writing(tiny_run, tmp_path):
    """`--resume -o FINISHED_RUN` wrote the student's start into that run, then failed on its checkpoint."""
    other = tmp_path / "finetuned"
    shutil.copytree(tiny_run, other)
    files = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="holds a run that is no distillation student, not a student of the "
                                          "teachers named now"):
        distill([str(tiny_run)], other, resume=True, progress=False)
    assert {p: p.read_bytes() for p in other.rglob("*") if p.is_file()} == files
    student = tmp_path / "student"  # killed while distilling from another teacher: its config names that one
    (student / "checkpoint").mkdir(parents=True)
    (student / "config.yaml").write_text(f"distill:\n  teachers: [{tmp_path / 'elsewhere'}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"holds the student of {tmp_path / 'elsewhere'}, not a student of"):
        distill([str(tiny_run)], student, resume=True, progress=False)
    assert sorted(p.name for p in student.iterdir()) == ["checkpoint", "config.yaml"]
