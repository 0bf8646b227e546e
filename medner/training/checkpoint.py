"""Resumable training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder ``<root>/ckpt-<serial>/`` (``root`` is a run's ``checkpoint/``) holds::

    trainable.safetensors   every trainable parameter (LoRA or full encoder, head, CRF)
    optimizer.safetensors   AdamW state tensors, keyed "<param index>.<name>"
    rng.safetensors         torch CPU (and CUDA) generator states
    trainer_state.json      written last: epoch, step, best dev F1, metrics so far, fp16 loss scale,
                            optimiser hyper-parameters, scheduler, Python random state, and the sha256 and
                            size of each file above

A save writes the new folder under a temporary name, renames it into place, then removes all but the newest
``keep`` (2): the previous complete checkpoint is always on disk. Loading verifies every file against
``trainer_state.json`` before touching the model. When the newest checkpoint is damaged (truncated, changed,
missing file), the newest intact one is used and a WARNING names the broken file; when none is intact,
:class:`CheckpointError` names it and the fix. A checkpoint of an earlier medner (the four files directly in
``root``, no hashes) still loads.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from medner.errors import MednerError
from medner.files import atomic_write_bytes, atomic_write_text, sync_folder

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}  # fp16 loss scale
TENSOR_FILES = ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors")
_NAME = re.compile(r"^ckpt-(\d{6,})$")
_WRITING = ".writing"
_REMOVING = ".removing"


class CheckpointError(MednerError):
    """No intact checkpoint to resume from, or one that does not fit the model being trained."""


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
    metrics: list = field(default_factory=list)  # the rows of metrics.jsonl up to this checkpoint
    best_report: dict | None = None  # the dev scores of the best epoch (dev_report.json)
    elapsed_s: float = 0.0  # training time before this checkpoint, across resumes
    grad_scaler: dict = field(default_factory=dict)  # fp16 loss scale and its growth tracker ({} otherwise)


class _Damaged(Exception):
    """A checkpoint file fails its check; ``path`` is the file, ``str()`` what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(problem)


# --------------------------------------------------------------------------------------------- saving

def _write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Write ``tensors`` as safetensors to ``path``; returns its ``{"sha256", "bytes"}``."""
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def save_checkpoint(root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    state: TrainerState, *, keep: int = 2) -> Path:
    """Write a new checkpoint under ``root`` and keep the newest ``keep`` (at least 2); returns its folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in [*root.glob(f"*{_WRITING}"), *root.glob(f"*{_REMOVING}")]:  # a save or a removal killed
        shutil.rmtree(leftover, ignore_errors=True)
    serial = max((_serial(p) for p in checkpoints(root)), default=0) + 1
    final = root / f"ckpt-{serial:06d}"
    work = root / (final.name + _WRITING)
    work.mkdir()
    files = {"trainable.safetensors": _write_tensors({n: p for n, p in model.named_parameters() if p.requires_grad},
                                                     work / "trainable.safetensors")}
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    files["optimizer.safetensors"] = _write_tensors(tensors or {"_empty": torch.zeros(0)},
                                                    work / "optimizer.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda.{i}"] = s
    files["rng.safetensors"] = _write_tensors(rng, work / "rng.safetensors")
    payload = {"serial": serial, "state": asdict(state), "param_groups": opt["param_groups"],
               "optimizer_scalars": scalars, "scheduler": _jsonable(scheduler.state_dict()),
               "python_random": _jsonable(random.getstate()), "files": files}
    atomic_write_text(work / STATE_FILE, json.dumps(payload))  # last: the checkpoint is complete
    os.replace(work, final)
    sync_folder(root)
    for old in checkpoints(root)[max(keep, 2):]:
        _remove_folder(old, root)
    return final


def _remove_folder(path: Path, root: Path) -> None:
    """Rename out of the way first, so that a kill mid-removal never leaves a half checkpoint under its name.
    The checkpoint of an earlier medner (files directly in ``root``) loses its files, state file first."""
    if path == root:
        for name in (STATE_FILE, *TENSOR_FILES):
            (root / name).unlink(missing_ok=True)
        return
    hidden = path.with_name(path.name + _REMOVING)
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


# -------------------------------------------------------------------------------------------- finding

def _serial(path: Path) -> int:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else 0


