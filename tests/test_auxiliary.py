"""Intermediate training on other labelled corpora (`data.auxiliary`): label maps, own labels, phases."""
from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path

import pytest
import yaml
from tiny_model import write_config

import medner.training.supervision as sup
from medner.config import AuxiliaryCorpusConfig, load_config
from medner.corpus import read_corpus, write_jsonl
from medner.errors import ConfigError, CorpusError
from medner.training.auxiliary import read_auxiliary
from medner.types import Record, Span

LABELS = ["疾病和诊断", "药物", "解剖部位"]
MAPS = Path(__file__).resolve().parents[1] / "configs" / "label_maps"
WEAK = Path(__file__).parent / "data" / "supervision" / "weak.yaml"


@pytest.fixture
def other_corpus(tmp_path) -> Path:
    """A corpus with another scheme: dis / dru / sym (CMeEE-like)."""
    records = [Record(f"o{i}", "患者肺炎咳嗽，予青霉素。", (Span(2, 4, "dis"), Span(4, 6, "sym"), Span(8, 11, "dru")))
               for i in range(6)]
    path = tmp_path / "other.jsonl"
    write_jsonl(records, path)
    return path


@pytest.fixture
def captured(monkeypatch):
    calls = []

    def fake_finetune(config, *, resume=False, progress=True, data=None, score_labels=None, **_):
        config.score_labels = score_labels  # what the phase's dev scores count
        calls.append((config, data))
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        return out

    monkeypatch.setattr(sup, "finetune", fake_finetune)
    return calls


def _aux(path, **extra) -> str:
    return "data.auxiliary=" + yaml.safe_dump([{"name": "other", "format": "jsonl", "train": [str(path)], **extra}],
                                              allow_unicode=True, default_flow_style=True).strip()


def test_mapped_corpus_then_target_phase(tiny_corpus, other_corpus, tmp_path, captured):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=4), [
        f"data.labels=[{', '.join(LABELS)}]", "supervision.auxiliary_epochs=1",
        _aux(other_corpus, label_map={"dis": "疾病和诊断", "dru": "药物", "sym": None})])
    sup.run_phases(config, progress=False)
    (aux_cfg, (aux_train, aux_dev)), (target_cfg, (target_train, target_dev)) = captured
    assert aux_cfg.output_dir == str(Path(config.output_dir) / "phases" / "auxiliary") and aux_cfg.train.epochs == 1
    assert aux_cfg.data.labels == LABELS  # mapped: the target's own label set
    other = [r for r in aux_train if r.id.startswith("other:")]
    assert len(other) == 6 and len(aux_train) == 6 + 48
    assert [(s.start, s.end, s.label) for s in other[0].spans] == [(2, 4, "疾病和诊断"), (8, 11, "药物")]
    assert target_cfg.output_dir == config.output_dir and target_cfg.train.epochs == 4
    assert target_cfg.init_from == aux_cfg.output_dir and target_cfg.init_head  # same labels: the head carries over
    assert [r.id for r in target_train] == [r.id for r in read_corpus(tiny_corpus / "train.jsonl")]
    assert aux_dev == target_dev and len(target_dev) == 12


def test_own_labels_are_namespaced_and_the_target_starts_with_a_fresh_head(tiny_corpus, other_corpus, tmp_path,
                                                                            captured):
    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, own_labels=True)])
    sup.run_phases(config, progress=False)
    (aux_cfg, (aux_train, _)), (target_cfg, _) = captured
    assert aux_cfg.data.labels == LABELS + ["other:dis", "other:dru", "other:sym"]
    assert {s.label for r in aux_train if r.id.startswith("other:") for s in r.spans} == {
        "other:dis", "other:dru", "other:sym"}
    assert target_cfg.init_from == aux_cfg.output_dir and not target_cfg.init_head
    assert aux_cfg.score_labels == LABELS and target_cfg.score_labels is None  # aux labels never scored on dev


