"""A simulated kill for resume tests: the n-th checkpoint save completes, then the process "dies"."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from medner.training import checkpoint as ckpt


@contextmanager
def killed_after_checkpoint(n: int) -> Iterator[list[Path]]:
    """Inside the block, the ``n``-th checkpoint save (finetune, distill, pretrain) is written, then raises
    KeyboardInterrupt; the block must end that way. Yields the folders saved so far, in order."""
    real, saves = ckpt.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        saves.append(real(*args, **kwargs))
        if len(saves) == n:
            raise KeyboardInterrupt("simulated kill")

    ckpt.save_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            yield saves
    finally:
        ckpt.save_checkpoint = real
