"""ChineseBLUE cMedQANER: JSON lines ``{text, mention_data[{mention, offset, type}]}``.

The span is ``text[offset:offset+len(mention)]`` (``offset`` may be a string of digits). A case-only
difference between ``mention`` and the text is accepted and counted (``report.case_mismatches``);
any other difference (the data has off-by-one offsets) is a span error under the ``on_error`` policy.
Record id: ``id`` if present, else ``<file stem>:<line>``. The char-BIO ``.txt`` files read with ``bio``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import json_object, parse_json_line, records_from_lines
from medner.corpus.validate import Checker, RecordProblem, SpanProblem, as_int, require
from medner.types import Record

FORMAT = "cmedqaner"


def read_cmedqaner(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Stream one record per non-blank line."""

    def parse(line: str, where: str, number: int) -> Record:
        obj = json_object(parse_json_line(line, where), where)
        if "mention_data" not in obj and "spans" in obj:
            raise RecordProblem("this record has `spans`, not `mention_data`: the project's jsonl, not cMedQANER",
                                kind="wrong_format", where=where, fix="read the file with --format jsonl "
                                                                      "(`data.format: jsonl`)")
        text = require(obj, "text", str, where=where)
        mentions = require(obj, "mention_data", list, where=where, default=[])
        spans = []
        for index, ent in enumerate(mentions):
            span_where = f"{where} mention {index}"
            try:
                if not isinstance(ent, dict):
                    raise SpanProblem(f"expected a mention object, got {type(ent).__name__}", kind="bad_type",
                                      where=span_where, field="mention_data", fix="write mentions as objects")
                mention = require(ent, "mention", str, where=span_where, level=SpanProblem)
                start = as_int(ent.get("offset"), "offset", span_where, show_text=checker.show_text)
                spans.append(checker.span(text, start, start + len(mention), ent.get("type"), where=span_where,
                                          names=("offset", "offset", "type"), mention=mention))
            except SpanProblem as exc:
                checker.drop_span(exc)
        meta = {k: v for k, v in obj.items() if k not in ("text", "mention_data", "id")}
        meta.update({"format": FORMAT, "file": path.name, "line": number})
        rid = str(obj["id"]) if obj.get("id") is not None else f"{path.stem}:{number}"
        return Record(rid, text, (), meta).with_spans(spans)

    return records_from_lines(path, encoding, checker, parse)
