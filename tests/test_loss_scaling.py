"""fp16 loss scaling (`medner.model.device.grad_scaler`) and what `precision: auto` picks on a GPU. Scaling is on
for fp16 only; with it, training takes the steps it takes without it (gradients unscaled before clipping), and a
resumed run goes on with the scale it had reached."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import medner.training.finetune as ft
from medner.config import load_config
from medner.model.device import grad_scaler
from medner.training import checkpoint as ckpt
from interrupt import killed_after_checkpoint
from tiny_model import write_config


def test_loss_scaling_is_on_for_fp16_only():
    cpu = torch.device("cpu")  # CI has no GPU: torch's CPU scaler stands in for the CUDA one
    assert grad_scaler(cpu, torch.float16).is_enabled()
    assert not grad_scaler(cpu, torch.bfloat16).is_enabled() and not grad_scaler(cpu, None).is_enabled()


def scaled(monkeypatch) -> None:
    """Train with loss scaling on (fp32 arithmetic): a scale of 2**16 that doubles after every step."""
    def scaler(device, dtype, state=None):
        made = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=1)
        if state:
            made.load_state_dict(state)
        return made

    monkeypatch.setattr(ft, "grad_scaler", scaler)


def last_checkpoint(run: Path) -> tuple[dict, dict]:
    folder = ckpt.checkpoints(run / "checkpoint")[0]
    state = json.loads((folder / "trainer_state.json").read_text())["state"]
    return state, load_file(str(folder / "trainable.safetensors"))


def test_scaled_training_takes_the_unscaled_steps_and_resumes_with_its_scale(tiny_corpus, tmp_path, monkeypatch):
    plain = ft.finetune(load_config(write_config(tmp_path / "plain", tiny_corpus, epochs=2)), progress=False)
    scaled(monkeypatch)
    whole = ft.finetune(load_config(write_config(tmp_path / "whole", tiny_corpus, epochs=2)), progress=False)
    plain_state, plain_weights = last_checkpoint(plain)
    state, weights = last_checkpoint(whole)
    assert plain_state["grad_scaler"] == {}
    assert state["grad_scaler"]["scale"] == 2.0 ** (16 + state["global_step"])  # no step had inf/NaN gradients
    for key in plain_weights:  # the scale is a power of two: scaling and unscaling are exact
        torch.testing.assert_close(weights[key], plain_weights[key], rtol=0, atol=1e-6)

    killed = load_config(write_config(tmp_path / "killed", tiny_corpus, epochs=2))
    with killed_after_checkpoint(3):  # mid-epoch 2
        ft.finetune(killed, progress=False)
    ft.finetune(killed, resume=True, progress=False)
    resumed_state, resumed = last_checkpoint(Path(killed.output_dir))
    assert resumed_state["grad_scaler"] == state["grad_scaler"]  # not restarted at 2**16
    for key in weights:
        torch.testing.assert_close(resumed[key], weights[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_precision_takes_bf16_only_where_the_gpu_has_bf16_units(monkeypatch, capability, expected):
    """A T4 (7.5) or V100 (7.0) emulates bf16 (torch.cuda.is_bf16_supported() says yes): fp16 with loss scaling
    there; an A100 (8.0) or H100 (9.0) computes bf16 natively."""
    from medner.model.device import resolve_dtype

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_dtype("auto", torch.device("cuda")) is expected
    assert resolve_dtype("auto", torch.device("cpu")) is None and resolve_dtype("bf16", torch.device("cpu"))


def test_a_scaler_starts_from_the_scale_a_checkpoint_recorded():
    cpu = torch.device("cpu")
    reached = {**grad_scaler(cpu, torch.float16).state_dict(), "scale": 8.0}
    assert grad_scaler(cpu, torch.float16, reached).get_scale() == 8.0
    assert grad_scaler(cpu, torch.float16, {}).get_scale() == 2.0 ** 16  # nothing recorded: a fresh scale
