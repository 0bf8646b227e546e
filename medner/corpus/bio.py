"""Column files with one token (usually one character) a line: ``token TAG``, blank line between records.

Columns are separated by spaces or tabs; the first column is the token, the last the tag (middle
columns are ignored). A line that starts with a space or tab has that whitespace character as its token
(``\\u3000`` is an ordinary token). Tags are ``O`` or ``P-label`` / ``P_label`` with P one of
B, I, E, S, M (BIO, BIOES/IOBES, BMES) or L, U (BILOU). ``-DOCSTART-`` lines separate records.
Tokens are concatenated without separator to form the text. Decoding follows conlleval: an I/M/E tag
that does not continue an open entity of the same type starts a new one (an E/L there is a one-token
entity); each such repair is counted in ``report.invalid_tag_sequences``.
Record id: ``<file stem>:<first line of the record>``.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import check_path, iter_lines, note_empty
from medner.corpus.validate import Checker, RecordProblem, name_of
from medner.errors import CorpusError, location
from medner.types import Record, Span

FORMAT = "bio"
_TAG = re.compile(r"^([BIEMSLU])[-_](\S+)$")
_COLUMNS = re.compile(r"[ \t]+")
_DOCSTART = "-DOCSTART-"
_TAG_SHAPE = re.compile(r"[A-Za-z]{1,3}[-_]\S{1,30}")  # what a tag looks like: shown in messages as is


def parse_tag(tag: str, where: str, show_text: bool = False) -> tuple[str | None, str | None]:
    """``"B-dis"`` -> ``("B", "dis")``; ``"O"`` -> ``(None, None)``; anything else raises (quoting the tag only
    when it has the shape of one, or with ``show_text``: the column may hold record text)."""
    if tag == "O":
        return None, None
    match = _TAG.match(tag)
    if not match:
        raise RecordProblem(f"unknown tag {name_of(tag, show_text, _TAG_SHAPE)}", kind="bad_tag", where=where,
                            field="tag",
                            fix="use O or B-/I-/E-/S-/M- (or _) followed by the type")
    return match.group(1), match.group(2)


def tags_to_spans(tags: list[tuple[str | None, str | None]]) -> tuple[list[tuple[int, int, str]], int]:
    """Decode parsed tags to token spans ``(start, end_exclusive, label)``; also return the repair count."""
    spans: list[tuple[int, int, str]] = []
    invalid = 0
    open_start: int | None = None
    open_label: str | None = None

    def close(end: int) -> None:
        nonlocal open_start, open_label
        if open_start is not None:
            spans.append((open_start, end, open_label))
        open_start = open_label = None

    for i, (prefix, label) in enumerate(tags):
        if prefix is None:
            close(i)
        elif prefix == "B":
            close(i)
            open_start, open_label = i, label
        elif prefix in "SU":
            close(i)
            spans.append((i, i + 1, label))
        elif prefix in "IM":
            if open_start is None or open_label != label:
                invalid += 1
                close(i)
                open_start, open_label = i, label
        else:  # E, L
            if open_start is None or open_label != label:
                invalid += 1
                close(i)
                open_start, open_label = i, label
            close(i + 1)
    close(len(tags))
    return spans, invalid


def _split(line: str, where: str) -> tuple[str, str]:
    if line[0] in " \t":
        token, fields = line[0], _COLUMNS.split(line[1:].strip(" \t"))
        fields = [token, *fields] if fields != [""] else [token]
    else:
        fields = _COLUMNS.split(line.rstrip(" \t"))
    if len(fields) < 2:
        raise RecordProblem("expected `token TAG` (space or tab between)", kind="bad_line", where=where,
                            field="tag", fix="give every token line a tag, separate records by a blank line")
    return fields[0], fields[-1]


def read_bio(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Yield one record per blank-line-separated block."""
    check_path(path)
    checker.report.files += 1
    block: list[tuple[int, str | CorpusError]] = []
    seen = False
    for number, line in iter_lines(path, encoding):
        boundary = isinstance(line, str) and (not line.strip(" \t") or line.startswith(_DOCSTART))
        if not boundary:
            block.append((number, line))
            continue
        if block:
            seen = True
            yield from _emit(block, path, checker)
            block = []
    if block:
        seen = True
        yield from _emit(block, path, checker)
    if not seen:
        note_empty(path, checker)


def _emit(block, path: Path, checker: Checker) -> Iterator[Record]:
    try:
        record = _record(block, path, checker)
    except CorpusError as exc:
        checker.drop_record(exc)
        return
    yield record


def _record(block, path: Path, checker: Checker) -> Record:
    tokens: list[str] = []
    tags = []
    for number, line in block:
        if isinstance(line, CorpusError):
            raise line
        where = location(path, number)
        token, tag = _split(line, where)
        tokens.append(token)
        tags.append(parse_tag(tag, where, checker.show_text))
    token_spans, invalid = tags_to_spans(tags)
    checker.report.invalid_tag_sequences += invalid
    starts = [0]
    for token in tokens:
        starts.append(starts[-1] + len(token))
    spans = [Span(starts[s], starts[e], label) for s, e, label in token_spans]
    first = block[0][0]
    meta = {"format": FORMAT, "file": path.name, "line": first}
    return Record(f"{path.stem}:{first}", "".join(tokens), (), meta).with_spans(spans)
