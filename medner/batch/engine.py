"""What an engine is, and what every engine shares: shards, the model a worker loads, the prediction call.

An engine has ``run(shards: Iterator[Shard]) -> Iterator[(shard, predictions, seconds)]``, yielding in any
order, where ``predictions[i]`` is the span list of the i-th ok item of the shard, or a string naming the
exception when the model failed on that record. Engines: :mod:`medner.batch.local_engine` (this process or a
process pool), :mod:`medner.batch.ray_engine` (Ray Data). Each worker builds its Annotator from a picklable
:class:`ModelSpec` and predicts through :func:`predict_texts`, so every engine gives the same bytes.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import torch

from medner.annotate import Annotator
from medner.batch.items import Item
from medner.errors import ModelError
from medner.run.directory import load_annotator

log = logging.getLogger(__name__)


@dataclass
class Shard:
    """Shard ``index``: consecutive items of the stream; ``texts`` are the ok items' texts, in order."""

    index: int
    items: list[Item]

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items if item.ok]

    def keys_digest(self) -> str:
        return keys_digest(self.items)


def keys_digest(items: Sequence[Item]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(item.key.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()[:16]


class Engine(Protocol):
    name: str

    def run(self, shards: Iterator[Shard]) -> Iterator[tuple[Shard, list, float]]: ...


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to build its Annotator (picklable: sent to worker processes and Ray actors).

    ``precision``: ``auto`` keeps the run's setting (fp32 on CPU, bf16/fp16 autocast on a capable GPU);
    ``fp32``; ``bf16`` = bf16 autocast for the encoder (fast on CPUs with AMX/AVX512-BF16; CRF stays fp32).
    ``fingerprint``: the model fingerprint the runner checked before it started; a worker that finds another
    (the run directory was replaced meanwhile) refuses to predict, so no output mixes two models.
    """

    model: str
    device: str = "auto"
    batch_size: int = 8
    lexicon: str | None = None
    precision: str = "auto"
    threads: int | None = None
    fingerprint: str | None = None

    def load(self) -> Annotator:
        """Set the torch threads, then load (and verify) the Annotator with the requested precision and linker."""
        if self.threads:
            torch.set_num_threads(self.threads)
        annotator = load_annotator(self.model, device=self.device, batch_size=self.batch_size,
                                   precision=self.precision, icd_lexicon=self.lexicon)
        if self.fingerprint is not None and annotator.fingerprint != self.fingerprint:
            raise ModelError(f"the model changed after the run started (fingerprint {annotator.fingerprint}, "
                             f"{self.fingerprint} when checked)", where=self.model, field="model",
                             fix="do not replace a run directory while `medner annotate` uses it; rerun the "
                                 "command (a resumed output refuses another model)")
        return annotator


def predict_texts(annotator, texts: Sequence[str], batch_records: int) -> list:
    """Span lists for ``texts``, ``batch_records`` texts per ``Annotator.predict`` call.

    A call that raises is retried text by text; a text the model still fails on gets the exception's type
    name instead of a span list (it becomes a ``model_error`` failure). Spans are checked against the text.
    """
    out: list = []
    for lo in range(0, len(texts), batch_records):
        chunk = list(texts[lo:lo + batch_records])
        try:
            out.extend(annotator.predict(chunk))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the run
            log.warning("prediction failed on records %d-%d (%s); retrying one by one", lo, lo + len(chunk) - 1,
                        type(exc).__name__)
            for text in chunk:
                try:
                    out.append(annotator.predict([text])[0])
                except MemoryError:
                    raise
                except Exception as one:  # noqa: BLE001
                    out.append(f"{type(one).__name__}")
    for text, spans in zip(texts, out):
        if isinstance(spans, list):
            for span in spans:
                assert 0 <= span.start < span.end <= len(text), (span.start, span.end, len(text))
    return out


def torch_threads(workers: int) -> int:
    """Threads per worker: ``max(1, cores // workers)`` (cores = CPUs this process may run on)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)
