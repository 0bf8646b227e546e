"""Readers of the text formats of batch inputs: ``.txt`` (one record per file), JSONL, CSV/TSV and Parquet,
from files or archive members; and the file kinds by suffix.

Hostile input stays one failure: a JSONL line nested too deep for the parser, or with a number too long to
convert, is one ``bad_json`` item; a JSONL line or CSV row longer than a little over ``max_record_bytes`` is one
``too_long`` item, found while reading (never read whole into memory). Failure details never quote record
text: field and column names are shown only when they look like names (:func:`names_for_message`).
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import PurePosixPath
from typing import IO, Iterable, Iterator

from medner.batch.encodings import (MARK, MARK_ERRORS, decode_failure, redecode, redecode_strict, text_errors,
                                    utf8_row_in_gb_file, wrong_encoding)
from medner.batch.items import SURROGATE, Item, MiB, ReadOptions, ReadStats, Source, check_text, fail
from medner.decoding import (DecodeFailure, detect_and_decode, detect_stream_encoding, looks_utf16, sniff_bom,
                             utf8_declared_gb)

_SUFFIX_KIND = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
                ".parquet": "parquet"}


_ARCHIVE_SUFFIXES = ((".tar.gz", "tar"), (".tgz", "tar"), (".tar.bz2", "tar"), (".tbz2", "tar"),
                     (".tar.xz", "tar"), (".txz", "tar"), (".tar", "tar"), (".zip", "zip"))


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


def strip_txt(name: str) -> str:
    return name[:-4] if name.lower().endswith(".txt") else name


def txt_item(data: bytes, source: Source, record_id: str, options: ReadOptions, stats: ReadStats) -> Item:
    if len(data) > options.max_record_bytes:
        return fail(source, "too_long", f"{len(data)} bytes cannot hold <= {options.max_record_chars} characters",
                     record_id)
    try:
        text, codec = detect_and_decode(data, options.encoding)
    except DecodeFailure as exc:
        return decode_failure(source, exc, record_id)
    item = check_text(source, record_id, text, codec, options)
    if item.ok:
        stats.encodings[codec] += 1
    return item


def table_items(kind: str, stream: IO[bytes], source: Source, options: ReadOptions,
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


def _text_lines(stream: IO[bytes], codec: str, source: Source,
                limit: int) -> Iterator[tuple[int, str | Item | None]]:
    """UTF-16 JSONL: decoded lines split on ``\\n`` (None for a line over ``limit`` characters); a line holding an
    undecodable stretch is a failure of its own (:data:`~medner.batch.encodings.MARK`)."""
    reader = io.TextIOWrapper(stream, encoding=codec, errors=MARK_ERRORS, newline="\n")
    number = 0
    try:
        while True:
            line = reader.readline(limit + 2)
            if not line:
                return
            number += 1
            if not line.endswith("\n") and len(line) >= limit + 2:  # too long: drain the rest of the line
                while True:
                    more = reader.readline(MiB)
                    if not more or more.endswith("\n"):
                        break
                yield number, None
                continue
            if MARK in line:
                yield number, fail(Source(source.path, source.member, number), "undecodable",
                                   f"not decodable as {codec} (a broken code unit in this line)")
                continue
            line = line[:-1] if line.endswith("\n") else line
            if number == 1 and line.startswith("\ufeff"):  # a BOM left by a codec named without it (utf-16-le)
                line = line[1:]
            yield number, (line[:-1] if line.endswith("\r") else line)
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
        lines: Iterable[tuple[int, str | bytes | Item | None]] = _text_lines(
            stream, codec, source, options.max_record_bytes + 64 * 1024)
    else:
        lines = _byte_lines(stream, options.max_record_bytes + 64 * 1024)
    for number, line in lines:
        where = Source(source.path, source.member, number)
        if isinstance(line, Item):
            yield line
            continue
        if line is None:
            yield fail(where, "too_long", f"line longer than {options.max_record_bytes} bytes")
            continue
        codec_used = codec
        if isinstance(line, bytes):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                continue
            try:
                line, codec_used = detect_and_decode(line, options.encoding)
            except DecodeFailure as exc:
                yield decode_failure(where, exc)
                continue
        if not line.strip():
            continue
        yield _json_record(line, where, codec_used, options, stats)


def _json_record(line: str, where: Source, codec: str | None, options: ReadOptions, stats: ReadStats) -> Item:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return fail(where, "bad_json", f"invalid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return fail(where, "bad_json", f"JSON nested too deeply to parse ({len(line)} characters)")
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return fail(where, "bad_json", f"JSON value that cannot be converted ({type(exc).__name__})")
    if not isinstance(obj, dict):
        return fail(where, "bad_json", f"expected a JSON object, got {type(obj).__name__}")
    try:
        record_id = _record_id(obj.get(options.id_field))
    except _BadField as exc:
        return fail(where, "bad_field", f"{exc} (field `{options.id_field}`)")
    record_id = record_id or where.key  # an empty id is none (as in a CSV row)
    if options.text_field not in obj:
        return fail(where, "missing_text", f"no field `{options.text_field}` ({names_for_message(obj, 'keys')}); "
                                            f"choose it with --text-field", record_id)
    if obj[options.text_field] is None:
        return fail(where, "missing_text", f"field `{options.text_field}` is null", record_id)
    text = obj[options.text_field]
    if not isinstance(text, str):
        return fail(where, "bad_field", f"field `{options.text_field}` has type {type(text).__name__}, "
                                         f"expected a string", record_id)
    item = check_text(where, record_id, text, codec, options)
    if item.ok:
        stats.encodings[codec or "utf-8"] += 1
    return item


class _RowTooLong(Exception):
    pass


class _BoundedLines:
    """The lines of a text stream for :mod:`csv`, at most ``limit`` characters per CSV row (over several lines
    when a quoted field holds newlines); a longer row raises :class:`_RowTooLong` after :meth:`skip_row`. The
    reader calls :meth:`row_done` after each row, :meth:`skip_row` after a row csv could not parse."""

    def __init__(self, stream: IO[str], limit: int, delimiter: str) -> None:
        self.stream = stream
        self.limit = limit
        self.delimiter = delimiter
        self.used = 0
        self.lines: list[str] = []  # the current row's lines so far (at most `limit` characters)

    def __iter__(self) -> "_BoundedLines":
        return self

    def __next__(self) -> str:
        line = self.stream.readline(self.limit - self.used + 1)
        if not line:
            raise StopIteration
        self.used += len(line)
        self.lines.append(line)
        if self.used > self.limit:
            self.skip_row()
            raise _RowTooLong
        return line

    def skip_row(self) -> None:
        """Read on to the end of the current row, whose start is the lines given to csv since :meth:`row_done`
        (:class:`_RowEnd` follows its quotes: a newline inside a quoted field does not end it)."""
        end = _RowEnd(self.delimiter)
        done = any(end.feed(part) for part in self.lines)
        while not done:
            line = self.stream.readline(MiB)
            if not line:
                break
            done = end.feed(line)
        self.row_done()

    def row_done(self) -> None:
        self.used = 0
        self.lines.clear()


class _RowEnd:
    """Where a CSV row ends, as :mod:`csv` (default dialect, doubled quotes) parses it: at a line end outside a
    quoted field. :meth:`feed` takes the row's text line by line and says whether the row ended in it."""

    START, PLAIN, QUOTED, QUOTE_IN_QUOTED = range(4)

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.state = self.START

    def feed(self, text: str) -> bool:
        at = 0
        while at < len(text):
            state = self.state
            if state == self.QUOTED:  # on to the next quote at once: a long field is not read a character a step
                at = text.find('"', at) + 1
                if at == 0:
                    return False
                self.state = self.QUOTE_IN_QUOTED
                continue
            char = text[at]
            at += 1
            if char in "\r\n":
                return True
            elif state == self.START:
                self.state = self.QUOTED if char == '"' else self.START if char == self.delimiter else self.PLAIN
            elif char == self.delimiter:
                self.state = self.START
            else:  # PLAIN, or a quote closing a quoted field: `""` is a quote inside it, else csv reads on as PLAIN
                self.state = self.QUOTED if state == self.QUOTE_IN_QUOTED and char == '"' else self.PLAIN
        return False


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,39}")


