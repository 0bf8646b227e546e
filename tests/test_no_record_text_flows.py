"""Record text never reaches a log line, even at debug level (-v) and from the libraries underneath
(transformers, peft, datasets): the main flows end to end on a tiny corpus whose every record carries secret
markers in its text and in a gold mention. Corpus errors are checked in test_no_record_text.py."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from medner.cli import main
from medner.corpus import write_jsonl
from medner.types import Record, Span
from tiny_model import build_encoder_dir, make_records, write_config

SECRET = "SECRETXQZ"
SECRET_ZH = "机密标记"
WEAK_CONFIG = Path(__file__).parent / "data" / "weak" / "weak_tiny.yaml"
LABELS = ["疾病和诊断", "解剖部位", "药物"]

pytestmark = pytest.mark.slow


def with_markers(records: list[Record]) -> list[Record]:
    """Each record as ``机密标记病，<text>SECRETXQZ``, the first five characters a gold 疾病和诊断 mention."""
    head = SECRET_ZH + "病，"
    out = []
    for r in records:
        spans = (Span(0, 5, "疾病和诊断"),) + tuple(Span(s.start + len(head), s.end + len(head), s.label)
                                                  for s in r.spans)
        out.append(Record(r.id, head + r.text + SECRET, spans))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("secret_corpus")
    train, dev = with_markers(make_records(24, 1)), with_markers(make_records(8, 2))
    write_jsonl(train, root / "train.jsonl")
    write_jsonl(dev, root / "dev.jsonl")
    build_encoder_dir(root / "encoder", [r.text for r in train + dev], hidden=32)
    return root


def assert_no_marker(caplog, capsys, what: str) -> None:
    err = capsys.readouterr().err  # the CLI's own handler writes to stderr
    lines = [r.getMessage() for r in caplog.records] + [str(r.exc_info) for r in caplog.records if r.exc_info] + [err]
    assert caplog.records, f"{what}: nothing was logged, so nothing was checked"
    for line in lines:
        for marker in (SECRET, SECRET_ZH, SECRET[:4], SECRET_ZH[:2]):
            assert marker not in line, f"{what} logged record text: {line[:200]!r}"
    caplog.clear()


def test_train_predict_evaluate_distill_pretrain_and_weak_labels_log_no_record_text(corpus, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # every logger, the libraries' included
    config = write_config(tmp_path / "teacher", corpus, epochs=1)
    tree = yaml.safe_load(config.read_text(encoding="utf-8"))
    tree["data"]["labels"] = LABELS
    tree["supervision"] = {"mode": "weak+gold", "weak_config": str(WEAK_CONFIG), "gold_fraction": 0.5,
                           "pretrain_epochs": 1}
    config.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    teacher = tmp_path / "teacher" / "run"

    assert main(["-v", "finetune", str(config), "--no-progress"]) == 0
    assert_no_marker(caplog, capsys, "finetune (weak + gold phases)")

    pred = tmp_path / "pred.jsonl"
    assert main(["-v", "predict", "--model", str(teacher), str(corpus / "dev.jsonl"), "-o", str(pred),
                 "--device", "cpu"]) == 0
    assert SECRET in pred.read_text(encoding="utf-8")  # the output file has the text; the logs must not
    assert_no_marker(caplog, capsys, "predict")

    assert main(["-v", "evaluate", "--gold", str(corpus / "dev.jsonl"), "--pred", str(pred), "--json"]) == 0
    assert_no_marker(caplog, capsys, "evaluate")

    weak = tmp_path / "weak.jsonl"
    assert main(["-v", "weak", "label", "--config", str(WEAK_CONFIG), str(corpus / "train.jsonl"), "--format",
                 "jsonl", "-o", str(weak)]) == 0
    assert main(["-v", "weak", "report", "--config", str(WEAK_CONFIG), str(corpus / "dev.jsonl"), "--format",
                 "jsonl"]) == 0
    assert_no_marker(caplog, capsys, "weak label / report")

    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text("".join(json.dumps({"id": f"u{i}", "text": f"{SECRET_ZH}患者无发热{i}。"},
                                             ensure_ascii=False) + "\n" for i in range(4)), encoding="utf-8")
    assert main(["-v", "distill", str(teacher), "-o", str(tmp_path / "student"), "--unlabelled", str(unlabelled),
                 "--set", "train.epochs=1", "--no-progress"]) == 0
    assert_no_marker(caplog, capsys, "distill")

    pretrain = tmp_path / "pretrain.yaml"
    pretrain.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "adapted"), "seed": 3, "device": "cpu",
        "encoder": {"name": str(corpus / "encoder"), "cache_dir": str(tmp_path / "cache")},
        "sources": [{"path": str(corpus / "train.jsonl"), "format": "jsonl"}, {"path": str(unlabelled),
                                                                             "format": "jsonl"}],
        "exclude": [{"path": str(corpus / "dev.jsonl"), "format": "jsonl"}],
        "train": {"epochs": 1, "batch_size": 8, "max_tokens": 24, "log_every": 1, "heldout_sequences": 4}},
        allow_unicode=True), encoding="utf-8")
    assert main(["-v", "pretrain", str(pretrain), "--no-progress"]) == 0
    assert_no_marker(caplog, capsys, "pretrain")
