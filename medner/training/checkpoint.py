"""Resumable training checkpoints without pickle: tensors in safetensors, everything else in JSON.

    checkpoint/trainable.safetensors   every trainable parameter (LoRA or full encoder, head, CRF)
    checkpoint/optimizer.safetensors   AdamW state tensors, keyed "<param index>.<name>"
    checkpoint/rng.safetensors         torch CPU (and CUDA) generator states
    checkpoint/trainer_state.json      epoch, step, best dev F1, optimiser hyper-parameters, scheduler
Each file is written to a temporary name and renamed, trainer_state.json last, so a kill leaves the
previous complete checkpoint readable.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from medner.files import atomic_write_bytes, atomic_write_text


@dataclass
class TrainerState:
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    global_step: int = 0
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    finished: bool = False


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    state: TrainerState) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors({n: p for n, p in model.named_parameters() if p.requires_grad},
                         directory / "trainable.safetensors")
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    _atomic_save_tensors(tensors or {"_empty": torch.zeros(0)}, directory / "optimizer.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda.{i}"] = s
    _atomic_save_tensors(rng, directory / "rng.safetensors")
    payload = {"state": asdict(state), "param_groups": opt["param_groups"], "optimizer_scalars": scalars,
               "scheduler": _jsonable(scheduler.state_dict()), "python_random": _jsonable(random.getstate())}
    atomic_write_text(directory / "trainer_state.json", json.dumps(payload))


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler) -> TrainerState:
    payload = json.loads((directory / "trainer_state.json").read_text(encoding="utf-8"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(directory / "trainable.safetensors")).items():
            params[name].copy_(value)
    tensors = load_file(str(directory / "optimizer.safetensors"))
    tensors.pop("_empty", None)
    opt_state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(payload["optimizer_scalars"].items()):
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": payload["param_groups"]})
    scheduler.load_state_dict(payload["scheduler"])
    rng = load_file(str(directory / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = payload["python_random"]
    random.setstate((version, tuple(internal), gauss))
    return TrainerState(**payload["state"])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if torch.is_tensor(value):
        return value.tolist()
    return value