def names_for_message(names, what: str) -> str:
    """Field or column names for an error message, without record text: names that look like identifiers
    (ASCII, no spaces, up to 40 characters) are listed; others (which, in a file without a header row, are a record's
    text) are only counted, with their lengths."""
    names = [str(n) for n in names]
    shown = [n for n in names if _NAME.fullmatch(n)]
    hidden = [n for n in names if not _NAME.fullmatch(n)]
    parts = []
    if shown:
        parts.append(f"{what}: {', '.join(shown[:12])}" + (f" and {len(shown) - 12} more" if len(shown) > 12 else ""))
    if hidden:
        lengths = ", ".join(str(len(n)) for n in hidden[:5]) + (", ..." if len(hidden) > 5 else "")
        parts.append(f"{len(hidden)} other {what} not shown, of {lengths} characters (if they are record text, "
                     f"the header row may be missing)")
    return "; ".join(parts) if parts else f"no {what}"


def _csv_items(stream: IO[bytes], source: Source, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    head = stream.peek(MiB)[:MiB] if hasattr(stream, "peek") else b""
    codec = detect_stream_encoding(head, options.encoding)
    if options.encoding is not None and utf8_declared_gb(head, options.encoding):
        yield wrong_encoding(source, options.encoding)
        return
    delimiter = "\t" if (source.member or source.path).lower().endswith(".tsv") else ","
    errors = text_errors(codec)
    reader_io = io.TextIOWrapper(stream, encoding=codec, errors=errors, newline="")
    lines = _BoundedLines(reader_io, options.max_record_bytes + 64 * 1024, delimiter)
    if csv.field_size_limit() < lines.limit:  # the row limit, not csv's field limit, stops an over-long row
        csv.field_size_limit(lines.limit)
    try:
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError, _RowTooLong) as exc:
            yield fail(source, "bad_row", f"cannot read the header row: {type(exc).__name__.lstrip('_')}")
            return
        lines.row_done()
        header = [h.lstrip("\ufeff").strip() for h in header]
        if options.text_field not in header:
            yield fail(source, "missing_text", f"no column `{options.text_field}` in the header row of "
                                                f"{len(header)} columns ({names_for_message(header, 'columns')}); "
                                                f"choose it with --text-field")
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
            except _RowTooLong:
                yield fail(where, "too_long", f"row longer than {lines.limit} characters")
                continue
            except csv.Error as exc:
                lines.skip_row()
                yield fail(where, "bad_row", f"CSV error near line {reader.line_num}: {exc}")
                continue
            except UnicodeDecodeError as exc:
                yield fail(where, "undecodable", f"not decodable as {codec} ({exc.reason}); the rest of the "
                                                  f"file is skipped")
                return
            lines.row_done()
            if not row or (len(row) == 1 and not row[0].strip() and text_col != 0):
                row_number -= 1  # blank line
                continue
            if errors == MARK_ERRORS and any(MARK in field for field in row):  # id or text: the row fails alone
                readable = id_col is not None and id_col < len(row) and MARK not in row[id_col] and row[id_col]
                yield fail(where, "undecodable", f"not decodable as {codec} (a broken code unit in this row)",
                           row[id_col] if readable else None)
                continue
            record_id = (utf8_row_in_gb_file(redecode(row[id_col], codec)[0], codec, options.encoding)[0]
                         if id_col is not None and id_col < len(row) else None)
            record_id = record_id if record_id else where.key
            if text_col >= len(row):
                yield fail(where, "bad_row", f"row has {len(row)} columns, column `{options.text_field}` is "
                                              f"number {text_col + 1}", record_id)
                continue
            text, codec_used = utf8_row_in_gb_file(row[text_col], codec, options.encoding)
            if SURROGATE.search(text):
                try:
                    text, codec_used = redecode_strict(text, codec, options.encoding)
                except DecodeFailure as exc:
                    yield decode_failure(where, exc, record_id)
                    continue
            item = check_text(where, record_id, text, codec_used, options)
            if item.ok:
                stats.encodings[codec_used] += 1
            yield item
    finally:
        reader_io.detach()


