"""The project's own corpus format: JSON lines, one record a line, UTF-8.

``{"id": str, "text": str, "spans": [{"start": int, "end": int, "label": str, "code"?: str,
"score"?: float, "source"?: str, "name"?: str, "match"?: str, "link_score"?: float,
"text"?: str}], "meta": {...}}`` with ``end`` exclusive; a span's
``text``, when present, must equal ``text[start:end]``. ``id`` defaults to ``<file stem>:<line>``,
``spans`` to ``[]`` and ``meta`` to ``{}``. Unknown keys are errors (they would be lost silently). Optional span
keys without a value are left out when writing (never written as ``null``; ``null`` reads as absent); scores
are rounded by :func:`medner.types.round_score`.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from medner.corpus.lines import json_object, parse_json_line, records_from_lines
from medner.corpus.validate import Checker, ReadReport, RecordProblem, SpanProblem, name_of, require
from medner.errors import CorpusError
from medner.files import atomic_write
from medner.types import Record, Span

RECORD_KEYS = ("id", "text", "spans", "meta")
SPAN_KEYS = ("start", "end", "label", "code", "name", "match", "link_score", "score", "source", "text")


def record_to_json(record: Record) -> dict[str, Any]:
    """A JSON-ready dict; every span carries its mention as ``text`` (checked on reading)."""
    return {
        "id": record.id,
        "text": record.text,
        "spans": [span.to_dict(record.text) for span in record.spans],
        "meta": dict(record.meta),
    }


def record_from_json(obj: Mapping[str, Any], *, where: str = "<input>", default_id: str | None = None) -> Record:
    """Parse one record dict strictly; any problem raises :class:`CorpusError` naming ``where``."""
    return _record_from_json(json_object(obj, where), where, Checker("raise", ReadReport()), default_id)


def _record_from_json(obj: Mapping[str, Any], where: str, checker: Checker, default_id: str | None) -> Record:
    unknown = sorted(set(obj) - set(RECORD_KEYS))
    if unknown:
        key = name_of(unknown[0], checker.show_text)
        raise RecordProblem(f"unknown key {key}", kind="unknown_field", where=where,
                            field=unknown[0] if key == repr(unknown[0]) else None,
                            fix="jsonl records have keys id, text, spans, meta; for another layout pass its "
                                "--format")
    record_id = require(obj, "id", (str, int), where=where, default=default_id)
    if record_id is None:
        raise RecordProblem("missing field 'id'", kind="missing_field", where=where, field="id",
                            fix="add `id` to every record")
    text = require(obj, "text", str, where=where)
    raw_spans = require(obj, "spans", list, where=where, default=[])
    meta = require(obj, "meta", dict, where=where, default={})
    spans = []
    for index, raw in enumerate(raw_spans):
        span_where = f"{where} span {index}"
        try:
            spans.append(_span_from_json(raw, text, span_where, checker))
        except SpanProblem as exc:
            checker.drop_span(exc)
    return Record(str(record_id), text, (), meta).with_spans(spans)


def _span_from_json(raw: Any, text: str, where: str, checker: Checker) -> Span:
    if not isinstance(raw, dict):
        raise SpanProblem(f"expected a span object, got {type(raw).__name__}", kind="bad_type", where=where,
                          field="spans", fix='write spans as {"start": .., "end": .., "label": ..}')
    unknown = sorted(set(raw) - set(SPAN_KEYS))
    if unknown:
        key = name_of(unknown[0], checker.show_text)
        raise SpanProblem(f"unknown span key {key}", kind="unknown_field", where=where,
                          field=unknown[0] if key == repr(unknown[0]) else None,
                          fix=f"span keys are {', '.join(SPAN_KEYS)}")
    span = checker.span(text, raw.get("start"), raw.get("end"), raw.get("label"), where=where, mention=raw.get("text"),
                        mention_field="text", case_ok=False)
    code = require(raw, "code", str, where=where, level=SpanProblem, default=None)
    score = require(raw, "score", (int, float), where=where, level=SpanProblem, default=None)
    source = require(raw, "source", str, where=where, level=SpanProblem, default=None)
    name = require(raw, "name", str, where=where, level=SpanProblem, default=None)
    match = require(raw, "match", str, where=where, level=SpanProblem, default=None)
    link_score = require(raw, "link_score", (int, float), where=where, level=SpanProblem, default=None)
    return Span(span.start, span.end, span.label, code=code, score=score, source=source, name=name, match=match,
                link_score=link_score)


def read_jsonl(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Stream records from a jsonl file."""
    stem = path.stem

    def parse(line: str, where: str, number: int) -> Record:
        hint = None
        if number == 1 and line.lstrip().startswith("["):
            hint = "this looks like a JSON array: try --format cmeee"
        obj = json_object(parse_json_line(line, where, hint=hint), where)
        return _record_from_json(obj, where, checker, f"{stem}:{number}")

    return records_from_lines(path, encoding, checker, parse)


STDOUT = "-"  # the path that means standard output


def write_jsonl(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write records as UTF-8 jsonl atomically (:func:`medner.files.atomic_write`); returns the number written.

    If ``records`` raises part-way (e.g. a reader error), nothing is left at ``path``. ``-`` writes to standard
    output as the records come (UTF-8 whatever the locale).
    """
    count = 0

    def write(handle) -> None:
        nonlocal count
        for record in records:
            try:
                line = json.dumps(record_to_json(record), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise CorpusError(f"cannot write record as JSON ({exc})", where=f"record {record.id}",
                                  field="meta", fix="keep meta values to str, numbers, lists and dicts") from None
            handle.write((line + "\n").encode("utf-8"))
            count += 1

    if str(path) == STDOUT:
        sys.stdout.flush()
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return count
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    return count