def test_dev_scores_of_an_auxiliary_phase_leave_out_the_auxiliary_labels():
    from torch import nn

    from medner.training.finetune import evaluate_dev

    gold = [Record("d1", "患者肺炎咳嗽，予青霉素。", (Span(2, 4, "疾病和诊断"), Span(8, 11, "药物")))]

    class Predicts:  # the gold spans + one span of an auxiliary label
        def predict_records(self, records, chunk=None):
            for r in records:
                yield Record(r.id, r.text, r.spans + (Span(4, 6, "other:sym"),))

    scored = evaluate_dev(nn.Linear(1, 1), Predicts(), gold, progress=False, labels=LABELS)
    assert scored["micro"]["f1"] == 1.0
    unfiltered = evaluate_dev(nn.Linear(1, 1), Predicts(), gold, progress=False)
    assert unfiltered["micro"]["precision"] < 1.0


def test_label_map_errors_come_before_any_training(tiny_corpus, other_corpus, tmp_path, captured):
    for label_map, message in (({"dis": "疾病"}, "not a target label"),
                               ({"dis": "疾病和诊断", "dru": "药物"}, "does not say what becomes of 'sym'"),
                               ({"disease": "疾病和诊断", "dis": None, "sym": None, "dru": None}, "never uses"),
                               ({"dis": None, "sym": None, "dru": None}, "no span is left after its label map")):
        config = load_config(write_config(tmp_path, tiny_corpus), [
            f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, label_map=label_map)])
        with pytest.raises(ConfigError, match=message):
            sup.run_phases(config, progress=False)
    assert captured == []
    with pytest.raises(ConfigError, match="label map file not found"):
        sup.run_phases(load_config(write_config(tmp_path, tiny_corpus), [
            f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, label_map_file=str(tmp_path / "gone.yaml"))]),
            progress=False)
    twice = yaml.safe_load(_aux(other_corpus, own_labels=True).split("=", 1)[1])
    with pytest.raises(ConfigError, match="two auxiliary corpora are named 'other'"):
        load_config(write_config(tmp_path, tiny_corpus), ["data.auxiliary=" + yaml.safe_dump(
            twice * 2, default_flow_style=True, allow_unicode=True).strip()])
    with pytest.raises(ConfigError, match="needs `label_map`"):
        load_config(write_config(tmp_path, tiny_corpus), [_aux(other_corpus)])
    with pytest.raises(ConfigError, match="needs `data.labels`"):
        sup.run_phases(load_config(write_config(tmp_path, tiny_corpus), [_aux(other_corpus, own_labels=True)]),
                       progress=False)


@pytest.mark.realdata
@pytest.mark.parametrize("name,fmt,path", [
    ("cmeee_to_ccks2019", "chip", "corpora/chip2020_cmeee_v1/train_data.txt"),
    ("ccks2017_to_ccks2019", "ccks2017", "corpora/ccks2017_cner/data_origin.zip")])
def test_shipped_label_maps_name_every_label_of_their_corpus(shared_data, name, fmt, path):
    from medner.config import CCKS2019_LABELS

    aux = AuxiliaryCorpusConfig(name=name.split("_")[0], format=fmt, train=[str(shared_data / path)],
                                label_map_file=str(MAPS / f"{name}.yaml"), limit=3000)
    records = read_auxiliary(aux, CCKS2019_LABELS)
    labels = {s.label for r in records for s in r.spans}
    assert labels and labels <= set(CCKS2019_LABELS)
    mapping = yaml.safe_load((MAPS / f"{name}.yaml").read_text(encoding="utf-8"))["label_map"]
    used = {s.label for r in read_corpus(shared_data / path, format=fmt, on_error="skip") for s in r.spans}
    assert used == set(mapping)  # every label of the corpus is mapped or dropped on purpose


