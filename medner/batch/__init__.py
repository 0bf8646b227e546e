"""Offline batch annotation of archives: resumable, exactly-once, local processes or Ray.

    inputs (folders of .txt, JSONL/CSV/Parquet, .zip/.tar/.tar.gz of those)
      -> :mod:`medner.batch.sources`  a deterministic stream of :class:`Item` (a record or a failure), read by
         :mod:`~medner.batch.formats` (txt, JSONL, CSV, Parquet) and :mod:`~medner.batch.archives` (zip, tar),
         decoded by :mod:`~medner.batch.encodings`, keys made unique by :mod:`~medner.batch.unique`
      -> shards of ``shard_size`` items (shard k = items [k*N, (k+1)*N) of the stream)
      -> an engine (:mod:`medner.batch.engine`): :mod:`~medner.batch.local_engine` (this process or a process
         pool) or :mod:`~medner.batch.ray_engine` (Ray Data)
      -> :mod:`medner.batch.shards` atomic shard files + :mod:`medner.batch.ledger` progress ledger
      -> ``errors.jsonl`` and ``manifest.json`` at the end

Entry point: :func:`medner.batch.runner.annotate` (the CLI is ``medner annotate``). What it promises against
kills, full disks, damaged output, changed models and hostile inputs: ``docs/guarantees.md``.
"""
from __future__ import annotations

from medner.batch.items import ArchiveLimits, Item, ReadOptions, Source
from medner.batch.sources import iter_items

__all__ = ["ArchiveLimits", "Item", "ReadOptions", "Source", "iter_items", "annotate", "AnnotateOptions"]


def __getattr__(name: str):  # start-up time: the runner imports torch; load it only when asked
    if name in ("annotate", "AnnotateOptions"):
        from medner.batch import runner

        return getattr(runner, name)
    raise AttributeError(name)
