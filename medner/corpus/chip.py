"""CHIP-2020 task 1 / CMeEE v1: ``text|||start end type|||start end type|||`` one sentence a line.

Fields inside a span block are separated by spaces or tabs; ``end`` is inclusive. Nested and
overlapping spans are kept. A line without ``|||`` (the unlabelled test files) is a record with no
spans, unless it is a JSON record or a ``character tag`` pair: a file of another format, refused. Record id:
``<file stem>:<line>``. CRLF line ends are removed, the text is otherwise untouched.

The released ``train_data.txt`` holds two spans with start > end (lines 6052 and 6422): the default
``on_error="raise"`` stops at line 6052; read it with ``on_error="skip"`` (``--on-error skip``) to drop
exactly those two spans (61,794 of 61,796 kept), which the report lists.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import (TAGGED_CHARACTER, check_path, is_json_record, iter_lines, markup_format,
                                 records_from_lines)
from medner.corpus.validate import Checker, RecordProblem, SpanProblem
from medner.errors import CorpusError
from medner.types import Record

FORMAT = "chip"
SEP = "|||"


def _refuse_other_formats(line: str, where: str) -> None:
    """A line without spans is an unlabelled sentence, unless it is a line of another format read as chip by mistake:
    a JSON record (jsonl, ccks2019, cmedqaner, a CMeEE array) or a `character tag` pair (bio)."""
    if is_json_record(line):
        raise RecordProblem("this line is JSON, not `text|||start end type|||`", kind="wrong_format", where=where,
                            fix="read the file with the --format (`data.format`) of its corpus: jsonl, ccks2019, "
                                "cmedqaner or cmeee")
    if TAGGED_CHARACTER.fullmatch(line.strip()):
        raise RecordProblem("this line is a `character tag` pair, not `text|||start end type|||`", kind="wrong_format",
                            where=where, fix="read the file with --format bio (`data.format: bio`)")


def _refuse_other_file_formats(path: Path, encoding: str) -> None:
    """A file whose first lines are another format's markup (:func:`markup_format`: a CMeEE JSON array, JSON
    lines, `character tag` lines) is refused as a whole, whatever ``on_error`` says: read as chip, each of its
    lines would become a record of markup."""
    lines = (line for _, line in iter_lines(path, encoding) if isinstance(line, str))
    found = markup_format(lines)
    if found is not None:
        what, fmt = found
        raise CorpusError(f"this file is {what}, not `text|||start end type|||` lines", where=str(path),
                          field="format", fix=f"read it with the --format (`data.format`) of its corpus: {fmt}")


def read_chip(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Stream one record per non-blank line (a file of another format's markup is refused first)."""

    def parse(line: str, where: str, number: int) -> Record:
        if SEP not in line:
            _refuse_other_formats(line, where)
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

    def records() -> Iterator[Record]:
        check_path(path)
        _refuse_other_file_formats(path, encoding)
        yield from records_from_lines(path, encoding, checker, parse)

    return records()