def parquet_items(data, source: Source, options: ReadOptions, stats: ReadStats) -> Iterator[Item]:
    """Rows of a Parquet file (a seekable binary file object)."""
    import pyarrow as pa  # start-up time: only Parquet inputs need pyarrow
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(data)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError, ValueError) as exc:
        yield fail(source, "corrupt", f"not a readable Parquet file ({type(exc).__name__})")
        return
    if options.text_field not in names:
        yield fail(source, "missing_text", f"no column `{options.text_field}` (columns: {', '.join(names[:12])}); "
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
        yield fail(Source(source.path, source.member, row=row_number + 1), "corrupt",
                    f"Parquet read failed ({type(exc).__name__}); the rest of the file is skipped")


def _parquet_row(where: Source, text, raw_id, options: ReadOptions, stats: ReadStats) -> Item:
    try:
        record_id = _record_id(raw_id)
    except _BadField as exc:
        return fail(where, "bad_field", f"{exc} (column `{options.id_field}`)")
    record_id = record_id or where.key  # an empty id is none (as in a CSV row)
    codec = None
    if text is None:
        return fail(where, "missing_text", f"null in column `{options.text_field}`", record_id)
    if isinstance(text, bytes):
        try:
            text, codec = detect_and_decode(text, options.encoding)
        except DecodeFailure as exc:
            return decode_failure(where, exc, record_id)
    if not isinstance(text, str):
        return fail(where, "bad_field", f"column `{options.text_field}` has type {type(text).__name__}",
                     record_id)
    item = check_text(where, record_id, text, codec, options)
    if item.ok:
        stats.encodings[codec or "utf-8"] += 1
    return item
