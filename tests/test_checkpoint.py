"""Checkpoints: verified on load (sha256 + size of every file, recorded in trainer_state.json, written last), the
previous complete one kept, a damaged latest one skipped with a warning naming the file, nothing usable -> one
line naming the file and the fix. A tiny linear model: no training run needed."""
from __future__ import annotations

import json
import logging
import random

import pytest
import torch

from medner.training import checkpoint as ckpt
from medner.training.checkpoint import CheckpointError, TrainerState


def make(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def step(model, optimizer, scheduler) -> None:
    loss = model(torch.randn(5, 4)).pow(2).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def train_and_save(root, n_checkpoints: int = 2, keep: int = 2):
    """``n_checkpoints`` checkpoints, one per step; returns the model state after each save."""
    model, optimizer, scheduler = make()
    states = []
    for k in range(1, n_checkpoints + 1):
        step(model, optimizer, scheduler)
        state = TrainerState(epoch=k, global_step=k, metrics=[{"epoch": i} for i in range(1, k + 1)])
        ckpt.save_checkpoint(root, model, optimizer, scheduler, state, keep=keep)
        states.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return states


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_round_trip_restores_weights_optimizer_scheduler_and_random_state(tmp_path):
    model, optimizer, scheduler = make()
    step(model, optimizer, scheduler)
    random.seed(3)
    ckpt.save_checkpoint(tmp_path / "checkpoint", model, optimizer, scheduler,
                         TrainerState(epoch=1, global_step=1, best_report={"micro": {"f1": 0.5}}))
    python_next = random.random()
    step(model, optimizer, scheduler)  # draws its input from the saved torch generator state
    expected = params(model)

    fresh, opt2, sched2 = make(seed=1)
    state = ckpt.load_checkpoint(tmp_path / "checkpoint", fresh, opt2, sched2)
    assert (state.epoch, state.global_step, state.best_report) == (1, 1, {"micro": {"f1": 0.5}})
    assert random.random() == python_next
    step(fresh, opt2, sched2)
    assert_same(params(fresh), expected)  # same weights, AdamW moments, learning rate and random input
    assert sched2.last_epoch == scheduler.last_epoch


def test_the_latest_two_are_kept_and_each_file_is_recorded(tmp_path):
    root = tmp_path / "checkpoint"
    train_and_save(root, n_checkpoints=4)
    kept = ckpt.checkpoints(root)
    assert len(kept) == 2 and kept[0].name > kept[1].name  # newest first
    payload = json.loads((kept[0] / "trainer_state.json").read_text())
    assert payload["state"]["global_step"] == 4
    for name in ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors"):
        entry = payload["files"][name]
        assert entry["bytes"] == (kept[0] / name).stat().st_size and len(entry["sha256"]) == 64
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in kept)  # nothing else left behind


