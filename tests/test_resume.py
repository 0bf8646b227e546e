"""`finetune --resume` after kills at awkward moments and with damaged checkpoints: the run directory ends as an
unbroken run's (metrics, dev report, saved model); a damaged latest checkpoint falls back to the previous one with
a warning naming the file; nothing usable is one line naming the file and the fix."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

import medner.training.finetune as ft
from medner.cli import main
from medner.config import load_config
from medner.errors import ConfigError
from medner.training import checkpoint as ckpt
from medner.training.finetune import Dist
from medner.training.supervision import run_phases
from interrupt import killed_after_checkpoint
from tiny_model import write_config

EPOCHS = 2  # 13 optimiser steps an epoch; checkpoints every 4 steps and at each epoch end


def outputs(run: Path) -> dict:
    """What a user reads from a run directory, without wall-clock times."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in metrics:
        row.pop("elapsed_s")
    meta = json.loads((run / "medner_model.json").read_text())
    return {"metrics": metrics, "dev_report": json.loads((run / "dev_report.json").read_text()),
            "dev_report.md": (run / "dev_report.md").read_text(encoding="utf-8"),
            "best_epoch": meta["best_epoch"],  # every model file (config.yaml names this run's paths)
            "model_files": {k: v for k, v in meta["files"].items() if k != "config.yaml"},
            "training.png": (run / "training.png").is_file()}


def final_weights(run: Path) -> dict:
    return load_file(str(ckpt.checkpoints(run / "checkpoint")[0] / "trainable.safetensors"))


@pytest.fixture(scope="module")
def clean(tiny_corpus, tmp_path_factory, one_torch_thread):
    """An unbroken run to compare with. Every run of this module trains on one torch thread, as the killed
    subprocess does (OMP_NUM_THREADS=1): weights equal to the bit need the same reduction order."""
    root = tmp_path_factory.mktemp("clean")
    run = ft.finetune(load_config(write_config(root, tiny_corpus, epochs=EPOCHS)), progress=False)
    return outputs(run), final_weights(run)


def assert_like_clean(run: Path, clean) -> None:
    expected, weights = clean
    got = outputs(run)
    assert [m["epoch"] for m in got["metrics"]] == list(range(1, EPOCHS + 1))
    assert got == expected
    assert final_weights(run).keys() == weights.keys()
    for key, value in final_weights(run).items():
        assert (value == weights[key]).all(), key


def kill_on_call(monkeypatch, name: str, call: int, *, after: bool = False) -> None:
    """Make ``finetune.<name>`` raise KeyboardInterrupt on its ``call``-th call (before running it, or after)."""
    real = getattr(ft, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call and not after:
            raise KeyboardInterrupt(f"killed in {name}")
        result = real(*args, **kwargs)
        if len(calls) == call:
            raise KeyboardInterrupt(f"killed after {name}")
        return result

    monkeypatch.setattr(ft, name, wrapper)


@pytest.mark.parametrize("name, call, after", [
    ("plot_metrics", 1, False),  # right after epoch 1 is logged in metrics.jsonl (the reported duplicate)
    ("evaluate_dev", 2, False),  # during epoch 2's dev evaluation
    ("save_run", 1, False),  # the checkpoint of epoch 1 is written, its best model not yet
    ("save_run", 2, True),  # the best model of epoch 2 written, metrics not yet
    ("write_report", 1, True),  # the dev report of epoch 1 written, its model not yet
    ("write_model_card", 1, False),  # the last checkpoint and model written, the model card not yet
])
def test_a_kill_then_resume_leaves_what_an_unbroken_run_leaves(tiny_corpus, tmp_path, monkeypatch, clean,
                                                               name, call, after):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=EPOCHS))
    kill_on_call(monkeypatch, name, call, after=after)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(config, progress=False)
    monkeypatch.undo()
    ft.finetune(config, resume=True, progress=False)
    assert_like_clean(Path(config.output_dir), clean)
    monkeypatch.setattr(ft, "prepare_inputs", lambda *a, **k: pytest.fail("a finished run prepared its data"))
    ft.finetune(config, resume=True, progress=False)  # resuming a finished run changes nothing and reads no data
    assert_like_clean(Path(config.output_dir), clean)


