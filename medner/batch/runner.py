"""The resumable batch runner and the local engine (this process, or ``workers`` spawned processes).

:func:`annotate` reads the item stream (:mod:`medner.batch.sources`), cuts it into shards of
``shard_size`` items (shard k = items ``[k*N, (k+1)*N)``), skips shards the ledger lists as complete (they
are re-read, checked against the ledger's key digest, never re-annotated), sends the others to an engine,
and commits each result atomically (:mod:`medner.batch.shards`) before listing it in the ledger. Killed at
any moment, the same call continues where it stopped; the finished output holds each item exactly once.

Engines take an iterator of :class:`Shard` and yield ``(shard, predictions, seconds)`` in any order, where
``predictions[i]`` is the span list of the i-th ok item, or a string naming the exception when the model
failed on that record. ``local``: one worker predicts in this process; ``workers > 1`` uses a spawn-context
process pool, each worker loading the model once with ``max(1, cores // workers)`` torch threads, at most
``2 * workers`` shards in flight. ``ray``: :mod:`medner.batch.ray_engine`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Sequence

from medner.batch.ledger import Ledger, OutputLock
from medner.batch.shards import (FORMATS, ShardWriter, error_row, merge_errors, now, output_row,
                                 write_manifest)
from medner.batch.sources import Item, ReadOptions, ReadStats, check_inputs, inputs_fingerprint, iter_items
from medner.errors import ConfigError, CorpusError, ModelError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass
class AnnotateOptions:
    """Everything one ``medner annotate`` run needs; see the CLI help for each option."""

    model: Path
    inputs: list[Path]
    out: Path
    read: ReadOptions = field(default_factory=ReadOptions)
    shard_size: int = 1000  # items per shard
    output_format: str = "jsonl"
    engine: str = "local"
    workers: int = 1
    batch_records: int = 64  # records per Annotator.predict call
    batch_size: int = 8  # windows per forward pass (on CPU, 4-8 beats larger batches: cache)
    device: str = "auto"
    threads: int | None = None  # torch threads per worker; None = max(1, cores // workers)
    lexicon: Path | None = None  # ICD lexicon TSV for codes (needs medner.lexicon.link)
    precision: str = "auto"  # auto (the run's setting), fp32 or bf16; see ModelSpec
    progress: bool = True
    ray_address: str | None = None  # engine "ray": cluster address (None = start a local instance)
    ray_wave_shards: int = 64  # engine "ray": shards per Ray Data dataset (bounds memory; one model load each)

    def model_spec(self) -> "ModelSpec":
        return ModelSpec(str(self.model), self.device, self.batch_size, str(self.lexicon) if self.lexicon else None,
                         self.precision, self.threads)

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        self.lexicon = Path(self.lexicon) if self.lexicon is not None else None
        self.inputs = [Path(p) for p in self.inputs]
        if self.threads is None:
            self.threads = torch_threads(self.workers)
        for name in ("shard_size", "workers", "batch_records", "batch_size", "threads", "ray_wave_shards"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}", field=name)
        if self.output_format not in FORMATS:
            raise ConfigError(f"unknown output format {self.output_format!r}", field="format",
                              fix=f"use one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}", field="precision",
                              fix=f"use one of {', '.join(PRECISIONS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}", field="engine", fix=f"use one of {', '.join(ENGINES)}")


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


def model_fingerprint(run_dir: Path) -> str:
    """The weights fingerprint from ``medner_model.json`` without loading the model."""
    meta = run_dir / "medner_model.json"
    if not meta.is_file():
        raise ModelError(f"{run_dir} is not a medner run directory (no medner_model.json)", field="model",
                         fix="point --model at the output_dir of a finished `medner train` run")
    try:
        return str(json.loads(meta.read_text(encoding="utf-8"))["fingerprint"])
    except (ValueError, KeyError) as exc:
        raise ModelError(f"unreadable medner_model.json ({type(exc).__name__})", where=str(meta),
                         fix="re-save the run directory") from None


def lexicon_fingerprint(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError("no such lexicon file", where=str(path), field="lexicon",
                          fix="build it with `medner lexicon build` or drop --lexicon")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ prediction
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to build its Annotator (picklable: sent to worker processes and Ray actors).

    ``precision``: ``auto`` keeps the run's setting (fp32 on CPU, bf16/fp16 autocast on a capable GPU);
    ``fp32``; ``bf16`` = bf16 autocast for the encoder (fast on CPUs with AMX/AVX512-BF16; CRF stays fp32).
    """

    model: str
    device: str = "auto"
    batch_size: int = 8
    lexicon: str | None = None
    precision: str = "auto"
    threads: int | None = None

    def load(self):
        """Set the torch threads, then load the Annotator with the requested precision and linker."""
        import torch

        import medner

        if self.threads:
            torch.set_num_threads(self.threads)
        annotator = medner.load(Path(self.model), device=self.device, batch_size=self.batch_size)
        if self.precision == "fp32":
            annotator.dtype = None
        elif self.precision == "bf16":
            annotator.dtype = torch.bfloat16
        if self.lexicon is not None:
            annotator.linker = build_linker(Path(self.lexicon))
        return annotator