@pytest.mark.parametrize("name, damage", [
    ("optimizer.safetensors", "truncate"),
    ("trainable.safetensors", "flip"),
    ("rng.safetensors", "delete"),
    ("trainer_state.json", "truncate"),
    ("trainer_state.json", "delete"),
    ("trainer_state.json", "scaler"),  # an fp16 loss scale cut short: would fail in GradScaler.load_state_dict
])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_and_says_so(tmp_path, caplog, name, damage):
    root = tmp_path / "checkpoint"
    states = train_and_save(root, n_checkpoints=2)
    latest = ckpt.checkpoints(root)[0]
    path = latest / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x40
        path.write_bytes(bytes(data))
    elif damage == "scaler":
        payload = json.loads(path.read_text())
        payload["state"]["grad_scaler"] = {"scale": 65536.0}
        path.write_text(json.dumps(payload))
    else:
        path.unlink()
    model, optimizer, scheduler = make(seed=5)
    before = params(model)
    with caplog.at_level(logging.WARNING):
        state = ckpt.load_checkpoint(root, model, optimizer, scheduler)
    assert state.global_step == 1 and state.metrics == [{"epoch": 1}]
    assert_same(params(model), states[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "previous checkpoint" in warnings[0]
    assert "step 1, end of epoch 1" in warnings[0]
    assert not any(torch.equal(before[k], params(model)[k]) for k in before)


def test_nothing_usable_is_one_line_naming_the_file_and_the_fix_and_the_model_is_untouched(tmp_path):
    root = tmp_path / "checkpoint"
    train_and_save(root, n_checkpoints=2)
    newest, older = ckpt.checkpoints(root)
    (newest / "optimizer.safetensors").write_bytes(b"\0" * 10)
    (older / "trainer_state.json").write_text('{"state": {"epoch"', encoding="utf-8")
    model, optimizer, scheduler = make(seed=5)
    before = params(model)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(root, model, optimizer, scheduler)
    message = str(info.value)
    assert "\n" not in message and str(newest / "optimizer.safetensors") in message and "Fix:" in message
    assert "trainer_state.json" in message  # the older one's problem too
    assert_same(params(model), before)


def test_a_kill_while_writing_leaves_the_complete_ones(tmp_path, monkeypatch):
    root = tmp_path / "checkpoint"
    states = train_and_save(root, n_checkpoints=2)
    model, optimizer, scheduler = make()
    real = ckpt._write_tensors
    calls = []

    def die_on_second(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(tensors, path)

    monkeypatch.setattr(ckpt, "_write_tensors", die_on_second)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(root, model, optimizer, scheduler, TrainerState(global_step=3))
    monkeypatch.undo()
    fresh, opt2, sched2 = make(seed=5)
    state = ckpt.load_checkpoint(root, fresh, opt2, sched2)
    assert state.global_step == 2
    assert_same(params(fresh), states[1])
    (root / "ckpt-000000.removing").mkdir()  # an old checkpoint's removal killed half-way
    # the next save clears the leftovers and keeps two complete checkpoints
    ckpt.save_checkpoint(root, model, optimizer, scheduler, TrainerState(global_step=3))
    assert [json.loads((p / "trainer_state.json").read_text())["state"]["global_step"]
            for p in ckpt.checkpoints(root)] == [3, 2]
    assert len(list(root.iterdir())) == 2


def test_no_checkpoint_and_only_an_unfinished_one_load_as_none(tmp_path, monkeypatch):
    model, optimizer, scheduler = make()
    assert ckpt.load_checkpoint(tmp_path / "absent", model, optimizer, scheduler) is None
    monkeypatch.setattr(ckpt, "_write_tensors", lambda tensors, path: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "checkpoint", model, optimizer, scheduler, TrainerState())
    monkeypatch.undo()
    assert ckpt.exists(tmp_path / "checkpoint")
    assert ckpt.load_checkpoint(tmp_path / "checkpoint", model, optimizer, scheduler) is None


def test_a_checkpoint_of_another_model_is_a_one_line_error(tmp_path):
    root = tmp_path / "checkpoint"
    train_and_save(root, n_checkpoints=1)
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    optimizer = torch.optim.AdamW(other.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(CheckpointError, match="does not fit this model.*Fix: resume with the configuration"):
        ckpt.load_checkpoint(root, other, optimizer, scheduler)


def test_a_checkpoint_written_by_an_earlier_medner_still_loads(tmp_path):
    """The earlier layout: the four files directly in checkpoint/, no sizes or hashes."""
    root = tmp_path / "checkpoint"
    train_and_save(tmp_path / "new", n_checkpoints=1)
    (source,) = ckpt.checkpoints(tmp_path / "new")
    root.mkdir()
    for path in source.iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    payload = json.loads((root / "trainer_state.json").read_text())
    del payload["files"], payload["serial"]
    (root / "trainer_state.json").write_text(json.dumps(payload))
    model, optimizer, scheduler = make(seed=5)
    assert ckpt.load_checkpoint(root, model, optimizer, scheduler).global_step == 1
    (root / "optimizer.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        ckpt.load_checkpoint(root, model, optimizer, scheduler)
    # resumed with this medner: new checkpoints beside it, then the old files go (never the folder)
    for k in (2, 3):
        ckpt.save_checkpoint(root, model, optimizer, scheduler, TrainerState(global_step=k))
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-000001", "ckpt-000002"]
    assert ckpt.load_checkpoint(root, model, optimizer, scheduler).global_step == 3


def test_remove_clears_every_checkpoint(tmp_path):
    root = tmp_path / "checkpoint"
    train_and_save(root, n_checkpoints=2)
    ckpt.remove(root)
    assert not root.exists() and not ckpt.exists(root)
