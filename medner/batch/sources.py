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

Encodings (:func:`decode_text`): a byte-order mark wins (UTF-8, UTF-16 LE/BE); else text whose bytes show the
NUL pattern of UTF-16 without a BOM is read as UTF-16; else strict UTF-8; else strict GB18030 (a superset
of GBK and GB2312). ``encoding`` forces one codec. JSONL lines and ``.txt`` records are detected one by one;
CSV files as a whole (from their first MiB), with undecodable rows retried one by one.

Failures never stop the stream; they become items with a ``reason`` (see :data:`REASONS`) that the runner
writes to ``errors.jsonl``. Archive safety: members with absolute paths or ``..`` components, links,
devices/FIFOs, encrypted, nested archives, members over ``max_member_bytes``, members whose (declared or
actual) size exceeds ``max_ratio`` times their compressed size, and whatever follows once an archive has
produced ``max_total_bytes`` are rejected and reported. Members are read into memory (at most
``max_member_bytes`` each), so a zip member's CRC is checked before any of its records is used.
Record text never appears in a reason or detail.
"""
from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, Iterator, Sequence

from medner.errors import ConfigError, CorpusError

log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30

TEXT_KINDS = ("txt", "jsonl", "csv", "parquet")
INPUT_FORMATS = ("auto",) + TEXT_KINDS
_SUFFIX_KIND = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
                ".parquet": "parquet"}
_ARCHIVE_SUFFIXES = ((".tar.gz", "tar"), (".tgz", "tar"), (".tar.bz2", "tar"), (".tbz2", "tar"),
                     (".tar.xz", "tar"), (".txz", "tar"), (".tar", "tar"), (".zip", "zip"))

REASONS = {
    "undecodable": "bytes that decode in none of the encodings tried",
    "empty": "empty or whitespace-only text",
    "too_long": "text over max_record_chars",
    "bad_json": "a JSONL line that is not a JSON object",
    "missing_text": "no text field/column, or a null text",
    "bad_field": "an id or text value of the wrong type",
    "bad_row": "a CSV row that cannot be parsed or lacks the text column",
    "unsafe_path": "archive member with an absolute path or a `..` component",
    "link": "archive member that is a symbolic or hard link",
    "special_file": "archive member that is a device, FIFO or other non-regular file",
    "encrypted": "encrypted archive member",
    "nested_archive": "archive inside an archive",
    "member_too_large": "archive member over max_member_bytes",
    "ratio_exceeded": "compression ratio over max_ratio (decompression bomb)",
    "total_exceeded": "archive content over max_total_bytes",
    "corrupt": "a file or archive that cannot be read (truncated, bad CRC, not that format)",
    "model_error": "the model failed on this record (the exception type is given)",
}


# ----------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class ArchiveLimits:
    """Limits for reading archives; sizes in bytes of decompressed data."""

    max_member_bytes: int = 256 * MiB
    max_total_bytes: int = 16 * GiB  # per archive
    max_ratio: float = 200.0  # decompressed / compressed
    ratio_min_bytes: int = 1 * MiB  # the ratio is checked only for members (tar: archive prefixes) above this

    def __post_init__(self) -> None:
        for name in ("max_member_bytes", "max_total_bytes", "ratio_min_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"`{name}` must be >= 0, got {getattr(self, name)}", field=name)
        if self.max_ratio < 1:
            raise ConfigError(f"`max_ratio` must be >= 1, got {self.max_ratio}", field="max_ratio",
                              fix="use a ratio such as 100 (decompressed bytes per compressed byte)")


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are read. ``encoding`` None = detect; ``max_record_chars`` bounds one record's text."""

    id_field: str = "id"
    text_field: str = "text"
    encoding: str | None = None
    input_format: str = "auto"
    max_record_chars: int = 1_000_000
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"unknown input format {self.input_format!r}", field="input_format",
                              fix=f"use one of {', '.join(INPUT_FORMATS)}")
        if self.max_record_chars < 1:
            raise ConfigError(f"`max_record_chars` must be >= 1, got {self.max_record_chars}",
                              field="max_record_chars")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(f"unknown encoding {self.encoding!r}", field="encoding",
                                  fix="use a Python codec name such as utf-8, gb18030 or utf-16") from None

    @property
    def max_record_bytes(self) -> int:
        """Bytes above which a text cannot fit ``max_record_chars`` in any supported encoding."""
        return 4 * self.max_record_chars + 4

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Source:
    """Where an item came from: input ``path``, archive ``member``, JSONL ``line`` or CSV/Parquet ``row`` (1-based)."""

    path: str
    member: str | None = None
    line: int | None = None
    row: int | None = None

    @property
    def key(self) -> str:
        """Stable identity, e.g. ``data/a.zip!notes/b.jsonl:17`` or ``data/c.parquet#3``."""
        key = self.path if self.member is None else f"{self.path}!{self.member}"
        if self.line is not None:
            key += f":{self.line}"
        if self.row is not None:
            key += f"#{self.row}"
        return key

    @property
    def where(self) -> str:
        """A location for messages (same as :attr:`key`)."""
        return self.key

    def to_dict(self) -> dict:
        return {"path": self.path, "member": self.member, "line": self.line, "row": self.row}


