"""CCKS 2019 Yidu-S4K: JSON lines (UTF-8, BOM accepted), ``end_pos`` exclusive.

``{"originalText": str, "entities": [{"label_type", "start_pos", "end_pos", "overlap"?}]}``.
Record id: the ``id`` field if present, else ``<file stem>:<line>``; other top-level keys go to ``meta``.
A line without ``entities`` is an unlabelled record.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import json_object, parse_json_line, records_from_lines
from medner.corpus.validate import Checker, SpanProblem, require
from medner.types import Record

FORMAT = "ccks2019"
_NAMES = ("start_pos", "end_pos", "label_type")


def read_ccks2019(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Stream one record per non-blank line."""

    def parse(line: str, where: str, number: int) -> Record:
        obj = json_object(parse_json_line(line, where), where)
        text = require(obj, "originalText", str, where=where)
        entities = require(obj, "entities", list, where=where, default=[])
        spans = []
        for index, ent in enumerate(entities):
            span_where = f"{where} entity {index}"
            try:
                if not isinstance(ent, dict):
                    raise SpanProblem(f"expected an entity object, got {type(ent).__name__}", kind="bad_type",
                                      where=span_where, field="entities", fix="write entities as JSON objects")
                spans.append(checker.span(text, ent.get("start_pos"), ent.get("end_pos"), ent.get("label_type"),
                                          where=span_where, names=_NAMES))
            except SpanProblem as exc:
                checker.drop_span(exc)
        record_id = obj.get("id")
        meta = {k: v for k, v in obj.items() if k not in ("originalText", "entities", "id")}
        meta.update({"format": FORMAT, "file": path.name, "line": number})
        rid = str(record_id) if record_id is not None else f"{path.stem}:{number}"
        return Record(rid, text, (), meta).with_spans(spans)

    return records_from_lines(path, encoding, checker, parse)
