"""``--engine ray``: shards annotated by a Ray Data actor pool; same output bytes as the local engine.

The driver reads the inputs with the same readers, cuts the same shards and skips the same finished ones
(:mod:`medner.batch.runner`). Pending shards go to Ray in waves of ``ray_wave_shards``:
``ray.data.from_items`` (one row per shard: index + JSON-encoded texts) ->
``map_batches(ShardPredictor, batch_size=1, compute=ActorPoolStrategy(size=workers))`` (a callable class:
each actor loads the model once from a :class:`medner.batch.engine.ModelSpec`, with ``threads`` torch threads
and ``num_cpus=threads``) -> rows back to the driver, which writes every shard through the same atomic
writer and ledger. A shard is predicted by the same ``predict_texts`` call with the same ``batch_records``
chunks as locally, so output is byte-identical to the local engine (at equal torch thread counts). Each wave
starts a new actor pool (one model load per actor per wave); the wave bounds the texts held in the object store.

Ray is an optional extra: ``pip install 'medner[ray]'``. Without ``ray_address`` a local instance is started
(and shut down at the end); with it, the driver joins that cluster, whose nodes need medner installed and
the model directory (and inputs are read by the driver only) at the same path.
"""
from __future__ import annotations

import json
import logging
import time
from itertools import islice
from typing import Iterator

import numpy as np

from medner.batch.engine import predict_texts
from medner.errors import ConfigError
from medner.types import Span

log = logging.getLogger(__name__)

DEFAULT_WAVE_SHARDS = 64


def _encode(predictions: list) -> str:
    """Span lists (or model-error strings) as JSON; floats round-trip exactly."""
    out = []
    for pred in predictions:
        if isinstance(pred, str):
            out.append(pred)
        else:
            out.append([[s.start, s.end, s.label, s.code, s.score, s.name, s.match, s.link_score] for s in pred])
    return json.dumps(out, ensure_ascii=False)


def _decode(payload: str) -> list:
    out = []
    for pred in json.loads(payload):
        if isinstance(pred, str):
            out.append(pred)
        else:
            out.append([Span(start, end, label, code=code, score=score, name=name, match=match, link_score=link)
                        for start, end, label, code, score, name, match, link in pred])
    return out


class ShardPredictor:
    """Ray Data callable class: holds one Annotator; a batch of shards -> their predictions."""

    def __init__(self, spec, batch_records: int) -> None:
        self.batch_records = batch_records
        self.annotator = spec.load()

    def __call__(self, batch: dict) -> dict:
        payloads, seconds = [], []
        for texts_json in batch["texts"]:
            start = time.perf_counter()
            predictions = predict_texts(self.annotator, json.loads(texts_json), self.batch_records)
            seconds.append(time.perf_counter() - start)
            payloads.append(_encode(predictions))
        return {"shard": np.asarray(batch["shard"]), "predictions": np.asarray(payloads, dtype=object),
                "seconds": np.asarray(seconds, dtype=float)}


class RayEngine:
    """Engine interface of :mod:`medner.batch.runner` on Ray Data."""

    name = "ray"

    def __init__(self, options, wave_shards: int | None = None) -> None:
        self.options = options
        self.wave_shards = wave_shards or getattr(options, "ray_wave_shards", None) or DEFAULT_WAVE_SHARDS

    def run(self, shards) -> Iterator[tuple]:
        try:
            import ray  # optional dependency: medner[ray]
            import ray.data
        except ModuleNotFoundError:
            raise ConfigError("`--engine ray` needs Ray Data, which is not installed", field="engine",
                              fix="pip install 'medner[ray]' (or 'ray[data]'), or use --engine local") from None
        opts = self.options
        started_here = False
        try:
            for wave in iter(lambda: list(islice(shards, self.wave_shards)), []):
                if not ray.is_initialized():
                    ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                    started_here = True
                ctx = ray.data.DataContext.get_current()
                ctx.enable_progress_bars = bool(opts.progress)
                yield from self._wave(ray, wave)
        finally:
            if started_here:
                ray.shutdown()

    def _wave(self, ray, wave: list) -> Iterator[tuple]:
        opts = self.options
        by_index = {shard.index: shard for shard in wave}
        rows = [{"shard": shard.index, "texts": json.dumps(shard.texts, ensure_ascii=False)} for shard in wave]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(
            ShardPredictor, batch_size=1, batch_format="numpy", num_cpus=opts.threads,
            compute=ray.data.ActorPoolStrategy(size=opts.workers),
            fn_constructor_kwargs={"spec": opts.model_spec(), "batch_records": opts.batch_records})
        for row in ds.iter_rows():
            yield by_index[int(row["shard"])], _decode(row["predictions"]), float(row["seconds"])
