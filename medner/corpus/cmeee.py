"""CMeEE-V2: one JSON array of ``{text, entities[{start_idx, end_idx, type, entity}]}``, ``end_idx`` inclusive.

``entity`` must equal the covered text (case-only differences accepted and counted). A record without
``entities`` (or with an empty list: the test file) has no spans. The whole file is read at once (it is
one JSON value) but records are decoded and yielded one at a time, with the line each starts on.
Record id: ``id`` if present, else ``<file stem>:<index>`` with the 0-based array index.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import check_path, decode_text, json_object, note_empty
from medner.corpus.validate import Checker, SpanProblem, require
from medner.errors import CorpusError, location
from medner.types import Record

FORMAT = "cmeee"
_NAMES = ("start_idx", "end_idx", "type")
_WS = " \t\r\n"


def _bad_json(path: Path, exc: json.JSONDecodeError) -> CorpusError:
    return CorpusError(f"invalid JSON: {exc.msg} at column {exc.colno}", where=location(path, exc.lineno),
                       fix="repair the file (is it truncated?); a CMeEE file is one JSON array")


def _skip_ws(doc: str, pos: int) -> int:
    while pos < len(doc) and doc[pos] in _WS:
        pos += 1
    return pos


def read_cmeee(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Yield one record per array element."""
    check_path(path)
    checker.report.files += 1
    doc = decode_text(path.read_bytes(), encoding, str(path))
    pos = _skip_ws(doc, 0)
    if pos == len(doc):
        note_empty(path, checker)
        return
    if doc[pos] != "[":
        line = doc.count("\n", 0, pos) + 1
        hint = "one JSON object a line: try --format jsonl, ccks2019 or cmedqaner" if doc[pos] == "{" else \
            "check the --format"
        raise CorpusError("expected a JSON array", where=location(path, line), fix=hint)
    decoder = json.JSONDecoder()
    pos = _skip_ws(doc, pos + 1)
    line, counted = 1, 0  # newlines counted incrementally up to `counted`
    index = 0
    if pos < len(doc) and doc[pos] == "]":
        return
    while True:
        line += doc.count("\n", counted, pos)
        counted = pos
        where = f"{location(path, line)} (record {index})"
        try:
            obj, pos = decoder.raw_decode(doc, pos)
        except json.JSONDecodeError as exc:
            raise _bad_json(path, exc) from None
        try:
            record = _record(obj, path, index, line, where, checker)
        except CorpusError as exc:
            checker.drop_record(exc)
        else:
            yield record
        index += 1
        pos = _skip_ws(doc, pos)
        if pos < len(doc) and doc[pos] == ",":
            pos = _skip_ws(doc, pos + 1)
            continue
        if pos < len(doc) and doc[pos] == "]":
            break
        try:
            json.loads(doc)  # let the parser describe the problem with its line and column
        except json.JSONDecodeError as exc:
            raise _bad_json(path, exc) from None
        raise CorpusError("expected ',' or ']' after a record", where=location(path, line),  # pragma: no cover
                          fix="repair the file")
    if _skip_ws(doc, pos + 1) != len(doc):
        raise CorpusError("extra data after the JSON array", where=location(path, doc.count("\n", 0, pos) + 1),
                          fix="a CMeEE file holds exactly one JSON array")


def _record(obj, path: Path, index: int, line: int, where: str, checker: Checker) -> Record:
    obj = json_object(obj, where)
    text = require(obj, "text", str, where=where)
    entities = require(obj, "entities", list, where=where, default=[])
    spans = []
    for number, ent in enumerate(entities):
        span_where = f"{where} entity {number}"
        try:
            if not isinstance(ent, dict):
                raise SpanProblem(f"expected an entity object, got {type(ent).__name__}", kind="bad_type",
                                  where=span_where, field="entities", fix="write entities as JSON objects")
            spans.append(checker.span(text, ent.get("start_idx"), ent.get("end_idx"), ent.get("type"),
                                      where=span_where, names=_NAMES, inclusive=True, mention=ent.get("entity"),
                                      mention_field="entity"))
        except SpanProblem as exc:
            checker.drop_span(exc)
    meta = {k: v for k, v in obj.items() if k not in ("text", "entities", "id")}
    meta.update({"format": FORMAT, "file": path.name, "index": index, "line": line})
    rid = str(obj["id"]) if obj.get("id") is not None else f"{path.stem}:{index}"
    return Record(rid, text, (), meta).with_spans(spans)
