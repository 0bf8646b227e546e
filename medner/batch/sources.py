"""Batch inputs -> one deterministic stream of :class:`Item` (a record to annotate, or a failure).

Inputs, in command-line order:
    a folder        walked recursively, entries sorted by relative path (symlinked folders not followed,
                    hidden entries skipped); every supported file in it is read as below
    ``.txt``        one record per file; id = path relative to the folder (or the stem) without ``.txt``
    ``.jsonl``      one JSON object per line; ``id_field``/``text_field`` name the keys
    ``.csv/.tsv``   header row, then one record per row; same column options
    ``.parquet``    one record per row; same column options (text may be string or binary)
    ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (also ``.tar.bz2``, ``.tar.xz``)
                    archives of the above, read member by member (never extracted to disk); members are
                    taken in the archive's own order (zip central directory, tar stream)
``input_format`` other than ``auto`` reads every non-archive file as that format whatever its suffix
(e.g. CCKS 2019 ``.txt`` files that hold JSON lines). Files with other suffixes are skipped and counted.

Every record gets a stable :attr:`Source.key` (``path!member:line`` or ``path!member#row``) so a resumed run
can tell records apart; the same inputs always give the same stream in the same order.

Encodings: :mod:`medner.batch.encodings`; formats: :mod:`medner.batch.formats`; archives and their safety
limits: :mod:`medner.batch.archives`; items and failure reasons: :mod:`medner.batch.items`.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

from medner.batch.archives import tar_items, zip_items
from medner.batch.formats import archive_kind, parquet_items, strip_txt, table_items, text_kind, txt_item
from medner.batch.items import Item, ReadOptions, ReadStats, Source, fail
from medner.errors import CorpusError

log = logging.getLogger(__name__)


def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` sorted by relative path; hidden entries and symlinked folders skipped."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _walk_sorted(folder: Path) -> list[Path]:
    # os.walk yields a folder's files before its sub-folders; sort the whole listing by relative path instead
    return sorted(_walk(folder), key=lambda p: p.relative_to(folder).as_posix())


def check_inputs(inputs: Sequence[str | os.PathLike], options: ReadOptions) -> list[Path]:
    """The inputs as paths; a missing path or an unsupported single file is a :class:`CorpusError`."""
    if not inputs:
        raise CorpusError("no input given", fix="pass folders, .txt/.jsonl/.csv/.parquet files or archives")
    paths = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise CorpusError("no such file or folder", where=str(path), fix="check the input path")
        if path.is_file() and archive_kind(path.name) is None and text_kind(path.name, options.input_format) is None:
            if options.input_format == "auto":
                raise CorpusError("unsupported input file type", where=str(path),
                                  fix="use .txt, .jsonl, .csv, .tsv, .parquet, .zip, .tar or .tar.gz, "
                                      "or force a reader with --input-format")
        if any(path.resolve() == seen.resolve() for seen in paths):
            raise CorpusError("input given twice", where=str(path), fix="pass each input once")
        paths.append(path)
    return paths


def inputs_fingerprint(inputs: Sequence[Path]) -> list[dict]:
    """Per input: path, kind and a digest of (relative path, size, mtime) of every file it holds.

    Stored in the ledger so that resuming over changed inputs is refused instead of silently mixing them.
    """
    out = []
    for path in inputs:
        h = hashlib.sha256()
        files = _walk_sorted(path) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            rel = f.relative_to(path).as_posix() if path.is_dir() else f.name
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        out.append({"path": str(path), "files": len(files), "digest": h.hexdigest()[:16]})
    return out


def iter_items(inputs: Sequence[str | os.PathLike], options: ReadOptions | None = None,
               stats: ReadStats | None = None) -> Iterator[Item]:
    """The deterministic item stream of ``inputs`` (see module docstring)."""
    options = options or ReadOptions()
    stats = stats if stats is not None else ReadStats()
    for path in check_inputs(inputs, options):
        if path.is_dir():
            for file in _walk_sorted(path):
                rel = file.relative_to(path).as_posix()
                yield from _file_items(file, strip_txt(rel), options, stats)
        else:
            yield from _file_items(path, strip_txt(path.name), options, stats)


def _file_items(path: Path, txt_id: str, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    label = str(path)
    archive = archive_kind(path.name)
    if archive == "zip":
        yield from zip_items(path, options, stats)
        return
    if archive == "tar":
        yield from tar_items(path, options, stats)
        return
    kind = text_kind(path.name, options.input_format)
    if kind is None:
        stats.skip(label)
        log.debug("skipped %s (unsupported file type)", label)
        return
    source = Source(label)
    try:
        size = path.stat().st_size
        if kind == "txt":
            if size > options.max_record_bytes:
                yield fail(source, "too_long", f"{size} bytes cannot hold <= {options.max_record_chars} characters",
                            txt_id)
                return
            with open(path, "rb") as fh:
                yield txt_item(fh.read(), source, txt_id, options, stats)
            return
        if kind == "parquet":
            yield from parquet_items(str(path), source, options, stats)
            return
        with open(path, "rb") as fh:
            yield from table_items(kind, fh, source, options, stats)
    except OSError as exc:
        yield fail(source, "corrupt", f"cannot read the file: {exc.strerror or type(exc).__name__}")
