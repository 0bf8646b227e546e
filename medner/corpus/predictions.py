"""`medner annotate` output read back as predicted records, for `evaluate` and `render`.

    for record in read_predictions("out/"): ...              # an output folder: every shard its manifest lists
    for record in read_predictions("out/shards/part-000003.jsonl"): ...   # one shard (.jsonl or .parquet)
    for record in read_predictions("pred.jsonl"): ...        # the project's jsonl (``medner predict``), as before

A shard row (see :mod:`medner.batch.shards`) becomes ``Record(id, text, spans, meta)``: ``text`` is the row's
``text`` when annotate wrote it (``--with-text``), else ``""``; ``meta`` keeps ``key``, ``source`` and ``model``,
plus what scoring needs to check that the prediction was made on the gold text when the text itself is absent:

* ``meta["text_sha256"]``: the row's :data:`TEXT_HASH_FIELD`, the hex SHA-256 of the record's UTF-8 text;
* ``meta["mentions"]``: ``((start, end, mention), ...)`` from the spans' ``text``;
* ``meta["text_absent"]``: True when the row holds no text (an empty ``text`` then means "not given").

A row with neither text nor hash is paired with gold by id alone (and its spans' mentions): an INFO line says how
many. Reading is strict (a malformed row or span raises, naming file and line, never quoting record text).
Record ids are the rows' ``id``: where the same document is read from different containers (a folder of .txt
files, an archive of that folder) the ids follow annotate's rule and ``meta["source"]`` tells them apart.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from medner.corpus import read_corpus
from medner.errors import CorpusError
from medner.types import Record, Span

__all__ = ["TEXT_HASH_FIELD", "PREDICTION_FORMATS", "text_sha256", "is_annotate_output", "shard_files",
           "read_annotate_output", "read_predictions"]

log = logging.getLogger(__name__)

TEXT_HASH_FIELD = "text_sha256"
"""Row field with the hex SHA-256 of the annotated text's UTF-8 bytes (written by annotate; checked here)."""
MANIFEST_FILE = "manifest.json"  # the names medner.batch.shards writes (a test keeps them in step)
SHARDS_DIR = "shards"
LEDGER_FILE = "ledger.jsonl"
ERRORS_FILE = "errors.jsonl"
SHARD_SUFFIXES = (".jsonl", ".parquet")
PREDICTION_FORMATS = ("auto", "annotate")
"""``read_predictions`` formats besides the corpus formats: ``auto`` tells annotate output from a corpus file."""
_FIX = "point at the --out folder of a finished `medner annotate` run, or at one of its shards/part-*.jsonl files"


