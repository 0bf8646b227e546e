"""Offline batch annotation of archives: resumable, exactly-once, local processes or Ray.

    inputs (folders of .txt, JSONL/CSV/Parquet, .zip/.tar/.tar.gz of those)
      -> :mod:`medner.batch.sources`  a deterministic stream of :class:`Item` (a record or a failure)
      -> shards of ``shard_size`` items (shard k = items [k*N, (k+1)*N) of the stream)
      -> an engine (:mod:`medner.batch.runner` local processes, :mod:`medner.batch.ray_engine` Ray Data)
      -> :mod:`medner.batch.shards` atomic shard files + :mod:`medner.batch.ledger` progress ledger
      -> ``errors.jsonl`` and ``manifest.json`` at the end

Entry point: :func:`medner.batch.runner.annotate` (the CLI is ``medner annotate``).
"""
from __future__ import annotations

from medner.batch.sources import ArchiveLimits, Item, ReadOptions, Source, iter_items

__all__ = ["ArchiveLimits", "Item", "ReadOptions", "Source", "iter_items", "annotate", "AnnotateOptions"]


def __getattr__(name: str):  # start-up time: the runner imports torch; load it only when asked
    if name in ("annotate", "AnnotateOptions"):
        from medner.batch import runner

        return getattr(runner, name)
    raise AttributeError(name)
