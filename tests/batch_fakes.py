"""Stand-ins for the batch annotator's tests: an engine that predicts without a model, and a crash."""
from __future__ import annotations

from typing import Callable

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
