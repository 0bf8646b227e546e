"""Byte-level input shared by the readers: encodings, exact line numbers, decode errors.

Lines are split on ``\\n`` only (a ``\\r`` before it is removed, any other ``\\r`` is kept), so line
numbers match what an editor shows and no Unicode line separator inside a record splits it.
A UTF-8 byte-order mark at the start of a file is dropped; default encoding is UTF-8.
"""
from __future__ import annotations

import codecs
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from medner.corpus.validate import SKIP_FIX, Checker, RecordProblem
from medner.decoding import AUTO, DecodeFailure, detect_and_decode, detect_stream_encoding, utf8_declared_gb
from medner.errors import CorpusError, location
from medner.types import Record

logger = logging.getLogger(__name__)

_BOM = "\ufeff"
SAMPLE_BYTES = 1 << 20  # how much of a line-based file picks its codec when none is given


def check_encoding(encoding: str | None) -> str:
    """The codec name to use: ``None`` (or ``auto``) means detection (:mod:`medner.decoding`: BOM, UTF-16,
    UTF-8, GB18030); an unknown name is a :class:`CorpusError`."""
    if encoding is None or encoding == AUTO:
        return AUTO
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}", field="encoding",
                          fix="use a Python codec name such as utf-8, gb18030 or utf-16") from None
    return "utf-8" if codec == "utf-8-sig" else codec  # the readers drop a leading BOM themselves


def check_path(path: Path, *, want: str = "file") -> Path:
    """``path`` if it exists as ``want`` ("file", "dir" or "any"), else :class:`CorpusError`."""
    if not path.exists():
        raise CorpusError("no such file or folder", where=str(path), fix="check the path")
    if want == "file" and path.is_dir():
        raise CorpusError("expected a file, found a folder", where=str(path),
                          fix="pass the corpus file itself, or choose a folder format (brat, ccks2017)")
    if not path.is_dir() and not path.is_file():
        raise CorpusError("not a regular file (a device, FIFO or socket)", where=str(path),
                          fix="pass a corpus file or folder")
    if want == "dir" and not path.is_dir():
        raise CorpusError("expected a folder", where=str(path), fix="pass the folder holding the documents")
    return path


def decode_error(exc: UnicodeDecodeError, encoding: str, where: str, *, column: int | None = None,
                 level: type[CorpusError] = RecordProblem) -> CorpusError:
    """A one-line error for undecodable bytes that names the encoding tried and suggests another."""
    bad = exc.object[exc.start:min(exc.end, exc.start + 2)]  # the offending byte(s) only: never a whole character
    col = f" at byte column {column}" if column is not None else f" at byte offset {exc.start}"
    other = "gb18030" if encoding.replace("_", "-") in ("utf-8", "utf-8-sig") else "utf-8"
    message = f"cannot decode bytes {bad.hex(' ')}{col} as {encoding} ({exc.reason})"
    fix = f"pass the file's encoding, e.g. `encoding: {other}` in the config or `--encoding {other}`"
    if level is RecordProblem:
        return RecordProblem(message, kind="undecodable", where=where, field="encoding", fix=fix)
    return level(message, where=where, field="encoding", fix=fix)


def refuse_utf8_as_gb(data: bytes, encoding: str, where: str) -> None:
    """A :class:`CorpusError` when bytes given a GB codec are UTF-8 (:func:`medner.decoding.utf8_declared_gb`):
    decoded as declared, every Chinese character would be garbled without a decode error."""
    if utf8_declared_gb(data, encoding):
        raise CorpusError(f"the file is UTF-8, not {encoding}: read as {encoding} every Chinese character would be "
                          "garbled", where=where, field="encoding",
                          fix="leave the encoding out (it is detected) or pass `encoding: utf-8` / `--encoding utf-8`")


def decode_text(data: bytes, encoding: str, where: str, *,
                level: type[CorpusError] = CorpusError) -> str:
    """Decode a whole file (BOM dropped; ``auto``: the first codec of the detection chain that decodes it all);
    errors name the line of the bad bytes; UTF-8 given a GB codec is refused (:func:`refuse_utf8_as_gb`)."""
    if encoding == AUTO:
        try:
            return detect_and_decode(data)[0]
        except DecodeFailure:
            encoding = "utf-8"  # report where UTF-8 fails
    else:
        refuse_utf8_as_gb(data, encoding, where)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise decode_error(exc, encoding, f"{where}:{line}", column=column, level=level) from None
    return text[1:] if text.startswith(_BOM) else text


def _byte_lines_ok(encoding: str) -> bool:
    """Whether ``\\n`` bytes are line ends in this codec (false for UTF-16/32)."""
    return not encoding.startswith(("utf-16", "utf-32"))


def iter_lines(path: Path, encoding: str) -> Iterator[tuple[int, str | RecordProblem]]:
    """Yield ``(line_number, line)`` without the line end; an undecodable line yields the problem.

    The caller decides (per ``on_error``) whether a :class:`RecordProblem` is raised or skipped. With ``auto``
    the codec comes from the file's first MiB (:func:`medner.decoding.detect_stream_encoding`), and a UTF-8 line
    that does not decode is tried as GB18030, as the batch annotator does.
    """
    fallback = None
    if encoding == AUTO:
        with open(path, "rb") as handle:
            encoding = detect_stream_encoding(handle.read(SAMPLE_BYTES), None)
        encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        fallback = "gb18030" if encoding == "utf-8" else None
    else:
        with open(path, "rb") as handle:
            refuse_utf8_as_gb(handle.read(SAMPLE_BYTES), encoding, str(path))
    if not _byte_lines_ok(encoding):
        text = decode_text(path.read_bytes(), encoding, str(path))
        for number, line in enumerate(text.split("\n"), 1):
            yield number, line[:-1] if line.endswith("\r") else line
        return
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                try:
                    if fallback is None:
                        raise
                    line = raw.decode(fallback)
                except UnicodeDecodeError:
                    yield number, decode_error(exc, encoding, location(path, number), column=exc.start + 1)
                    continue
            if number == 1 and line.startswith(_BOM):
                line = line[1:]
            yield number, line