def test_init_from_without_the_head_allows_other_labels(tiny_run, tiny_corpus, tmp_path):
    import torch

    from medner.run.directory import load_run
    from medner.training.finetune import Dist, build_tagger, prepare_inputs

    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), [
        f"init_from={tiny_run}", "init_head=false", "data.labels=[疾病和诊断, 药物]", "crf.transition_weights={}"])
    inputs = prepare_inputs(config, Dist(), None)
    tagger = build_tagger(config, inputs, torch.device("cpu"))
    teacher = load_run(tiny_run, merge_lora=False).tagger.state_dict()
    mine = tagger.state_dict()
    encoder_keys = [k for k in mine if k.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(mine[k], teacher[k]) for k in encoder_keys)
    assert mine["head.weight"].shape[0] == 5  # O + B/I of two labels: a fresh head of the new label set
    with pytest.raises(ConfigError, match="has tags"):  # with the head, the labels must match
        build_tagger(load_config(write_config(tmp_path / "b", tiny_corpus), [
            f"init_from={tiny_run}", "data.labels=[疾病和诊断, 药物]", "crf.transition_weights={}"]),
            inputs, torch.device("cpu"))


def test_a_kept_head_starts_the_target_phase_with_the_intermediate_rows_of_its_tags(tiny_corpus, other_corpus,
                                                                                      tmp_path, captured):
    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, own_labels=True),
        "supervision.auxiliary_head=kept"])
    sup.run_phases(config, progress=False)
    (aux_cfg, _), (target_cfg, _) = captured
    assert target_cfg.init_from == aux_cfg.output_dir and target_cfg.init_head and target_cfg.init_head_subset
    with pytest.raises(ConfigError, match="fresh, kept"):
        load_config(write_config(tmp_path, tiny_corpus), ["supervision.auxiliary_head=some"])


def test_a_head_subset_keeps_the_rows_and_transitions_of_this_runs_tags(tiny_run, tiny_corpus, tmp_path):
    import torch

    from medner.model.tagger import build_crf
    from medner.run.directory import load_run
    from medner.training.finetune import Dist, build_tagger, prepare_inputs

    overrides = [f"init_from={tiny_run}", "data.labels=[疾病和诊断, 药物]", "crf.transition_weights={}"]
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), overrides + ["init_head_subset=true"])
    tagger = build_tagger(config, prepare_inputs(config, Dist(), None), torch.device("cpu"))
    teacher = load_run(tiny_run, merge_lora=False).tagger
    rows = [teacher.scheme.tags.index(t) for t in tagger.scheme.tags]
    assert len(rows) == 5 < len(teacher.scheme.tags)
    mine, theirs = tagger.state_dict(), teacher.state_dict()
    for key in ("head.weight", "head.bias", "crf.start_transitions", "crf.end_transitions"):
        assert torch.equal(mine[key], theirs[key][rows])
    assert torch.equal(mine["crf.transitions"], theirs["crf.transitions"][rows][:, rows])
    own = build_crf(tagger.scheme, {}, "init").state_dict()  # the masks a tagger over these tags builds
    assert all(torch.equal(mine[f"crf.{k}"], own[k]) for k in ("allowed_start", "allowed_trans", "allowed_end"))
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if k.startswith("encoder."))
    with torch.no_grad():  # the same emissions for the kept tags on any input
        hidden = torch.randn(1, 4, tagger.head.in_features)
        assert torch.allclose(tagger.head(hidden), teacher.head(hidden)[..., rows])
    wider = load_config(write_config(tmp_path / "b", tiny_corpus), [
        f"init_from={tiny_run}", "data.labels=[疾病和诊断, 药物, 手术]", "crf.transition_weights={}",
        "init_head_subset=true"])
    with pytest.raises(ConfigError, match="手术"):  # a tag the earlier run never had: nothing to keep
        build_tagger(wider, prepare_inputs(wider, Dist(), None), torch.device("cpu"))