def build_linker(path: Path):
    """``(text, span) -> span`` setting ``code`` through :class:`medner.lexicon.link.IcdLinker` over ``path``."""
    try:
        from medner.lexicon.link import IcdLinker
    except ModuleNotFoundError as exc:
        if exc.name != "medner.lexicon.link":
            raise
        raise ConfigError("ICD linking is not available in this medner version (no medner.lexicon.link)",
                          field="lexicon", fix="drop --lexicon") from None
    return IcdLinker.from_lexicon(path).link


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


# ------------------------------------------------------------------------------------------ local engine
_WORKER: dict[str, Any] = {}


def _watch_parent() -> None:
    """Exit this worker when the parent dies (a SIGKILLed parent cannot stop its pool)."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover
        return
    wait([parent.sentinel])
    os._exit(0)


def _worker_init(spec: ModelSpec, level: int) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s[worker]: %(message)s")
    threading.Thread(target=_watch_parent, daemon=True).start()
    _WORKER["annotator"] = spec.load()


def _worker_predict(texts: list[str], batch_records: int) -> tuple[list, float]:
    start = time.perf_counter()
    predictions = predict_texts(_WORKER["annotator"], texts, batch_records)
    return predictions, time.perf_counter() - start


class LocalEngine:
    """This process (``workers == 1``) or a spawn process pool of ``workers`` processes."""

    name = "local"

    def __init__(self, options: AnnotateOptions) -> None:
        self.options = options
        self._annotator = None

    def run(self, shards: Iterator[Shard]) -> Iterator[tuple[Shard, list, float]]:
        if self.options.workers == 1:
            yield from self._run_inline(shards)
        else:
            yield from self._run_pool(shards)

    def _run_inline(self, shards: Iterator[Shard]) -> Iterator[tuple[Shard, list, float]]:
        opts = self.options
        for shard in shards:
            if self._annotator is None:
                self._annotator = opts.model_spec().load()
            start = time.perf_counter()
            predictions = predict_texts(self._annotator, shard.texts, opts.batch_records)
            yield shard, predictions, time.perf_counter() - start

    def _run_pool(self, shards: Iterator[Shard]) -> Iterator[tuple[Shard, list, float]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        opts = self.options
        initargs = (opts.model_spec(), logging.getLogger().level or logging.WARNING)
        pool = None
        pending: dict = {}
        try:
            for shard in shards:
                if pool is None:  # start workers only when there is work
                    pool = ProcessPoolExecutor(opts.workers, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_worker_init, initargs=initargs)
                pending[pool.submit(_worker_predict, shard.texts, opts.batch_records)] = shard
                while len(pending) >= 2 * opts.workers:
                    yield from self._collect(pending, wait(pending, return_when=FIRST_COMPLETED).done)
            while pending:
                yield from self._collect(pending, wait(pending, return_when=FIRST_COMPLETED).done)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _collect(pending: dict, done) -> Iterator[tuple[Shard, list, float]]:
        from concurrent.futures.process import BrokenProcessPool

        for future in sorted(done, key=lambda f: pending[f].index):
            shard = pending.pop(future)
            try:
                predictions, seconds = future.result()
            except BrokenProcessPool:
                raise ModelError("a worker process died (out of memory, or killed)", field="workers",
                                 fix="rerun the same command to resume; use fewer --workers or a smaller "
                                     "--batch-size if it recurs") from None
            yield shard, predictions, seconds


# ------------------------------------------------------------------------------------------ the run
def _shards(items: Iterator[Item], size: int) -> Iterator[Shard]:
    index = 0
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield Shard(index, chunk)
        index += 1


def signature_of(options: AnnotateOptions, inputs: list[Path]) -> dict:
    """What the output is made of; must be equal on resume."""
    return {"model": model_fingerprint(options.model), "lexicon": lexicon_fingerprint(options.lexicon),
            "inputs": inputs_fingerprint(inputs), "read": options.read.to_dict(),
            "shard_size": options.shard_size, "format": options.output_format, "precision": options.precision}


def _shard_entry(shard: Shard, predictions: list, seconds: float, session: int) -> tuple[dict, list, list]:
    """(ledger entry, output rows, error rows) of a finished shard."""
    rows, errors, reasons, encodings = [], [], {}, {}
    spans = chars = 0
    it = iter(predictions)
    for item in shard.items:
        if not item.ok:
            errors.append(error_row(item))
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
            continue
        pred = next(it)
        if isinstance(pred, str):
            errors.append(error_row(item, "model_error", f"the model raised {pred} on this record"))
            reasons["model_error"] = reasons.get("model_error", 0) + 1
            continue
        rows.append((item, pred))
        spans += len(pred)
        chars += len(item.text)
        if item.encoding:
            encodings[item.encoding] = encodings.get(item.encoding, 0) + 1
    entry = {"event": "shard", "shard": shard.index, "items": len(shard.items), "records": len(rows),
             "errors": len(errors), "spans": spans, "chars": chars, "keys": shard.keys_digest(),
             "first": shard.items[0].key, "last": shard.items[-1].key, "reasons": reasons,
             "encodings": encodings, "seconds": round(seconds, 4), "session": session}
    return entry, rows, errors


def _progress_bar(enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(disable=not enabled, unit="rec", desc="annotate", dynamic_ncols=True, smoothing=0.1)


def annotate(options: AnnotateOptions, engine=None) -> dict:
    """Run (or resume) a batch annotation; returns the manifest (also written to ``OUTDIR/manifest.json``)."""
    inputs = check_inputs(options.inputs, options.read)
    signature = signature_of(options, inputs)
    model = signature["model"]
    options.out.mkdir(parents=True, exist_ok=True)
    with OutputLock(options.out):
        ledger = Ledger.open(options.out, signature)
        writer = ShardWriter(options.out, options.output_format)
        writer.cleanup(ledger.shards)
        before = len(ledger.shards)
        session = ledger.start_session(engine=options.engine, workers=options.workers, pid=os.getpid())
        if engine is None:
            engine = make_engine(options)
        stats = ReadStats()
        bar = _progress_bar(options.progress)
        started = time.perf_counter()
        session_chars = session_failed = 0

        def pending() -> Iterator[Shard]:
            for shard in _shards(iter_items(inputs, options.read, stats), options.shard_size):
                entry = ledger.done(shard.index)
                if entry is None:
                    yield shard
                elif entry["keys"] != shard.keys_digest():
                    raise CorpusError(f"shard {shard.index} now holds other records than when it was written "
                                      f"(first {shard.items[0].key!r})", where=str(options.out),
                                      fix="restore the original inputs, or choose a new --out")

        try:
            for shard, predictions, seconds in engine.run(pending()):
                entry, rows, errors = _shard_entry(shard, predictions, seconds, session)
                files = writer.commit(shard.index, [output_row(item, spans, model) for item, spans in rows], errors)
                entry.update(files)
                entry["t"] = now()
                ledger.append(entry)
                session_chars += entry["chars"]
                session_failed += entry["errors"]
                bar.update(entry["records"])
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(chars_s=f"{session_chars / elapsed:,.0f}", failed=session_failed, refresh=False)
        finally:
            bar.close()
        ledger.append({"event": "finish", "session": session, "t": now(), "read_stats": stats.to_dict()})
        n_errors = merge_errors(options.out, ledger)
        manifest = write_manifest(options.out, ledger, extra={
            "engine": options.engine, "workers": options.workers, "read_stats": stats.to_dict(),
            "resumed_shards": before, "inputs": [str(p) for p in inputs], "model_dir": str(options.model)})
        assert n_errors == manifest["counts"]["failed"]
        log.info("annotated %d records, %d failed, %d shards (%d done before this session) -> %s",
                 manifest["counts"]["annotated"], manifest["counts"]["failed"], manifest["shards"]["count"],
                 before, options.out)
        return manifest


def make_engine(options: AnnotateOptions):
    if options.engine == "ray":
        from medner.batch.ray_engine import RayEngine

        return RayEngine(options)
    return LocalEngine(options)