def text_sha256(text: str) -> str:
    """The value of :data:`TEXT_HASH_FIELD` for ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _first_row(path: Path) -> Any:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    return json.loads(line)
                except ValueError:
                    return None
    return None


def is_annotate_output(path: str | os.PathLike) -> bool:
    """True for an annotate output folder (or its ``shards`` folder), a ``.parquet`` file, or a ``.jsonl`` file whose
    first row has annotate's ``key`` and ``source`` (the project's corpus jsonl has neither)."""
    p = Path(path)
    if p.is_dir():
        if any((p / name).exists() for name in (MANIFEST_FILE, LEDGER_FILE, SHARDS_DIR)):
            return True
        return p.name == SHARDS_DIR and any((p.parent / name).exists() for name in (MANIFEST_FILE, LEDGER_FILE))
    if p.suffix == ".parquet":
        return True
    if p.is_file() and p.suffix == ".jsonl":
        row = _first_row(p)
        return isinstance(row, dict) and "key" in row and "source" in row
    return False


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The shard files of an annotate output folder, in order, as its ``manifest.json`` lists them (also given the
    ``shards`` folder itself). Logs a warning when annotate reported failed records or an unfinished run."""
    folder = Path(folder)
    if folder.name == SHARDS_DIR and not (folder / MANIFEST_FILE).exists() and (folder.parent / MANIFEST_FILE).exists():
        folder = folder.parent
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        if (folder / LEDGER_FILE).is_file():
            raise CorpusError("no manifest.json: the annotate run has not finished", where=str(folder),
                              fix="run the same `medner annotate` command again to finish it, or score one of its "
                                  "shards/part-*.jsonl files")
        raise CorpusError("not a `medner annotate` output folder (no manifest.json)", where=str(folder), fix=_FIX)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["shards"]["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise CorpusError("unreadable manifest (expected shards.files, a list of paths)", where=str(manifest_path),
                          fix="rebuild it: run the same `medner annotate` command again") from None
    paths = [folder / name for name in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CorpusError(f"the manifest lists {len(missing)} shard file(s) that do not exist, e.g. {missing[0].name}",
                          where=str(manifest_path), fix="run the same `medner annotate` command again")
    if manifest.get("complete") is False:
        log.warning("%s: the annotate run did not finish (manifest complete: false): records it has not reached have "
                    "no prediction", folder)
    failed = (manifest.get("counts") or {}).get("failed") or 0
    if failed:
        log.warning("%s: annotate could not read or annotate %d record(s) (listed in %s): they have no prediction",
                    folder, failed, ERRORS_FILE)
    return paths


def _rows(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` of a shard file: ``file:line`` for JSON lines, ``file row N`` for Parquet."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # optional dependency and start-up time: only Parquet shards need it
        except ImportError:
            raise CorpusError("reading Parquet shards needs pyarrow", where=str(path),
                              fix="pip install pyarrow, or annotate with --format jsonl") from None
        try:
            table = pq.ParquetFile(path)
            number = 0
            for batch in table.iter_batches():
                for row in batch.to_pylist():
                    number += 1
                    yield f"{path} row {number}", row
        except OSError as exc:
            raise CorpusError(f"unreadable Parquet file ({type(exc).__name__})", where=str(path), fix=_FIX) from None
        return
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield where, json.loads(line)
            except ValueError as exc:
                raise CorpusError(f"invalid JSON ({type(exc).__name__}): a truncated or damaged shard", where=where,
                                  fix="run the same `medner annotate` command again (it rewrites damaged shards "
                                      "only if the ledger does not list them: else annotate into a new folder)") \
                    from None


def _int(value: Any, where: str, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CorpusError(f"expected an integer, got {type(value).__name__}", where=where, field=field, fix=_FIX)
    return value


def _record(row: Any, where: str) -> Record:
    if not isinstance(row, Mapping):
        raise CorpusError(f"expected a JSON object, got {type(row).__name__}", where=where, fix=_FIX)
    if "id" not in row or not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise CorpusError("missing or non-string `id`", where=where, field="id", fix=_FIX)
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise CorpusError(f"expected `text` to be a string, got {type(text).__name__}", where=where, field="text",
                          fix=_FIX)
    digest = row.get(TEXT_HASH_FIELD)
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise CorpusError("expected a 64-digit hex SHA-256", where=where, field=TEXT_HASH_FIELD, fix=_FIX)
    raw_spans = row.get("spans") or []
    if not isinstance(raw_spans, list):
        raise CorpusError(f"expected `spans` to be a list, got {type(raw_spans).__name__}", where=where,
                          field="spans", fix=_FIX)
    spans, mentions = [], []
    for i, raw in enumerate(raw_spans):
        field = f"spans[{i}]"
        if not isinstance(raw, Mapping):
            raise CorpusError(f"expected a span object, got {type(raw).__name__}", where=where, field=field, fix=_FIX)
        start, end = _int(raw.get("start"), where, f"{field}.start"), _int(raw.get("end"), where, f"{field}.end")
        label = raw.get("label")
        if not isinstance(label, str) or not label:
            raise CorpusError("missing or empty label", where=where, field=f"{field}.label", fix=_FIX)
        if not 0 <= start < end or (text is not None and end > len(text)):
            limit = f" <= {len(text)} (len(text))" if text is not None else ""
            raise CorpusError(f"span ({start}, {end}) is empty or outside the text: expected 0 <= start < end{limit}",
                              where=where, field=field, fix=_FIX)
        mention = raw.get("text")
        if mention is not None:
            if not isinstance(mention, str) or len(mention) != end - start or (
                    text is not None and text[start:end] != mention):
                raise CorpusError(f"span ({start}, {end}): its `text` is not the text at those offsets",
                                  where=where, field=f"{field}.text", fix=_FIX)
            mentions.append((start, end, mention))
        score, code = raw.get("score"), raw.get("code")
        spans.append(Span(start, end, label, code=code if isinstance(code, str) else None,
                          score=float(score) if isinstance(score, (int, float)) and not isinstance(score, bool)
                          else None))
    meta = {key: row[key] for key in ("key", "source", "model") if row.get(key) is not None}
    meta["text_absent"] = text is None
    if digest is not None:
        meta[TEXT_HASH_FIELD] = digest
    if mentions and text is None:
        meta["mentions"] = tuple(mentions)
    return Record(str(row["id"]), text or "", (), meta).with_spans(spans)


def read_annotate_output(path: str | os.PathLike, *, require_text: bool = False) -> Iterator[Record]:
    """The records of an annotate output folder (every shard its manifest lists, in order) or of one shard file.
    ``require_text``: a row without its text raises (for what draws the text, such as `medner render`)."""
    path = Path(path)
    if not path.exists():
        raise CorpusError("no such file or folder", where=str(path), fix="check the path")
    files = shard_files(path) if path.is_dir() else [path]
    if path.is_file() and path.suffix not in SHARD_SUFFIXES:
        raise CorpusError(f"not a shard file (expected {' or '.join(SHARD_SUFFIXES)})", where=str(path), fix=_FIX)
    return _read(files, str(path), require_text)


def _read(files: list[Path], name: str, require_text: bool) -> Iterator[Record]:
    rows = unchecked = 0
    for file in files:
        for where, row in _rows(file):
            record = _record(row, where)
            if require_text and record.meta["text_absent"]:
                raise CorpusError("the row holds no text (annotate writes it only when asked)", where=where,
                                  field="text", fix="annotate again with --with-text, or use the input records "
                                                    "with --model instead")
            rows += 1
            if record.meta["text_absent"] and TEXT_HASH_FIELD not in record.meta:
                unchecked += 1
            yield record
    if unchecked:
        log.info("%s: %d of %d rows carry neither the text nor %s: they pair with gold by id, and only their spans' "
                 "mentions are checked against the gold text (annotate --with-text writes the text)", name, unchecked,
                 rows, TEXT_HASH_FIELD)


def read_predictions(path: str | os.PathLike, format: str = "auto", *, encoding: str | None = None,
                     on_error: str = "raise", show_text: bool = False, require_text: bool = False) -> Iterator[Record]:
    """Predicted records from annotate output (``format`` ``"annotate"``, or ``"auto"`` when
    :func:`is_annotate_output`) or from a corpus file of any reader's format (``"auto"``: jsonl).
    ``require_text``: annotate rows without their text raise (corpus records always have it)."""
    if format == "annotate" or (format == "auto" and is_annotate_output(path)):
        return read_annotate_output(path, require_text=require_text)
    return read_corpus(path, format="jsonl" if format == "auto" else format, encoding=encoding, on_error=on_error,
                       show_text=show_text)