def test_a_kept_head_trains_end_to_end_after_corpora_with_their_own_labels(tiny_corpus, other_corpus, tmp_path,
                                                                           caplog, monkeypatch):
    import logging

    import medner
    from medner.run.directory import load_run

    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), [
        f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, own_labels=True), "supervision.auxiliary_epochs=1",
        "supervision.auxiliary_head=kept"])
    with caplog.at_level(logging.INFO, logger="medner.training.finetune"):
        run = sup.run_phases(config, progress=False)
    assert "head rows of 7 of its 13 tags" in caplog.text  # O + B/I of 3 target labels, of 3 + 3 namespaced
    assert load_run(run).tagger.scheme.types == tuple(LABELS)
    text = "患者肺炎咳嗽，予青霉素。"
    spans = medner.load(run).predict(text)
    assert all(0 <= s.start < s.end <= len(text) and s.label in LABELS for s in spans)  # no `other:` label leaks
    before = (run / "medner_model.json").read_bytes()
    for reader in ("read_auxiliary", "split_train_dev", "weak_label"):
        monkeypatch.setattr(sup, reader, lambda *a, **k: pytest.fail("a finished run read its corpora again"))
    assert sup.run_phases(config, resume=True, progress=False) == run  # finished: returns before reading anything
    assert (run / "medner_model.json").read_bytes() == before


@pytest.mark.parametrize("mode, fraction", [("weak+gold", 0.25), ("weak", 1.0)])
def test_the_intermediate_phase_reads_only_the_gold_the_run_may_read(tiny_corpus, other_corpus, tmp_path, captured,
                                                                    mode, fraction):
    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, own_labels=True), f"supervision.mode={mode}",
        f"supervision.gold_fraction={fraction}", f"supervision.weak_config={WEAK}"])
    sup.run_phases(config, progress=False)
    (aux_cfg, (aux_train, aux_dev)), *_, (last_cfg, (last_train, last_dev)) = captured
    target = [r for r in aux_train if not r.id.startswith("other:")]
    train, dev = sup.split_train_dev(config)
    if mode == "weak":  # the weak labels of every training text (the weak phase's), no gold anywhere, dev included
        assert target == last_train and len(target) == len(train) and target != train
        assert aux_dev == last_dev and aux_dev != dev
    else:  # the gold of the same seeded 25% as the gold phase, not of the 48 records
        assert last_cfg.output_dir == config.output_dir
        assert target == last_train == random.Random(config.seed).sample(train, 12)


def test_a_phase_found_in_its_folder_must_have_read_the_same_data(tiny_corpus, other_corpus, tmp_path, captured):
    from medner.config import dump_config

    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"data.labels=[{', '.join(LABELS)}]", _aux(other_corpus, own_labels=True), "supervision.mode=weak",
        f"supervision.weak_config={WEAK}"])
    sup.run_phases(config, progress=False)
    aux_cfg = captured[0][0]
    saved = Path(aux_cfg.output_dir) / "config.yaml"
    saved.write_text(dump_config(aux_cfg), encoding="utf-8")  # the same phase: resumed as it is
    sup.run_phases(config, progress=False, resume=True)
    # an intermediate phase of a gold run (all the gold read) copied in as the weak-only run's phase: refused
    saved.write_text(dump_config(aux_cfg).replace("mode: weak", "mode: gold"), encoding="utf-8")
    with pytest.raises(ConfigError, match="supervision.mode was 'gold', this run has 'weak'"):
        sup.run_phases(config, progress=False, resume=True)


def test_an_auxiliary_corpus_never_brings_test_or_dev_texts_into_training(tiny_corpus, other_corpus, tmp_path,
                                                                         captured, caplog):
    dev = list(read_corpus(tiny_corpus / "dev.jsonl"))
    mixed = tmp_path / "mixed.jsonl"  # the other corpus, plus two records whose texts are the target's dev texts
    write_jsonl(list(read_corpus(other_corpus)) + [Record(f"d{i}", r.text) for i, r in enumerate(dev[:2])], mixed)
    own = ["supervision.auxiliary_epochs=1", f"data.labels=[{', '.join(LABELS)}]"]
    config = load_config(write_config(tmp_path, tiny_corpus), own + [_aux(mixed, own_labels=True)])
    sup.run_phases(config, progress=False)
    (_, (aux_train, _)), _ = captured
    assert not {r.text for r in dev} & {r.text for r in aux_train}  # dev stays unseen
    assert len(aux_train) == 48 + 6 and "data.auxiliary: left out 2 text(s) that are dev records' texts" in caplog.text

    held_out = tmp_path / "test.jsonl"
    held_out.write_bytes(other_corpus.read_bytes())
    config = load_config(write_config(tmp_path / "b", tiny_corpus), own + [_aux(held_out, own_labels=True)])
    with pytest.raises(ConfigError, match="looks like a test split.*data.auxiliary"):
        sup.run_phases(config, progress=False)
    assert not Path(config.output_dir).exists()