@pytest.mark.parametrize("phased", [False, True])
def test_resuming_a_finished_run_whose_start_was_moved_away_changes_nothing(tiny_run, tiny_corpus, tmp_path, phased):
    """A recipe rerun with `--resume` passes over its finished steps even when a step's `init_from` run was
    deleted since (to free disk); a new run from the missing start is still refused before anything is written."""
    start = tmp_path / "start"
    shutil.copytree(tiny_run, start)
    overrides = [f"init_from={start}"] + (["supervision.gold_fraction=0.5"] if phased else [])
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), overrides)
    run = run_phases(config, progress=False)
    before = outputs(run)
    shutil.rmtree(start)
    assert run_phases(config, resume=True, progress=False) == run
    assert outputs(run) == before
    fresh = load_config(write_config(tmp_path / "fresh", tiny_corpus, epochs=1), overrides)
    with pytest.raises(ConfigError, match="init_from"):
        run_phases(fresh, resume=True, progress=False)
    assert not Path(fresh.output_dir).exists()


def test_resume_prepares_data_again_when_the_last_outputs_are_missing(tiny_corpus, tmp_path, clean):
    """A finished checkpoint alone does not make a run finished: with a row of metrics.jsonl, the model or the
    model card missing, `--resume` goes the long way and writes them; with another config it goes the long way
    too, and a model that no longer fits the checkpoint is named there."""
    config_path = write_config(tmp_path, tiny_corpus, epochs=EPOCHS)
    config = load_config(config_path)
    ft.finetune(config, progress=False)
    run, one = Path(config.output_dir), Dist()
    assert ft.is_published(run, config, one)
    first_row = (run / "metrics.jsonl").read_text().splitlines()[0] + "\n"
    damage = [lambda: (run / "README.md").unlink(),
              lambda: (run / "metrics.jsonl").write_text(first_row),
              lambda: (run / "head.safetensors").write_bytes(b"truncated")]
    for harm in damage:
        harm()
        assert not ft.is_published(run, config, one)
        ft.finetune(config, resume=True, progress=False)
        assert ft.is_published(run, config, one)
        assert_like_clean(run, clean)
    other = load_config(config_path, ["lora.r=8"])
    assert not ft.is_published(run, other, one)
    assert ft.is_published(run, other, one, ignore=["lora.r"])
    with pytest.raises(ckpt.CheckpointError, match="does not fit"):
        ft.finetune(other, resume=True, progress=False)


def test_a_finished_run_with_a_diverged_epoch_is_still_finished(tiny_corpus, tmp_path, monkeypatch):
    """NaN in a metrics row (a diverged epoch's loss) equals NaN: the run is not taken the long way for it."""
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1))
    run = ft.finetune(config, progress=False)
    state = ckpt.finished_state(run / "checkpoint")
    rows = [dict(row, train_loss=float("nan")) for row in state.metrics]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setattr(ckpt, "finished_state", lambda folder: dataclasses.replace(state, metrics=rows))
    assert ft.is_published(run, config, Dist())


def test_metrics_rows_compare_equal_with_nan():
    """A diverged epoch (NaN loss) must not make a finished run look unfinished to `--resume`."""
    nan = float("nan")
    assert ft.same_rows([{"epoch": 1, "train_loss": nan}], [{"train_loss": nan, "epoch": 1}])
    assert not ft.same_rows([{"epoch": 1, "train_loss": nan}], [{"epoch": 1, "train_loss": 0.5}])
    assert not ft.same_rows([{"epoch": 1}], [{"epoch": 1}, {"epoch": 2}])


