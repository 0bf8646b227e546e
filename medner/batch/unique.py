"""Unique output keys, and repeated record ids, in the batch item stream.

The key rule: every item of the stream has a key no earlier item has. An item whose key (``path!member:line``,
see :attr:`medner.batch.items.Source.key`) was already produced earlier in the stream gets ``~2`` appended, or
``~3``, ... the smallest number that gives a key not seen yet. This happens only for real repeats: the same
member name twice in one archive (``a.zip!notes/x.txt`` then ``a.zip!notes/x.txt~2``, in archive order, so
``~2`` is the second member of that name), or names that spell another item's key. Keys of inputs without
repeats never change, so existing outputs resume. An item whose id defaulted to its key gets the new key as id.

Record ids are the user's and are kept as given. An id that an earlier item of the stream already had (the same
id twice in one file, or in two inputs) is counted in ``read_stats.duplicate_ids`` of ``manifest.json``, with the
keys of the first repeats as examples, and a warning is logged; both records are annotated, and their rows are
told apart by ``key``. Ids that default to the record's key are unique by the key rule.

The same file reached twice (a hard link, or a symbolic link to a file that is also read directly) is read once,
at its first path in stream order; later paths become ``duplicate_file`` failures
(:mod:`medner.batch.sources`).

Memory: seen keys, ids and files are kept as 64-bit digests (8 bytes each in sorted numpy arrays), so a stream of
10 million records needs about 160 MB. Two different strings share a digest with probability about
``n**2 / 2**65`` (3e-6 for 10 million); such a pair would be treated as a repeat, deterministically.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Iterable, Iterator

import numpy as np

from medner.batch.items import EXAMPLES, Item, ReadStats

log = logging.getLogger(__name__)


def digest(text: str) -> int:
    """A 64-bit digest of ``text`` (surrogate escapes kept)."""
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class DigestSet:
    """A set of 64-bit integers in bounded memory: a small Python set, then sorted numpy runs merged by size."""

    def __init__(self, buffer: int = 1 << 16) -> None:
        self._buffer = buffer
        self._recent: set[int] = set()
        self._runs: list[np.ndarray] = []  # sorted uint64 arrays, sizes decreasing

    def __contains__(self, value: int) -> bool:
        if value in self._recent:
            return True
        probe = np.uint64(value)
        for run in self._runs:
            i = int(np.searchsorted(run, probe))
            if i < run.size and run[i] == probe:
                return True
        return False

    def __len__(self) -> int:
        return len(self._recent) + sum(run.size for run in self._runs)

    def add(self, value: int) -> bool:
        """Add ``value``; True when it was new."""
        if value in self:
            return False
        self._recent.add(value)
        if len(self._recent) >= self._buffer:
            self._flush()
        return True

    def _flush(self) -> None:
        run = np.sort(np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent)))
        self._recent = set()
        while self._runs and self._runs[-1].size <= run.size:
            run = np.sort(np.concatenate([self._runs.pop(), run]), kind="stable")
        self._runs.append(run)


class Unique:
    """Applies the key rule to a stream of items and counts repeated ids (module docstring)."""

    def __init__(self, stats: ReadStats) -> None:
        self.stats = stats
        self._keys = DigestSet()
        self._ids = DigestSet()

    def items(self, items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            yield self.one(item)

    def one(self, item: Item) -> Item:
        key = item.key
        if not self._keys.add(digest(key)):
            copy = 2
            while True:
                source = replace(item.source, copy=copy)
                if self._keys.add(digest(source.key)):
                    break
                copy += 1
            item = replace(item, source=source, id=source.key if item.id == key else item.id)
            self.stats.copy(item.key)
            if self.stats.copies <= EXAMPLES:
                log.warning("%s: a key seen before in this stream (the same member or file name again); this "
                            "item's key is %s", key, item.key)
        if item.id not in (key, item.key) and not self._ids.add(digest(item.id)):
            self.stats.duplicate_id(item.key)
        return item
