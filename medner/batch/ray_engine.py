"""``--engine ray``: shards annotated by a Ray Data actor pool; same output bytes as the local engine.

The driver reads the inputs with the same readers, cuts the same shards and skips the same finished ones
(:mod:`medner.batch.runner`). Pending shards go to Ray in waves of ``ray_wave_shards``:
``ray.data.from_items`` (one row per shard: index + JSON-encoded texts) ->
``map_batches(ShardPredictor, batch_size=1, compute=ActorPoolStrategy(size=workers))`` (a callable class:
each actor loads the model once from a :class:`medner.batch.engine.ModelSpec`, with ``threads`` torch threads
and ``num_cpus=min(threads, CPUs of the largest node)``, so that ``--threads`` above a node's CPUs oversubscribes
like the local engine instead of waiting forever for a node that big) -> rows back to the driver, which writes
every shard through the same atomic writer and ledger. A shard is predicted by the same ``predict_texts`` call
with the same ``batch_records`` chunks as locally, so output is byte-identical to the local engine (at equal
torch thread counts). Each wave
starts a new actor pool (one model load per actor per wave); the wave bounds the texts held in the object store.

Ray is an optional extra: ``pip install 'medner[ray]'``. Without ``ray_address`` a local instance is started
(and shut down at the end); with it, the driver joins that cluster, whose nodes need medner installed and
the model directory (and inputs are read by the driver only) at the same path.

An error in a worker comes back as one line: a :class:`medner.errors.MednerError` as it was raised (a model that
changed, a device the node lacks), anything else as a :class:`ModelError` naming the engine and the exception's
type (never its message, which may quote a record); see :class:`ShardPredictor`.
"""
from __future__ import annotations

import json
import logging
import time
from itertools import islice
from typing import Iterator

import numpy as np

from medner.batch.engine import predict_texts
from medner.errors import ConfigError, CorpusError, LexiconError, MednerError, ModelError
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
    """Ray Data callable class: holds one Annotator; a batch of shards -> their predictions.

    An error (loading the model or predicting) travels back as JSON in the row's ``error`` column
    (:func:`_error_payload`): Ray keeps only the text of an exception raised in an actor, with its traceback.
    """

    def __init__(self, spec, batch_records: int) -> None:
        self.batch_records = batch_records
        self.error = ""
        try:
            self.annotator = spec.load()
        except Exception as exc:  # noqa: BLE001 - sent to the driver as one line, see _error_payload
            self.error = _error_payload(exc)

    def __call__(self, batch: dict) -> dict:
        payloads, seconds, errors = [], [], []
        for texts_json in batch["texts"]:
            start = time.perf_counter()
            payload, error = self._predict(texts_json)
            seconds.append(time.perf_counter() - start)
            payloads.append(payload)
            errors.append(error)
        return {"shard": np.asarray(batch["shard"]), "predictions": np.asarray(payloads, dtype=object),
                "seconds": np.asarray(seconds, dtype=float), "error": np.asarray(errors, dtype=object)}

    def _predict(self, texts_json: str) -> tuple[str, str]:
        if self.error:
            return "", self.error
        try:
            return _encode(predict_texts(self.annotator, json.loads(texts_json), self.batch_records)), ""
        except Exception as exc:  # noqa: BLE001
            return "", _error_payload(exc)


_ERROR_CLASSES = {cls.__name__: cls for cls in (ConfigError, CorpusError, LexiconError, ModelError)}


def _error_payload(exc: Exception) -> str:
    """JSON of a MednerError (as its nearest class of :mod:`medner.errors`, with its message, where, field and
    fix: its one line names the fix), of anything else a ModelError naming its type only (its message may quote a
    record). JSON, not pickle: nothing in medner is read with pickle."""
    if not isinstance(exc, MednerError):
        exc = _worker_failure(type(exc).__name__)
    kind = next((c.__name__ for c in type(exc).__mro__ if c in _ERROR_CLASSES.values()), ModelError.__name__)
    return json.dumps({"type": kind, "message": exc.message, "where": exc.where, "field": exc.field,
                       "fix": exc.fix}, ensure_ascii=False)


def _worker_error(payload: str) -> MednerError:
    """The error :func:`_error_payload` sent."""
    error = json.loads(payload)
    return _ERROR_CLASSES[error["type"]](error["message"], where=error["where"], field=error["field"],
                                         fix=error["fix"])


def _worker_failure(name: str) -> ModelError:
    return ModelError(f"a worker of `--engine ray` failed ({name})", field="engine",
                      fix="rerun with --engine local to see where, or see the Ray logs "
                          "(/tmp/ray/session_latest/logs/)")


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
        started_here, cpus = False, None
        try:
            for wave in iter(lambda: list(islice(shards, self.wave_shards)), []):
                if not ray.is_initialized():
                    ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                    started_here = True
                if cpus is None:
                    cpus = self.actor_cpus(ray)
                ctx = ray.data.DataContext.get_current()
                ctx.enable_progress_bars = bool(opts.progress)
                yield from self._wave(ray, wave, cpus)
        finally:
            if started_here:
                ray.shutdown()

    def actor_cpus(self, ray) -> int:
        """CPUs each actor reserves: its torch threads, at most the CPUs of the cluster's largest node (an actor
        asking more than any node has is never placed: Ray waits forever). Torch threads stay as asked, as with
        the local engine."""
        threads, workers = self.options.threads, self.options.workers
        nodes = [node.get("Resources", {}).get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
        largest = int(max(nodes, default=0))
        if largest < 1:  # a head node without CPUs: an autoscaler adds the nodes the actors ask for
            log.warning("no live Ray node has a CPU yet: each worker asks for %d CPUs, which the cluster's "
                        "autoscaler must add (else Ray waits)", threads)
            return threads
        cpus = min(threads, largest)
        if threads > largest:
            log.warning("--threads %d is more than the %d CPUs of the largest Ray node: each worker reserves %d CPUs "
                        "and runs %d torch threads (--threads %d or less avoids oversubscription)",
                        threads, largest, cpus, threads, largest)
        total = int(ray.cluster_resources().get("CPU", 0))
        if workers * cpus > total:
            log.warning("--workers %d x %d CPUs is more than the %d CPUs of the Ray cluster: fewer workers run at once",
                        workers, cpus, total)
        return cpus

    def _wave(self, ray, wave: list, cpus: int) -> Iterator[tuple]:
        opts = self.options
        by_index = {shard.index: shard for shard in wave}
        rows = [{"shard": shard.index, "texts": json.dumps(shard.texts, ensure_ascii=False)} for shard in wave]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(
            ShardPredictor, batch_size=1, batch_format="numpy", num_cpus=cpus,
            compute=ray.data.ActorPoolStrategy(size=opts.workers),
            fn_constructor_kwargs={"spec": opts.model_spec(), "batch_records": opts.batch_records})
        for row in _rows(ray, ds):
            yield by_index[int(row["shard"])], _decode(row["predictions"]), float(row["seconds"])


def _rows(ray, ds) -> Iterator[dict]:
    """The dataset's rows; a worker's error, or Ray's own (an actor that died), as one line."""
    try:
        for row in ds.iter_rows():
            if row["error"]:
                raise _worker_error(row["error"])
            yield row
    except ray.exceptions.RayError as exc:
        raise _worker_failure(type(exc).__name__) from None
