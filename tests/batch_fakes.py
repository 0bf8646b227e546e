"""Stand-ins for the batch annotator's tests: an engine that predicts without a model, and a crash."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from medner.types import Span


class FakeEngine:
    """The engine interface with ``spans_of(text)`` in place of a model; records the shards it was given."""

    name = "fake"

    def __init__(self, spans_of: Callable[[str], list[Span]]) -> None:
        self.spans_of = spans_of
        self.calls: list[int] = []

    def run(self, shards):
        for shard in shards:
            self.calls.append(shard.index)
            yield shard, [self.spans_of(t) for t in shard.texts], 0.001


class Crash(BaseException):
    """Stands for the process dying (not an Exception, so nothing catches it)."""


@contextmanager
def crash_after_shards(monkeypatch, n: int) -> Iterator[None]:
    """Inside the block the run dies (:class:`Crash`) instead of committing its shard number ``n + 1`` to the
    ledger; the block must die so."""
    from medner.batch.ledger import Ledger

    real = Ledger.append

    def append(self, event):
        if event.get("event") == "shard" and len(self.shards) == n:
            raise Crash
        return real(self, event)

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "append", append)
        with pytest.raises(Crash):
            yield
