"""Progress: a bar on a terminal, one log line every N percent elsewhere, nothing when quiet; no record text."""
from __future__ import annotations

import io
import logging
import sys

import pytest

from medner.progress import Progress, track, use_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "medner.progress"]


def test_not_a_terminal_logs_a_line_every_n_percent(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with caplog.at_level(logging.INFO, logger="medner.progress"):
        with Progress(200, "dev", unit="rec", every=25, min_seconds=0) as progress:
            for _ in range(200):
                progress.update(1)
    lines = progress_lines(caplog)
    assert lines[:4] == [line for line in lines if not line.endswith("(done)")]
    assert [line.split(",")[0] for line in lines] == ["dev: 50/200 (25%) rec", "dev: 100/200 (50%) rec",
                                                      "dev: 150/200 (75%) rec", "dev: 200/200 (100%) rec",
                                                      "dev: 200/200 (100%) rec"]
    assert lines[-1].endswith("(done)")
    assert sys.stderr.getvalue() == ""  # no bar drawn into a log


def test_short_work_logs_nothing_and_quiet_is_silent(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    with caplog.at_level(logging.INFO, logger="medner.progress"):
        assert list(track(range(50), "x")) == list(range(50))  # min_seconds not reached: no line
        for _ in track(range(50), "y", quiet=True, min_seconds=0, bar=False):
            pass
        with Progress(10, "z", bar=False, min_seconds=0) as progress:  # --no-progress: lines, not a bar
            progress.set_postfix(loss="0.5")
            progress.update(10)
    assert [line.split(",")[:2] for line in progress_lines(caplog)] == [["z: 10/10 (100%) it", " loss=0.5"],
                                                                        ["z: 10/10 (100%) it", " loss=0.5"]]


def test_a_terminal_gets_a_bar_and_no_log_lines(caplog, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert use_bar(True) and not use_bar(False) and not use_bar(True, io.StringIO())
    with caplog.at_level(logging.INFO, logger="medner.progress"):
        with Progress(4, "train", unit="step", min_seconds=0) as progress:
            assert progress.drawing
            progress.update(4)
    assert "train" in terminal.getvalue() and "4/4" in terminal.getvalue()
    assert progress_lines(caplog) == []


def test_bad_every_is_refused():
    with pytest.raises(ValueError, match="every"):
        Progress(10, "x", every=0)


def test_finetune_dev_evaluation_reports_progress(tiny_run, caplog, monkeypatch):
    """The dev evaluation inside finetune advances a `dev` bar (log lines when stderr is not a terminal)."""
    import medner
    import medner.progress as progress_module
    from medner.corpus import read_corpus
    from medner.training.finetune import evaluate_dev

    real = progress_module.Progress.__init__

    def eager(self, *args, **kwargs):  # log every step, however fast
        real(self, *args, **{**kwargs, "min_seconds": 0})

    monkeypatch.setattr(progress_module.Progress, "__init__", eager)
    annotator = medner.load(tiny_run, device="cpu")
    dev = list(read_corpus(dev_path(tiny_run)))
    with caplog.at_level(logging.INFO, logger="medner.training.finetune"):
        result = evaluate_dev(annotator.tagger, annotator, dev, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dev: ")]
    assert lines and lines[-1].startswith(f"dev: {len(dev)}/{len(dev)} (100%) rec") and lines[-1].endswith("(done)")
    assert result["records"] == len(dev)
    assert all(line.isascii() for line in lines)  # counts only, never record text


def dev_path(run) -> str:
    """The dev corpus the tiny run was trained with (its config names it)."""
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    return config["data"]["dev"][0]
