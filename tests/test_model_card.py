"""The model card of a run directory: README.md with encoder, data, labels, dev metrics per type, settings,
version and how to load; metrics in medner_model.json; not a model file; a demo note for the synthetic sample."""
from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import shutil

import yaml

from medner import __version__
from medner.run.directory import CARD_FILE, DEMO_NOTE, load_run, read_meta, update_meta, write_model_card


def test_model_card_of_a_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert not (run / "adapter" / "README.md").exists()  # PEFT's empty template is not kept
    path = write_model_card(run, notes=["A note from the trainer."])
    card = path.read_text(encoding="utf-8")
    meta = read_meta(run)
    report = json.loads((run / "dev_report.json").read_text(encoding="utf-8"))
    assert path == run / CARD_FILE
    for label in meta["labels"]:
        row = report["per_type"].get(label)
        if row:
            assert f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} |" in card
    assert f"medner {__version__}" in card and "A note from the trainer." in card and DEMO_NOTE not in card
    assert "## Base encoder" in card and "bert, 2 layers x 64" in card
    assert "training size: records 48" in card and "## How to load it" in card and f'medner.load("{run}")' in card
    assert meta["metrics"]["dev"]["micro"]["f1"] == report["micro"]["f1"]
    assert set(meta["metrics"]["dev"]["per_type"]) == set(report["per_type"])
    assert meta["medner_version"] == __version__
    load_run(run)  # the card is not a model file: checksums still verify
    write_model_card(run)  # and can be written again
    assert "A note from the trainer." not in (run / CARD_FILE).read_text(encoding="utf-8")


def test_demo_note_for_the_synthetic_sample(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["data"]["train"] = ["data/sample/train.jsonl"]
    (run / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (run / "dev_report.json").unlink()
    card = write_model_card(run).read_text(encoding="utf-8")
    assert DEMO_NOTE in card and "No dev set was scored." in card
    assert read_meta(run).get("metrics") == read_meta(tiny_run).get("metrics")  # a rewrite keeps recorded metrics


def test_a_run_records_its_library_versions_and_loading_under_others_says_so(tiny_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    software = read_meta(run)["software"]
    assert software["python"] == platform.python_version() and software["medner"] == __version__
    for name in ("torch", "transformers", "tokenizers", "peft", "safetensors"):
        assert software[name] == importlib.metadata.version(name)
    card = write_model_card(run).read_text(encoding="utf-8")
    assert f"(Python {platform.python_version()}, torch {software['torch']}, transformers" in card
    with caplog.at_level(logging.INFO, logger="medner.run.directory"):
        load_run(run)
    assert "other library versions" not in caplog.text
    update_meta(run, software={**software, "transformers": "4.0.0", "tokenizers": "0.1"})  # not a model file
    with caplog.at_level(logging.INFO, logger="medner.run.directory"):
        load_run(run)
    assert f"transformers 4.0.0 -> {software['transformers']}, tokenizers 0.1 -> {software['tokenizers']}" in caplog.text