@dataclass(frozen=True)
class Item:
    """One position of the input stream: a record (``text``) or a failure (``reason`` + ``detail``)."""

    source: Source
    id: str
    text: str | None = None
    reason: str | None = None
    detail: str | None = None
    encoding: str | None = None

    @property
    def key(self) -> str:
        return self.source.key

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class ReadStats:
    """What the reader saw besides items: skipped files (unsupported suffix) and encodings used."""

    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    encodings: Counter = field(default_factory=Counter)

    def skip(self, where: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < 10:
            self.skipped_examples.append(where)

    def to_dict(self) -> dict:
        return {"skipped_files": self.skipped, "skipped_examples": list(self.skipped_examples),
                "encodings": dict(sorted(self.encodings.items()))}


def _fail(source: Source, reason: str, detail: str, record_id: str | None = None) -> Item:
    assert reason in REASONS, reason
    return Item(source, record_id if record_id is not None else source.key, None, reason, detail)


# ----------------------------------------------------------------------------------------------- encodings
class DecodeFailure(ValueError):
    """Bytes that no candidate encoding decodes; ``tried`` lists the codecs, ``offset`` the first bad byte."""

    def __init__(self, tried: list[str], offset: int | None) -> None:
        self.tried = tried
        self.offset = offset
        where = f" (first bad byte at offset {offset})" if offset is not None else ""
        super().__init__(f"cannot decode as {', '.join(tried)}{where}")


_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def sniff_bom(data: bytes) -> str | None:
    """``utf-8-sig`` or ``utf-16`` when ``data`` starts with that byte-order mark, else None."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def looks_utf16(data: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the first 4 KiB show UTF-16's NUL bytes (ASCII-heavy text), else None.

    Valid UTF-8 clinical text has no NUL bytes, so >= 20% NULs on one parity and < 2% on the other is UTF-16.
    """
    sample = data[:4096]
    sample = sample[: len(sample) // 2 * 2]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    if odd >= 0.2 * pairs and even <= 0.02 * pairs:
        return "utf-16-le"
    if even >= 0.2 * pairs and odd <= 0.02 * pairs:
        return "utf-16-be"
    return None


def decode_text(data: bytes, encoding: str | None = None, *, skip: Sequence[str] = ()) -> tuple[str, str]:
    """``(text, codec)``: ``data`` decoded by the detection chain (module docstring), or by ``encoding`` only.

    A leading BOM is dropped. ``skip`` removes codecs already known to fail. Raises :class:`DecodeFailure`.
    """
    if encoding is not None:
        candidates = [encoding]
    else:
        bom = sniff_bom(data)
        if bom is not None:
            candidates = [bom]
        else:
            u16 = looks_utf16(data)
            candidates = ([u16] if u16 else []) + ["utf-8", "gb18030"]
    tried: list[str] = []
    first_bad = None
    for name in candidates:
        if name in skip:
            continue
        try:
            text = data.decode(name)
        except UnicodeDecodeError as exc:
            tried.append(name)
            first_bad = exc.start if first_bad is None else first_bad
            continue
        return (text[1:] if text.startswith("\ufeff") else text), name
    raise DecodeFailure(list(skip) + tried, first_bad)


def _detect_stream_encoding(sample: bytes, encoding: str | None) -> str:
    """One codec for a whole CSV file from its first bytes: forced, BOM, UTF-16 pattern, UTF-8, GB18030."""
    if encoding is not None:
        return encoding
    bom = sniff_bom(sample)
    if bom is not None:
        return bom
    u16 = looks_utf16(sample)
    if u16 is not None:
        return u16
    for name in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(name)().decode(sample, final=False)
            return name
        except UnicodeDecodeError:
            continue
    return "utf-8"  # undecodable rows are reported one by one


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(source: Source, record_id: str, text: str, encoding: str | None, options: ReadOptions) -> Item:
    """The record item, or a failure for empty, over-long or lone-surrogate text."""
    if not text.strip():
        return _fail(source, "empty", "the text is empty or whitespace only", record_id)
    if len(text) > options.max_record_chars:
        return _fail(source, "too_long", f"{len(text)} characters > max_record_chars {options.max_record_chars}",
                     record_id)
    bad = _SURROGATE.search(text)
    if bad is not None:
        return _fail(source, "undecodable", f"lone surrogate at character {bad.start()} (invalid Unicode)",
                     record_id)
    return Item(source, record_id, text, encoding=encoding)


def _decode_failure(source: Source, exc: DecodeFailure, record_id: str | None = None) -> Item:
    where = f"; first bad byte at offset {exc.offset}" if exc.offset is not None else ""
    return _fail(source, "undecodable", f"not decodable as {', '.join(exc.tried)}{where}; "
                                        f"pass --encoding if the codec is another", record_id)


# ----------------------------------------------------------------------------------------------- kinds
def archive_kind(name: str) -> str | None:
    """``zip`` or ``tar`` from a file name's suffix, else None."""
    lower = name.lower()
    for suffix, kind in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return kind
    return None


def text_kind(name: str, input_format: str = "auto") -> str | None:
    """``txt``/``jsonl``/``csv``/``parquet`` for a (non-archive) file name, or None when unsupported."""
    suffix = PurePosixPath(name.lower()).suffix
    if suffix not in _SUFFIX_KIND:
        return None
    return _SUFFIX_KIND[suffix] if input_format == "auto" else input_format


def _strip_txt(name: str) -> str:
    return name[:-4] if name.lower().endswith(".txt") else name


# ----------------------------------------------------------------------------------------------- walking inputs
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
                yield from _file_items(file, _strip_txt(rel), options, stats)
        else:
            yield from _file_items(path, _strip_txt(path.name), options, stats)


def _file_items(path: Path, txt_id: str, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    label = str(path)
    archive = archive_kind(path.name)
    if archive == "zip":
        yield from _zip_items(path, options, stats)
        return
    if archive == "tar":
        yield from _tar_items(path, options, stats)
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
                yield _fail(source, "too_long", f"{size} bytes cannot hold <= {options.max_record_chars} characters",
                            txt_id)
                return
            with open(path, "rb") as fh:
                yield _txt_item(fh.read(), source, txt_id, options, stats)
            return
        if kind == "parquet":
            yield from _parquet_items(str(path), source, options, stats)
            return
        with open(path, "rb") as fh:
            yield from _table_items(kind, fh, source, options, stats)
    except OSError as exc:
        yield _fail(source, "corrupt", f"cannot read the file: {exc.strerror or type(exc).__name__}")


# ----------------------------------------------------------------------------------------------- formats
def _txt_item(data: bytes, source: Source, record_id: str, options: ReadOptions, stats: ReadStats) -> Item:
    if len(data) > options.max_record_bytes:
        return _fail(source, "too_long", f"{len(data)} bytes cannot hold <= {options.max_record_chars} characters",
                     record_id)
    try:
        text, codec = decode_text(data, options.encoding)
    except DecodeFailure as exc:
        return _decode_failure(source, exc, record_id)
    item = _check_text(source, record_id, text, codec, options)
    if item.ok:
        stats.encodings[codec] += 1
    return item


def _table_items(kind: str, stream: IO[bytes], source: Source, options: ReadOptions,
                 stats: ReadStats) -> Iterator[Item]:
    if kind == "jsonl":
        yield from _jsonl_items(stream, source, options, stats)
    elif kind == "csv":
        yield from _csv_items(stream, source, options, stats)
    else:  # pragma: no cover - dispatch is exhaustive
        raise AssertionError(kind)


def _byte_lines(stream: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line_number, line)`` split on ``\\n`` (``\\r\\n`` stripped); None for a line over ``limit`` bytes."""
    number = 0
    while True:
        raw = stream.readline(limit + 2)
        if not raw:
            return
        number += 1
        if not raw.endswith(b"\n") and len(raw) >= limit + 2:  # too long: drain the rest of the line
            while True:
                more = stream.readline(MiB)
                if not more or more.endswith(b"\n"):
                    break
            yield number, None
            continue
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        yield number, raw


def _text_lines(stream: IO[bytes], codec: str, source: Source) -> Iterator[tuple[int, str | Item]]:
    """UTF-16 JSONL: decoded lines split on ``\\n``; an undecodable stretch ends the file with a failure."""
    reader = io.TextIOWrapper(stream, encoding=codec, errors="strict", newline="\n")
    number = 0
    try:
        for number, line in enumerate(reader, 1):
            line = line[:-1] if line.endswith("\n") else line
            yield number, (line[:-1] if line.endswith("\r") else line)
    except UnicodeDecodeError as exc:
        where = Source(source.path, source.member, number + 1)
        yield number + 1, _fail(where, "undecodable", f"not decodable as {codec} ({exc.reason}); the rest of the "
                                                      f"file is skipped")
    finally:
        reader.detach()


def _record_id(value) -> str | None:
    """The id column's value as a string (None when absent); other types give a ``bad_field`` failure."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _BadField(f"id has type {type(value).__name__}, expected a string or number")
    return str(value)


class _BadField(ValueError):
    pass


def _jsonl_items(stream: IO[bytes], source: Source, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    head = stream.peek(4096)[:4096] if hasattr(stream, "peek") else b""
    codec = options.encoding or sniff_bom(head) or looks_utf16(head)
    if codec is not None and codecs.lookup(codec).name.startswith(("utf-16", "utf-32")):
        lines: Iterable[tuple[int, str | bytes | Item | None]] = _text_lines(stream, codec, source)
    else:
        lines = _byte_lines(stream, options.max_record_bytes + 64 * 1024)
    for number, line in lines:
        where = Source(source.path, source.member, number)
        if isinstance(line, Item):
            yield line
            return
        if line is None:
            yield _fail(where, "too_long", f"line longer than {options.max_record_bytes} bytes")
            continue
        codec_used = codec
        if isinstance(line, bytes):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                continue
            try:
                line, codec_used = decode_text(line, options.encoding)
            except DecodeFailure as exc:
                yield _decode_failure(where, exc)
                continue
        if not line.strip():
            continue
        yield _json_record(line, where, codec_used, options, stats)


def _json_record(line: str, where: Source, codec: str | None, options: ReadOptions, stats: ReadStats) -> Item:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return _fail(where, "bad_json", f"invalid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return _fail(where, "bad_json", f"expected a JSON object, got {type(obj).__name__}")
    try:
        record_id = _record_id(obj.get(options.id_field))
    except _BadField as exc:
        return _fail(where, "bad_field", f"{exc} (field `{options.id_field}`)")
    record_id = record_id if record_id is not None else where.key
    if options.text_field not in obj or obj[options.text_field] is None:
        keys = ", ".join(sorted(map(str, obj))[:12])
        return _fail(where, "missing_text", f"no field `{options.text_field}` (keys: {keys}); choose it with "
                                            f"--text-field", record_id)
    text = obj[options.text_field]
    if not isinstance(text, str):
        return _fail(where, "bad_field", f"field `{options.text_field}` has type {type(text).__name__}, "
                                         f"expected a string", record_id)
    item = _check_text(where, record_id, text, codec, options)
    if item.ok:
        stats.encodings[codec or "utf-8"] += 1
    return item


def _csv_items(stream: IO[bytes], source: Source, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    head = stream.peek(MiB)[:MiB] if hasattr(stream, "peek") else b""
    codec = _detect_stream_encoding(head, options.encoding)
    delimiter = "\t" if (source.member or source.path).lower().endswith(".tsv") else ","
    if csv.field_size_limit() < options.max_record_bytes:
        csv.field_size_limit(options.max_record_bytes)
    reader_io = io.TextIOWrapper(stream, encoding=codec, errors="surrogateescape", newline="")
    try:
        reader = csv.reader(reader_io, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            yield _fail(source, "bad_row", f"cannot read the header row: {type(exc).__name__}")
            return
        header = [h.lstrip("\ufeff").strip() for h in header]
        if options.text_field not in header:
            yield _fail(source, "missing_text", f"no column `{options.text_field}` (columns: "
                                                f"{', '.join(header[:12])}); choose it with --text-field")
            return
        text_col = header.index(options.text_field)
        id_col = header.index(options.id_field) if options.id_field in header else None
        row_number = 0
        while True:
            row_number += 1
            where = Source(source.path, source.member, row=row_number)
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield _fail(where, "bad_row", f"CSV error near line {reader.line_num}: {exc}")
                continue
            except UnicodeDecodeError as exc:
                yield _fail(where, "undecodable", f"not decodable as {codec} ({exc.reason}); the rest of the "
                                                  f"file is skipped")
                return
            if not row or (len(row) == 1 and not row[0].strip() and text_col != 0):
                row_number -= 1  # blank line
                continue
            record_id = _redecode(row[id_col], codec)[0] if id_col is not None and id_col < len(row) else None
            record_id = record_id if record_id else where.key
            if text_col >= len(row):
                yield _fail(where, "bad_row", f"row has {len(row)} columns, column `{options.text_field}` is "
                                              f"number {text_col + 1}", record_id)
                continue
            text, codec_used = row[text_col], codec
            if _SURROGATE.search(text):
                try:
                    text, codec_used = _redecode_strict(text, codec, options.encoding)
                except DecodeFailure as exc:
                    yield _decode_failure(where, exc, record_id)
                    continue
            item = _check_text(where, record_id, text, codec_used, options)
            if item.ok:
                stats.encodings[codec_used] += 1
            yield item
    finally:
        reader_io.detach()


def _redecode(value: str, codec: str) -> tuple[str, str]:
    """A CSV field read with ``surrogateescape`` decoded again by the chain, with replacement as last resort."""
    if not _SURROGATE.search(value):
        return value, codec
    raw = value.encode(codec, "surrogateescape")
    try:
        return decode_text(raw, skip=(codec,))
    except DecodeFailure:
        return raw.decode(codec, "replace"), codec


def _redecode_strict(value: str, codec: str, forced: str | None) -> tuple[str, str]:
    try:
        raw = value.encode(codec, "surrogateescape")
    except UnicodeEncodeError:
        raise DecodeFailure([codec], None) from None
    if forced is not None:
        raise DecodeFailure([forced], None)
    return decode_text(raw, skip=(codec,))


def _parquet_items(data, source: Source, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    """Rows of a Parquet file (a path or a seekable binary file object)."""
    import pyarrow as pa  # start-up time: only Parquet inputs need pyarrow
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(data)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError, ValueError) as exc:
        yield _fail(source, "corrupt", f"not a readable Parquet file ({type(exc).__name__})")
        return
    if options.text_field not in names:
        yield _fail(source, "missing_text", f"no column `{options.text_field}` (columns: {', '.join(names[:12])}); "
                                            f"choose it with --text-field")
        return
    columns = [options.text_field] + ([options.id_field] if options.id_field in names else [])
    row_number = 0
    try:
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            texts = batch.column(0).to_pylist()
            ids = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
            for text, raw_id in zip(texts, ids):
                row_number += 1
                where = Source(source.path, source.member, row=row_number)
                yield _parquet_row(where, text, raw_id, options, stats)
    except (pa.ArrowException, OSError) as exc:
        yield _fail(Source(source.path, source.member, row=row_number + 1), "corrupt",
                    f"Parquet read failed ({type(exc).__name__}); the rest of the file is skipped")


def _parquet_row(where: Source, text, raw_id, options: ReadOptions, stats: ReadStats) -> Item:
    try:
        record_id = _record_id(raw_id)
    except _BadField as exc:
        return _fail(where, "bad_field", f"{exc} (column `{options.id_field}`)")
    record_id = record_id if record_id is not None else where.key
    codec = None
    if text is None:
        return _fail(where, "missing_text", f"null in column `{options.text_field}`", record_id)
    if isinstance(text, bytes):
        try:
            text, codec = decode_text(text, options.encoding)
        except DecodeFailure as exc:
            return _decode_failure(where, exc, record_id)
    if not isinstance(text, str):
        return _fail(where, "bad_field", f"column `{options.text_field}` has type {type(text).__name__}",
                     record_id)
    item = _check_text(where, record_id, text, codec, options)
    if item.ok:
        stats.encodings[codec or "utf-8"] += 1
    return item


# ----------------------------------------------------------------------------------------------- archives
def unsafe_member_name(name: str) -> str | None:
    """Why a member name is unsafe (absolute path, drive letter, ``..`` component, NUL), or None."""
    norm = name.replace("\\", "/")
    if "\x00" in norm:
        return "NUL character in the member name"
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "absolute member path"
    if ".." in norm.split("/"):
        return "`..` component in the member path"
    return None


def _member_item_stream(data: bytes, name: str, kind: str, source: Source, options: ReadOptions,
                        stats: ReadStats) -> Iterator[Item]:
    if kind == "txt":
        yield _txt_item(data, source, _strip_txt(name), options, stats)
    elif kind == "parquet":
        yield from _parquet_items(io.BytesIO(data), source, options, stats)
    else:
        yield from _table_items(kind, io.BufferedReader(io.BytesIO(data)), source, options, stats)


def _member_kind(name: str, source: Source, options: ReadOptions, stats: ReadStats) -> tuple[str | None, Item | None]:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    if archive_kind(base) is not None:
        return None, _fail(source, "nested_archive", "an archive inside an archive is not read; extract it and "
                                                     "pass it as an input")
    kind = text_kind(base, options.input_format)
    if kind is None or base.startswith("."):
        stats.skip(source.key)
        return None, None
    return kind, None


def _zip_items(path: Path, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    limits = options.limits
    label = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield _fail(Source(label), "corrupt", f"not a readable zip archive ({type(exc).__name__})")
        return
    total = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            source = Source(label, name)
            unsafe = unsafe_member_name(name)
            if unsafe:
                yield _fail(source, "unsafe_path", unsafe)
                continue
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if ftype == stat.S_IFLNK:
                yield _fail(source, "link", "symbolic link member")
                continue
            if ftype and ftype != stat.S_IFREG:
                yield _fail(source, "special_file", f"non-regular member (mode {oct(ftype)})")
                continue
            kind, failure = _member_kind(name, source, options, stats)
            if failure is not None:
                yield failure
            if kind is None:
                continue
            if info.flag_bits & 0x1:
                yield _fail(source, "encrypted", "encrypted member")
                continue
            size = info.file_size
            if size > limits.max_member_bytes:
                yield _fail(source, "member_too_large", f"{size} bytes > max_member_bytes {limits.max_member_bytes}")
                continue
            if size > limits.ratio_min_bytes and size > limits.max_ratio * max(info.compress_size, 1):
                yield _fail(source, "ratio_exceeded", f"{size} bytes from {info.compress_size} compressed "
                                                      f"(ratio > {limits.max_ratio:g})")
                continue
            if total + size > limits.max_total_bytes:
                yield _fail(source, "total_exceeded", f"archive content over max_total_bytes "
                                                      f"{limits.max_total_bytes}")
                continue
            try:
                data = _read_limited(zf.open(info), min(size, limits.max_member_bytes), info.compress_size, limits)
            except _LimitExceeded as exc:
                yield _fail(source, exc.reason, str(exc))
                continue
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
                yield _fail(source, "corrupt", f"cannot read the member ({type(exc).__name__}: bad CRC, "
                                               f"truncated or unsupported compression)")
                continue
            total += len(data)
            yield from _member_item_stream(data, name, kind, source, options, stats)


class _LimitExceeded(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _read_limited(fh: IO[bytes], declared: int, compressed: int, limits: ArchiveLimits) -> bytes:
    """Read a member, refusing more bytes than declared or allowed (sizes in headers can lie)."""
    cap = min(declared, limits.max_member_bytes)
    chunks, got = [], 0
    with fh:
        while True:
            chunk = fh.read(min(MiB, cap + 1 - got))
            if not chunk:
                break
            got += len(chunk)
            if got > cap:
                if got > limits.max_member_bytes:
                    raise _LimitExceeded("member_too_large", f"more than max_member_bytes "
                                                             f"{limits.max_member_bytes} bytes")
                raise _LimitExceeded("corrupt", f"more bytes than the declared size {declared}")
            if got > limits.ratio_min_bytes and got > limits.max_ratio * max(compressed, 1):
                raise _LimitExceeded("ratio_exceeded", f"{got}+ bytes from {compressed} compressed "
                                                       f"(ratio > {limits.max_ratio:g})")
            chunks.append(chunk)
    return b"".join(chunks)


def _decompressed(path: Path) -> IO[bytes]:
    """The tar bytes of ``path``: gzip/bz2/xz by magic number (their readers raise on truncation), else raw."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _tar_items(path: Path, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    limits = options.limits
    label = str(path)
    compressed = max(path.stat().st_size, 1)
    try:
        raw = _decompressed(path)
        # streaming: members in stream order, never seeks, never extracts
        tf = tarfile.open(fileobj=raw, mode="r|")
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        yield _fail(Source(label), "corrupt", f"not a readable tar archive ({type(exc).__name__})")
        return
    last = None
    with tf, raw:
        members = iter(tf)
        while True:
            try:
                member = next(members)
            except StopIteration:
                member = None
                try:  # a truncated gzip/bz2/xz stream only shows at its end: read to the end-of-stream marker
                    while raw.read(MiB):
                        pass
                except (OSError, EOFError, zlib.error, ValueError) as exc:
                    yield _fail(Source(label, last), "corrupt", f"archive truncated after member {last!r} "
                                                               f"({type(exc).__name__})")
                return
            except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
                after = f" after member {last!r}" if last else ""
                yield _fail(Source(label, last), "corrupt", f"tar stream broken{after} ({type(exc).__name__}); the "
                                                           f"rest of the archive is skipped")
                return
            name = member.name
            last = name
            if member.isdir():
                continue
            source = Source(label, name)
            end = member.offset_data + member.size
            if end > limits.max_total_bytes:
                yield _fail(source, "total_exceeded", f"archive content over max_total_bytes {limits.max_total_bytes}; "
                                                      f"the rest of the archive is skipped")
                return
            if end > limits.ratio_min_bytes and end > limits.max_ratio * compressed:
                yield _fail(source, "ratio_exceeded", f"{end} bytes from a {compressed}-byte archive (ratio > "
                                                      f"{limits.max_ratio:g}); the rest of the archive is skipped")
                return
            unsafe = unsafe_member_name(name)
            if unsafe:
                yield _fail(source, "unsafe_path", unsafe)
                continue
            if member.issym() or member.islnk():
                yield _fail(source, "link", "symbolic link member" if member.issym() else "hard link member")
                continue
            if not member.isfile():
                yield _fail(source, "special_file", "device, FIFO or other non-regular member")
                continue
            kind, failure = _member_kind(name, source, options, stats)
            if failure is not None:
                yield failure
            if kind is None:
                continue
            if member.size > limits.max_member_bytes:
                yield _fail(source, "member_too_large", f"{member.size} bytes > max_member_bytes "
                                                        f"{limits.max_member_bytes}")
                continue
            try:
                fh = tf.extractfile(member)
                data = _read_limited(fh, member.size, compressed, ArchiveLimits(
                    limits.max_member_bytes, limits.max_total_bytes, float("inf"), limits.ratio_min_bytes)) \
                    if fh is not None else b""
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                yield _fail(source, "corrupt", f"cannot read the member ({type(exc).__name__}); the rest of the "
                                               f"archive is skipped")
                return
            yield from _member_item_stream(data, name, kind, source, options, stats)