@pytest.mark.slow
def test_a_real_sigkill_right_after_an_epoch_is_logged(tiny_corpus, tmp_path, clean):
    """The process is killed by the operating system (no cleanup of any kind) just after metrics.jsonl got epoch 1."""
    config_path = write_config(tmp_path, tiny_corpus, epochs=EPOCHS)
    script = textwrap.dedent(f"""
        import os, signal
        import medner.training.finetune as ft
        from medner.config import load_config

        real = ft.plot_metrics
        def plot_then_die(*args, **kwargs):
            real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        ft.plot_metrics = plot_then_die
        ft.finetune(load_config({str(config_path)!r}), progress=False)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(Path(ft.__file__).parents[2])])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run = tmp_path / "run"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert main(["finetune", str(config_path), "--resume", "--no-progress"]) == 0
    assert_like_clean(run, clean)


def test_resume_from_a_checkpoint_of_an_earlier_medner_keeps_its_metrics(tiny_corpus, tmp_path, monkeypatch, clean):
    """The earlier layout (files directly in checkpoint/, no hashes, no rows in the state) still resumes, and the
    rows metrics.jsonl holds up to that checkpoint are kept."""
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=EPOCHS))
    kill_on_call(monkeypatch, "evaluate_dev", 2)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(config, progress=False)
    monkeypatch.undo()
    root = tmp_path / "run" / "checkpoint"
    newest = ckpt.checkpoints(root)[0]
    payload = json.loads((newest / "trainer_state.json").read_text())
    for key in ("metrics", "best_report", "elapsed_s"):
        del payload["state"][key]
    del payload["files"], payload["serial"]
    for folder in ckpt.checkpoints(root):
        for path in folder.iterdir():
            if folder == newest:
                path.rename(root / path.name)
        if folder == newest:
            folder.rmdir()
        else:
            ckpt.remove(folder)
    (root / "trainer_state.json").write_text(json.dumps(payload))
    ft.finetune(config, resume=True, progress=False)
    assert_like_clean(tmp_path / "run", clean)


def damage(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one(tiny_corpus, tmp_path, clean, caplog):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=EPOCHS))
    with killed_after_checkpoint(5) as saves:  # steps 4, 8, 12, 13 (end of epoch 1), 16
        ft.finetune(config, progress=False)
    newest, previous = ckpt.checkpoints(tmp_path / "run" / "checkpoint")
    assert newest == saves[4] and previous == saves[3]
    damage(newest / "optimizer.safetensors")
    with caplog.at_level(logging.WARNING):
        ft.finetune(config, resume=True, progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest / "optimizer.safetensors") in w and "previous checkpoint" in w
               and "step 13, end of epoch 1" in w for w in warned), warned
    assert_like_clean(tmp_path / "run", clean)


def test_no_intact_checkpoint_is_a_one_line_error_naming_the_file(tiny_corpus, tmp_path, capsys):
    config_path = write_config(tmp_path, tiny_corpus, epochs=EPOCHS)
    config = load_config(config_path)
    with killed_after_checkpoint(5) as saves:  # in epoch 2, after the end of epoch 1
        ft.finetune(config, progress=False)
    damage(saves[4] / "trainer_state.json")
    damage(saves[3] / "trainable.safetensors")
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["finetune", str(config_path), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error: ") and "\n" not in err and "Traceback" not in err
    assert str(saves[4] / "trainer_state.json") in err and "trainable.safetensors" in err
    assert "Fix:" in err and "without --resume" in err
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before  # nothing was overwritten


def test_resume_under_another_config_is_refused_naming_the_keys(tiny_corpus, tmp_path):
    """A checkpoint continued on other settings would be a run its config.yaml misdescribes: refused, naming what
    differs; where it runs (device) may change. A finished run (a recipe's shared phase) is taken as it is."""
    path = write_config(tmp_path, tiny_corpus, epochs=EPOCHS)
    with killed_after_checkpoint(5):  # steps 4, 8, 12, 13 (end of epoch 1: config.yaml written), 16
        ft.finetune(load_config(path), progress=False)
    run = tmp_path / "run"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    other = load_config(path, ["train.lr_head=0.5", "train.warmup_ratio=0.2"])
    with pytest.raises(ConfigError, match=r"--resume with another config: train.lr_head, train.warmup_ratio differ"):
        run_phases(other, resume=True, progress=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    moved = tmp_path / "bigger_disk" / "run"  # a killed run moved, then resumed where it now is
    moved.parent.mkdir()
    shutil.copytree(run, moved)
    ft.check_resumed_config(moved, load_config(path, [f"output_dir={moved}"]))  # no refusal
    saved = {"output_dir": str(run), "init_from": f"{run}/phases/weak", "encoder": {"name": f"{run}x/enc"}}
    assert ft._moved(saved, str(run), str(moved)) == {  # a phase's start moves with the folder; a sibling does not
        "output_dir": str(moved), "init_from": f"{moved}/phases/weak", "encoder": {"name": f"{run}x/enc"}}
    finished = run_phases(load_config(path, ["device=cpu"]), resume=True, progress=False)
    run_phases(load_config(path, ["train.lr_head=0.5"]), resume=True, progress=False)  # finished: taken as is
    assert (finished / "medner_model.json").is_file()
