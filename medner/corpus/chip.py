"""CHIP-2020 task 1 / CMeEE v1: ``text|||start end type|||start end type|||`` one sentence a line.

Fields inside a span block are separated by spaces or tabs; ``end`` is inclusive. Nested and
overlapping spans are kept. A line without ``|||`` (the unlabelled test files) is a record with no
spans. Record id: ``<file stem>:<line>``. CRLF line ends are removed, the text is otherwise untouched.

The released ``train_data.txt`` holds two spans with start > end (lines 6052 and 6422): the default
``on_error="raise"`` stops at line 6052; read it with ``on_error="skip"`` (``--on-error skip``) to drop
exactly those two spans (61,794 of 61,796 kept), which the report lists.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import records_from_lines
from medner.corpus.validate import Checker, SpanProblem
from medner.types import Record

FORMAT = "chip"
SEP = "|||"


def read_chip(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Stream one record per non-blank line."""

    def parse(line: str, where: str, number: int) -> Record:
        text, *blocks = line.split(SEP)
        spans = []
        for index, block in enumerate(blocks):
            if not block.strip():
                continue
            span_where = f"{where} span {index}"
            try:
                fields = block.split()
                if len(fields) != 3:
                    raise SpanProblem(f"expected `start end type`, got {len(fields)} field(s)", kind="bad_span",
                                      where=span_where, field="span",
                                      fix="write each span as `start end type` between `|||`")
                spans.append(checker.span(text, fields[0], fields[1], fields[2], where=span_where,
                                          inclusive=True))
            except SpanProblem as exc:
                checker.drop_span(exc)
        meta = {"format": FORMAT, "file": path.name, "line": number}
        return Record(f"{path.stem}:{number}", text, (), meta).with_spans(spans)

    return records_from_lines(path, encoding, checker, parse)
