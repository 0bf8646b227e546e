"""FGM adversarial training (Miyato et al. 2017) on the encoder's word embeddings.

The usual implementation moves the embedding *weights* along their gradient; under LoRA those weights are
frozen and have no gradient, so this one moves the embedding *output* instead, through a forward hook on the
encoder's input embeddings: the clean pass keeps the gradient of that output, and the adversarial pass adds
``epsilon * g / ||g||`` to it, the norm taken over each window's whole ``(seq, hidden)`` block (so epsilon is the
length of one window's perturbation, not of one token's). Same perturbation, any encoder, LoRA or not.
With R-Drop the encoder runs twice per loss: the gradients of both passes' embedding outputs are summed.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


class FGM:
    """Usage, per training batch::

        with fgm.capture():
            loss = model(batch)
        loss.backward()
        fgm.attack(lambda: model(batch)).backward()   # gradients of both passes add up
    """

    def __init__(self, encoder: nn.Module, epsilon: float) -> None:
        self.embeddings = encoder.get_input_embeddings()
        self.epsilon = epsilon
        self._captured: list[torch.Tensor] = []

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Within: the word-embedding output of the next forward pass keeps its gradient for :meth:`attack`."""
        def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
            if not output.requires_grad:  # frozen embeddings (LoRA): make the output a leaf that takes a gradient
                output = output.detach().requires_grad_(True)
            else:
                output.retain_grad()
            self._captured.append(output)
            return output

        self._captured = []
        handle = self.embeddings.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def perturbation(self) -> torch.Tensor:
        """``epsilon * g / ||g||`` with ``g`` the captured gradient (summed over the captured passes);
        ``(batch, seq, hidden)``, 0 where g is 0."""
        grads = [t.grad for t in self._captured if t.grad is not None]
        if not grads:
            raise RuntimeError("FGM.attack needs a clean pass inside FGM.capture() and its backward() first")
        grad = torch.stack(grads).sum(0).detach()
        norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (grad.dim() - 1)))
        return self.epsilon * grad / norm

    def attack(self, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The loss of ``loss_fn()`` run with the word embeddings moved along the captured gradient."""
        delta = self.perturbation()
        self._captured = []
        handle = self.embeddings.register_forward_hook(lambda module, args, output: output + delta.to(output.dtype))
        try:
            return loss_fn()
        finally:
            handle.remove()