def _jsonl(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding=encoding)
    return path


def test_a_limit_does_not_make_a_label_of_the_unread_records_look_unused(tmp_path):
    rows = [{"id": f"a{i}", "text": "患者肺炎。", "spans": [{"start": 2, "end": 4, "label": "dis"}]} for i in range(3)]
    rows.append({"id": "b", "text": "予青霉素。", "spans": [{"start": 1, "end": 4, "label": "dru"}]})
    aux = AuxiliaryCorpusConfig(name="other", train=[str(_jsonl(tmp_path / "o.jsonl", rows))], limit=2,
                                label_map={"dis": "疾病和诊断", "dru": "药物"})
    records = read_auxiliary(aux, LABELS)
    assert [r.id for r in records] == ["other:o.jsonl:a0", "other:o.jsonl:a1"]
    with pytest.raises(ConfigError, match="'dru', a label the corpus never uses"):  # read in full: still checked
        read_auxiliary(dataclasses.replace(aux, train=[str(_jsonl(tmp_path / "p.jsonl", rows[:3]))], limit=0), LABELS)


def test_an_auxiliary_corpus_is_read_with_its_own_encoding(tiny_corpus, other_corpus, tmp_path, captured):
    """A GB18030 target with a UTF-8 auxiliary corpus, and the other way round."""
    for name in ("train", "dev"):
        text = (tiny_corpus / f"{name}.jsonl").read_text(encoding="utf-8")
        (tmp_path / f"{name}.gbk.jsonl").write_text(text, encoding="gb18030")
    config = load_config(write_config(tmp_path, tiny_corpus), [
        f"data.labels=[{', '.join(LABELS)}]", "data.encoding=gb18030", f"data.train=[{tmp_path / 'train.gbk.jsonl'}]",
        f"data.dev=[{tmp_path / 'dev.gbk.jsonl'}]", _aux(other_corpus, own_labels=True)])
    assert config.data.auxiliary[0].encoding == "auto"
    sup.run_phases(config, progress=False)
    assert len([r for r in captured[0][1][0] if r.id.startswith("other:")]) == 6

    gbk = tmp_path / "other.gbk.jsonl"
    gbk.write_bytes(other_corpus.read_text(encoding="utf-8").encode("gb18030"))
    aux = AuxiliaryCorpusConfig(name="other", train=[str(gbk)], own_labels=True, encoding="gb18030")
    assert len(read_auxiliary(aux, LABELS)) == 6
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        AuxiliaryCorpusConfig(name="other", train=[str(gbk)], own_labels=True, encoding="klingon")


def test_an_auxiliary_corpus_skips_bad_spans_unless_its_entry_says_raise(tmp_path, caplog):
    rows = [{"id": "a", "text": "患者肺炎。", "spans": [{"start": 4, "end": 2, "label": "dis"}]},
            {"id": "b", "text": "患者肺炎。", "spans": [{"start": 2, "end": 4, "label": "dis"}]},
            {"id": "c", "text": "患者胃炎。", "spans": [{"start": 2, "end": 4, "label": "dis"}]}]
    aux = AuxiliaryCorpusConfig(name="other", train=[str(_jsonl(tmp_path / "o.jsonl", rows))], own_labels=True)
    assert aux.on_error == "skip"
    for limit in (0, 2):  # the skip summary is logged also when the limit stops reading early
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert len(read_auxiliary(dataclasses.replace(aux, limit=limit), LABELS)) == (limit or 3)
        assert "1 spans skipped" in caplog.text and "肺炎" not in caplog.text
    with pytest.raises(CorpusError, match="o.jsonl:1"):
        read_auxiliary(dataclasses.replace(aux, on_error="raise"), LABELS)
    with pytest.raises(ConfigError, match="on_error"):
        AuxiliaryCorpusConfig(name="other", train=["x"], own_labels=True, on_error="ignore")