def checkpoints(root: Path) -> list[Path]:
    """The checkpoint folders under ``root``, newest first (a checkpoint of an earlier medner, the files
    directly in ``root``, comes last). Unfinished saves are not listed."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = sorted((p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)), key=_serial, reverse=True)
    if any((root / name).exists() for name in (STATE_FILE, *TENSOR_FILES)):
        found.append(root)
    return found


def exists(root: Path) -> bool:
    """Whether ``root`` holds anything of a checkpoint, complete or not."""
    root = Path(root)
    return root.is_dir() and any(root.iterdir())


def remove(root: Path) -> None:
    """Remove every checkpoint under ``root`` and ``root`` itself."""
    shutil.rmtree(root, ignore_errors=True)


# -------------------------------------------------------------------------------------------- loading

def _read_payload(folder: Path) -> dict:
    path = folder / STATE_FILE
    if not path.is_file():
        raise _Damaged(path, "missing")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Damaged(path, f"unreadable ({type(exc).__name__}: truncated or changed)") from None
    missing = [k for k in ("state", "param_groups", "optimizer_scalars", "scheduler", "python_random")
               if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise _Damaged(path, f"lacks `{missing[0]}`")
    return payload


def _read_tensors(folder: Path, name: str, expected: dict | None) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.is_file():
        raise _Damaged(path, "missing")
    data = path.read_bytes()
    if expected is not None:
        if len(data) != expected.get("bytes"):
            raise _Damaged(path, f"has {len(data)} bytes, {STATE_FILE} recorded {expected.get('bytes')}")
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise _Damaged(path, f"its sha256 differs from the one {STATE_FILE} recorded (changed after writing)")
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for malformed data
        raise _Damaged(path, f"unreadable as safetensors ({type(exc).__name__})") from None


def _read(folder: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """The payload and every tensor file of ``folder``, all verified; raises :class:`_Damaged`."""
    payload = _read_payload(folder)
    files = payload.get("files")  # absent in checkpoints of an earlier medner
    tensors = {name: _read_tensors(folder, name, files.get(name, {}) if isinstance(files, dict) else None)
               for name in TENSOR_FILES}
    try:
        state = payload["state"]
        _state(payload)
        version, internal, gauss = payload["python_random"]
    except (TypeError, ValueError, AttributeError) as exc:
        raise _Damaged(folder / STATE_FILE, f"malformed ({type(exc).__name__})") from None
    scaler = state.get("grad_scaler", {})
    if not isinstance(scaler, dict) or (scaler and not SCALER_KEYS <= scaler.keys()):
        raise _Damaged(folder / STATE_FILE, "malformed (grad_scaler)")
    return payload, tensors


def _state(payload: dict) -> TrainerState:
    """The :class:`TrainerState` of a checkpoint's payload (fields of an earlier or later medner left out)."""
    return TrainerState(**{k: v for k, v in payload["state"].items() if k in {f.name for f in fields(TrainerState)}})


def _describe(payload: dict) -> str:
    state = payload["state"]
    epoch, step = state.get("epoch", 0), state.get("global_step", 0)
    if state.get("batch_in_epoch", 0):
        return f"step {step}, in epoch {epoch + 1}"
    return f"step {step}, end of epoch {epoch}" if epoch else f"step {step}"


def finished_state(root: Path) -> TrainerState | None:
    """The state of the newest checkpoint under ``root`` when it records a finished run, else None (also when
    it is damaged: :func:`load_checkpoint` decides then). Reads its JSON only, not the tensors."""
    for folder in checkpoints(root):
        try:
            state = _state(_read_payload(folder))
        except (_Damaged, TypeError, AttributeError):
            return None
        return state if state.finished else None
    return None


def load_checkpoint(root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler) -> TrainerState | None:
    """Restore the newest intact checkpoint under ``root`` into ``model``, ``optimizer``, ``scheduler`` and the
    random generators; returns its state, or None when ``root`` holds no complete checkpoint.

    A damaged newer checkpoint is skipped with a WARNING naming the broken file. Raises
    :class:`CheckpointError` when every checkpoint is damaged (nothing is changed then) or the checkpoint does
    not fit ``model``.
    """
    root = Path(root)
    problems: list[_Damaged] = []
    for folder in checkpoints(root):
        try:
            payload, tensors = _read(folder)
        except _Damaged as exc:
            problems.append(exc)
            continue
        if problems:
            first = problems[0]
            log.warning("%s: damaged checkpoint file (%s); resuming from the previous checkpoint %s (%s): the "
                        "steps after it are trained again", first.path, first, folder, _describe(payload))
        _restore(folder, payload, tensors, model, optimizer, scheduler)
        return _state(payload)
    if problems:
        first = problems[0]
        others = "".join(f"; {p.path}: {p}" for p in problems[1:])
        raise CheckpointError(f"damaged checkpoint file ({first}) and no intact earlier checkpoint{others}",
                              where=str(first.path),
                              fix="restore the run's checkpoint folder from a backup, or train again without "
                                  "--resume (that starts the run over)")
    return None


def _restore(folder: Path, payload: dict, tensors: dict[str, dict[str, torch.Tensor]], model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scheduler) -> None:
    params = dict(model.named_parameters())
    trainable = tensors["trainable.safetensors"]
    unknown = [n for n in trainable if n not in params]
    wrong = [n for n in trainable if n in params and params[n].shape != trainable[n].shape]
    absent = [n for n, p in params.items() if p.requires_grad and n not in trainable]
    if unknown or wrong or absent:
        example = (unknown or wrong or absent)[0]
        raise CheckpointError(f"the checkpoint does not fit this model ({len(unknown)} unknown, {len(wrong)} "
                              f"differently shaped, {len(absent)} missing parameters, e.g. `{example}`)",
                              where=str(folder), fix="resume with the configuration the run was started with")
    opt_tensors = dict(tensors["optimizer.safetensors"])
    opt_tensors.pop("_empty", None)
    opt_state: dict[int, dict] = {}
    for key, value in list(opt_tensors.items()) + list(payload["optimizer_scalars"].items()):
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": payload["param_groups"]})
        scheduler.load_state_dict(payload["scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint's optimiser state does not fit this model ({exc})",
                              where=str(folder), fix="resume with the configuration the run was started with") from None
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value)
    rng = tensors["rng.safetensors"]
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = payload["python_random"]
    random.setstate((version, tuple(internal), gauss))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if torch.is_tensor(value):
        return value.tolist()
    return value
