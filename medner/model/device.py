"""Device and precision: CPU by default, a GPU when present (`device: auto`), mixed precision there."""
from __future__ import annotations

import contextlib
import re

import torch

from medner.config import DEVICE_NAME
from medner.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` otherwise (as the
    config allows). A device that is absent or unknown is a :class:`ConfigError` naming the fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = check_device_name(name)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("`device` is 'mps' but no Apple GPU is visible", field="device", fix="use `auto` or `cpu`")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"`device` is {name!r} but no CUDA GPU is visible", field="device",
                              fix="use `device: auto` or `cpu`")
        if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
            raise ConfigError(f"`device` is {name!r} but only {torch.cuda.device_count()} CUDA GPU(s) are visible "
                              "(numbered from 0)", field="device", fix="use `cuda` or a visible `cuda:N`")
    return torch.device(name)


def check_device_name(name: str) -> re.Match:
    """Refuse a device name medner cannot use (whether that device is present is :func:`resolve_device`'s to
    say); returns the match of ``cuda:N`` (group 1: N) or of the other names."""
    match = DEVICE_NAME.fullmatch(name)
    if match is None:
        raise ConfigError(f"`device` is {name!r}: medner runs on `cpu`, a CUDA GPU (`cuda`, `cuda:N`) or `mps`",
                          field="device", fix="use `auto` (a GPU when present, else the CPU), `cpu` or `cuda:N`")
    return match


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. ``auto``: fp32 on CPU; on a GPU bf16 where it has bf16 units
    (compute capability 8 and later), else fp16 (trained with loss scaling: :func:`grad_scaler`)."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("`precision: fp16` is not supported on CPU", fix="use fp32 or bf16 on CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for the encoder; a no-op for fp32. The CRF always runs in fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA ``device`` computes in bf16 natively. ``torch.cuda.is_bf16_supported()`` also says yes
    on older GPUs (T4, V100) where bf16 is emulated, which is slower than fp16 there."""
    if torch.version.hip:
        return torch.cuda.is_bf16_supported()
    return torch.cuda.get_device_capability(device)[0] >= 8


def grad_scaler(device: torch.device, dtype: torch.dtype | None, state: dict | None = None):
    """Loss scaling for fp16 training: the loss is multiplied before ``backward`` so that small gradients do not
    underflow in fp16, the gradients are unscaled before clipping, and a step whose gradients hold inf/NaN is
    skipped (the scale then halves). A pass-through for fp32 and bf16 (bf16 has fp32's exponent range).
    ``state``: a checkpoint's ``scaler.state_dict()``, so that a resumed run goes on with the scale it reached."""
    enabled = dtype is torch.float16
    if hasattr(torch.amp, "GradScaler"):
        scaler = torch.amp.GradScaler(device.type, enabled=enabled)
    else:  # torch < 2.3: fp16 autocast is CUDA-only there
        scaler = torch.cuda.amp.GradScaler(enabled=enabled)
    if state:
        scaler.load_state_dict(state)
    return scaler
