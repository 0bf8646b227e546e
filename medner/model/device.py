"""Device and precision: CPU by default, a GPU when present (`device: auto`), mixed precision there."""
from __future__ import annotations

import contextlib

import torch

from medner.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {name!r} but no CUDA GPU is visible", fix="use `device: auto` or `cpu`")
    return torch.device(name)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. ``auto``: bf16 on a GPU that supports it, else fp32."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("`precision: fp16` is not supported on CPU", fix="use fp32 or bf16 on CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for the encoder; a no-op for fp32. The CRF always runs in fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16 training: the loss is multiplied before ``backward`` so that small gradients do not
    underflow in fp16, the gradients are unscaled before clipping, and a step whose gradients hold inf/NaN is
    skipped (the scale then halves). A pass-through for fp32 and bf16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
