"""Shared pytest fixtures.

``tiny_corpus``/``tiny_run``: a tiny synthetic corpus with a tiny encoder built in code, and a LoRA + CRF
run directory trained on it once per session (about 10 s on 2 cores), for tests of everything downstream.
``shared_data``: the real corpora and lexicons in ``../shared/data`` (relative to the repository root).
Tests using it also carry ``@pytest.mark.realdata``; they skip with a reason when the folder is absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import shared_data_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when the folder is absent."""
    return shared_data_path()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A folder with ``train.jsonl`` (48 records), ``dev.jsonl`` (12) and ``encoder/`` (a 2-layer BERT)."""
    from medner.corpus import write_jsonl
    from tiny_model import build_encoder_dir, make_records

    root = tmp_path_factory.mktemp("tiny_corpus")
    train, dev = make_records(48, 1), make_records(12, 2)
    write_jsonl(train, root / "train.jsonl")
    write_jsonl(dev, root / "dev.jsonl")
    build_encoder_dir(root / "encoder", [r.text for r in train + dev], hidden=64)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_corpus) -> Path:
    """A finished run directory (6 epochs, LoRA + CRF) trained on ``tiny_corpus``; treat it as read-only."""
    from medner.config import load_config
    from medner.training.finetune import finetune
    from tiny_model import write_config

    root = tmp_path_factory.mktemp("tiny_run")
    return finetune(load_config(write_config(root, tiny_corpus, epochs=6)), progress=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Inference on one torch thread (use with ``pytest.mark.usefixtures``): on a shared 2-core machine more
    threads mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_model(tmp_path) -> Path:
    """A folder that passes for a format-1 run directory (fingerprint ``fake0001``) for engines without a model."""
    import json

    from medner.run.directory import META_FILE

    model = tmp_path / "model"
    model.mkdir()
    (model / META_FILE).write_text(json.dumps({"format_version": 1, "fingerprint": "fake0001"}))
    return model
