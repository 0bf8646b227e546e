"""The local engine: shards predicted in this process (``workers == 1``) or in a spawn-context process pool,
each worker loading the model once with ``max(1, cores // workers)`` torch threads, at most ``2 * workers``
shards in flight."""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for
from typing import Any, Iterator

from medner.batch.engine import ModelSpec, Shard, predict_texts
from medner.errors import ModelError

log = logging.getLogger(__name__)

_WORKER: dict[str, Any] = {}


def _watch_parent() -> None:
    """Exit this worker when the parent dies (a SIGKILLed parent cannot stop its pool)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover
        return
    wait_for([parent.sentinel])
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

    def __init__(self, options) -> None:
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
        for future in sorted(done, key=lambda f: pending[f].index):
            shard = pending.pop(future)
            try:
                predictions, seconds = future.result()
            except BrokenProcessPool:
                raise ModelError("a worker process died (out of memory, or killed)", field="workers",
                                 fix="rerun the same command to resume; use fewer --workers or a smaller "
                                     "--batch-size if it recurs") from None
            yield shard, predictions, seconds
