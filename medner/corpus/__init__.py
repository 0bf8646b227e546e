"""Corpus readers: every supported format -> a stream of :class:`~medner.types.Record`.

    >>> for record in read_corpus("train_data.txt", "chip", on_error="skip", report=report): ...

``read_corpus`` dispatches by format name through :data:`READERS`; each reader yields records with
sorted, checked spans (``text[start:end]`` is the mention, ``end`` exclusive) and keeps nested or
overlapping spans. Problems follow ``on_error``: ``"raise"`` (default) raises a one-line
:class:`~medner.errors.CorpusError` naming file, line and field; ``"skip"`` drops the bad span (or the
whole record for record-level problems), counts it in the :class:`ReadReport` and logs a summary.
File-level problems (missing file, a broken JSON array) always raise.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from medner.corpus.bio import read_bio
from medner.corpus.brat import read_brat
from medner.corpus.ccks2017 import read_ccks2017
from medner.corpus.ccks2019 import read_ccks2019
from medner.corpus.chip import read_chip
from medner.corpus.cmedqaner import read_cmedqaner
from medner.corpus.cmeee import read_cmeee
from medner.corpus.jsonl import read_jsonl, record_from_json, record_to_json, write_jsonl
from medner.corpus.lines import check_encoding
from medner.corpus.validate import ON_ERROR, SURROGATE, Checker, ReadReport, RecordProblem
from medner.errors import CorpusError, location
from medner.types import Record

Reader = Callable[..., Iterator[Record]]
"""``reader(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]``."""

READERS: dict[str, Reader] = {
    "jsonl": read_jsonl,
    "ccks2019": read_ccks2019,
    "ccks2017": read_ccks2017,
    "chip": read_chip,
    "cmeee": read_cmeee,
    "cmedqaner": read_cmedqaner,
    "brat": read_brat,
    "bio": read_bio,
}


def formats() -> list[str]:
    """Names accepted by ``read_corpus(format=...)``."""
    return list(READERS)


def files_read(path: str | os.PathLike, format: str) -> list[Path]:
    """The paths reading ``path`` as ``format`` opens, for refusing an output over one of them: a brat file (any
    suffix: the reader takes its stem) means its ``N.txt`` / ``N.ann`` pair; any other path (a folder covers what
    is in it) itself."""
    path = Path(path)
    if format == "brat" and not path.is_dir():
        return [path, path.with_suffix(".txt"), path.with_suffix(".ann")]
    return [path]


def read_corpus(path: str | os.PathLike, format: str = "jsonl", *, encoding: str | None = None,
                on_error: str = "raise", report: ReadReport | None = None, show_text: bool = False) -> Iterator[Record]:
    """Stream the records of ``path`` read as ``format``.

    ``encoding`` None (or ``auto``) detects it as the batch annotator does (:mod:`medner.decoding`: BOM, UTF-16,
    UTF-8, GB18030); ``report``, if given, is filled in while
    iterating and complete once the iterator is exhausted. Arguments are checked immediately.
    Error messages, the report and logs carry no record text (offsets, lengths, digests and the file/line
    instead); ``show_text=True`` lets them quote short excerpts, for debugging a corpus.
    """
    reader = READERS.get(format)
    if reader is None:
        raise CorpusError(f"unknown corpus format {format!r}", where=str(path), field="format",
                          fix=f"use one of {', '.join(READERS)}")
    if on_error not in ON_ERROR:
        raise CorpusError(f"unknown on_error policy {on_error!r}", field="on_error",
                          fix=f"use one of {', '.join(ON_ERROR)}")
    codec = check_encoding(encoding)
    if not Path(path).exists():
        raise CorpusError("no such file or folder", where=str(path), fix="check the path")
    report = report if report is not None else ReadReport()
    report.path, report.format = str(path), format
    checker = Checker(on_error, report, show_text=show_text)
    return _counted(reader(Path(path), encoding=codec, checker=checker), checker, Path(path))


def _counted(records: Iterator[Record], checker: Checker, path: Path) -> Iterator[Record]:
    """The records, counted; one whose text holds a lone surrogate (a broken ``\\uD8xx`` escape in JSON: no
    Unicode text, and no tokenizer or UTF-8 output takes it) is a problem of that record."""
    report = checker.report
    for record in records:
        bad = SURROGATE.search(record.text)
        if bad is not None:
            checker.drop_record(RecordProblem(
                f"lone surrogate at character {bad.start()} of the text (invalid Unicode)", kind="undecodable",
                where=location(path, record=record.id), field="text",
                fix="write the character itself or its full surrogate pair (\\ud83d\\ude00), or drop the record"))
            continue
        report.records += 1
        report.spans += len(record.spans)
        yield record
    checker.finish()


__all__ = ["READERS", "ReadReport", "Reader", "CorpusError", "files_read", "formats", "read_corpus", "record_from_json",
           "record_to_json", "write_jsonl"]