def is_json_record(line: str) -> bool:
    """Whether a line is a JSON object or array (a trailing comma allowed, as inside a JSON array file): a corpus
    record, where plain text or another format was expected."""
    stripped = line.strip().rstrip(",")
    if stripped[:1] not in ("{", "["):
        return False
    try:
        return isinstance(json.loads(stripped), (dict, list))
    except ValueError:
        return False


SNIFF_LINES = 20  # how many non-blank lines at the start of a file show its format
SNIFF_MIN_LINES = 5  # fewer lines than this are judged by their shape only when it cannot be text (JSON records)
_JSON_START = re.compile(r'[\[{]\s*(?:[\[{"].*)?')  # `[`, `{`, `[{"text": ...`, `{"id": ...`
_JSON_MEMBER = re.compile(r'"(?:[^"\\]|\\.)*"\s*:.*|[\[\]{}],?')  # `"key": value` and bracket lines
TAGGED_CHARACTER = re.compile(r"\S[ \t]+(?:O|[BIESM][-_]\S+)")  # `好 O`, `发 B-sym`, `热 I_症状`: bio


def _json_value(line: str):
    """The JSON value of a line (a trailing comma allowed), or None."""
    stripped = line.strip().rstrip(",")
    if stripped[:1] not in ("{", "["):
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def markup_format(lines: Iterable[str]) -> tuple[str, str] | None:
    """What the first non-blank ``lines`` of a file are when they are another corpus format's markup, where text
    lines (or ``text|||spans``) were expected: ``(what, formats to read it with)``, else None.

    Most lines JSON objects: records one a line (jsonl, ccks2019, cmedqaner); a first line that is a JSON list of
    objects, or ``[`` / ``{`` opening a pretty-printed document (or, over 5 lines or more, most lines ``"key":
    value``): a JSON document (cmeee); over 5 lines or more, most lines ``character tag`` with an ``O`` among them:
    bio. A few short lines such as ``血型 O`` or ``[1]`` stay text."""
    sample = [line.strip() for line in itertools.islice((x for x in lines if x.strip()), SNIFF_LINES)]
    if not sample:
        return None
    many = len(sample) >= SNIFF_MIN_LINES

    def most(test: Callable[[str], object]) -> bool:
        return sum(1 for line in sample if test(line)) * 2 > len(sample)

    if most(lambda line: isinstance(_json_value(line), dict)):
        return "JSON records, one a line", "jsonl, ccks2019 or cmedqaner"
    first = _json_value(sample[0])
    if (isinstance(first, list) and first and all(isinstance(item, dict) for item in first)) \
            or (first is None and _JSON_START.fullmatch(sample[0])) or (many and most(_JSON_MEMBER.fullmatch)):
        return "a JSON document", "cmeee"
    if many and most(TAGGED_CHARACTER.fullmatch) and any(line.endswith(" O") or line.endswith("\tO")
                                                         for line in sample):
        return "`character tag` lines", "bio"
    return None


def parse_json_line(line: str, where: str, *, hint: str | None = None):
    """``json.loads(line)`` or :class:`RecordProblem` naming the column."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        fix = hint or f"repair the line (is it truncated?) or {SKIP_FIX}"
        if "|||" in line and not hint:  # a CHIP / CMeEE v1 line: `text|||start end type|||`
            fix = "this line looks like `text|||start end type|||`: read the file with --format chip"
        raise RecordProblem(f"invalid JSON: {exc.msg} at column {exc.colno}", kind="bad_json", where=where,
                            fix=fix) from None


def json_object(obj, where: str) -> dict:
    """``obj`` if it is a JSON object, else :class:`RecordProblem`."""
    if not isinstance(obj, dict):
        fix = "write one JSON object per line"
        if isinstance(obj, list):
            fix += "; for a file holding one JSON array of records (CMeEE) use --format cmeee"
        raise RecordProblem(f"expected a JSON object, got {type(obj).__name__}", kind="bad_type", where=where,
                            fix=fix)
    return obj


def records_from_lines(path: Path, encoding: str, checker: Checker,
                       parse: Callable[[str, str, int], Record]) -> Iterator[Record]:
    """Drive a one-record-per-line reader: blank lines are ignored, problems go through ``checker``.

    ``parse(line, where, line_number)`` returns the record or raises a :class:`CorpusError`.
    """
    check_path(path)
    checker.report.files += 1
    content = False
    for number, line in iter_lines(path, encoding):
        where = location(path, number)
        try:
            if isinstance(line, CorpusError):
                raise line
            if not line.strip():
                continue
            content = True
            record = parse(line, where, number)
        except CorpusError as exc:
            content = True
            checker.drop_record(exc)
            continue
        yield record
    if not content:
        note_empty(path, checker)


def note_empty(path: Path | str, checker: Checker) -> None:
    """Count and log an empty input: it yields zero records and is not an error."""
    checker.report.empty_files += 1
    logger.warning("%s: empty input, no records read", path)


__all__ = ["check_encoding", "check_path", "decode_error", "decode_text", "iter_lines",
           "json_object", "markup_format", "note_empty", "parse_json_line", "records_from_lines"]
