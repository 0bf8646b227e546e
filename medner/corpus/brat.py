"""brat standoff: a folder of ``N.txt`` + ``N.ann`` (searched recursively), or one ``.txt``/``.ann`` pair.

Only text-bound ``T`` lines are read: ``T1\\tTYPE start end\\tmention`` with ``end`` exclusive on the raw
text (kept as stored, CRLF included). Discontinuous spans (``T1\\tTYPE 0 3;5 8\\t...``) are always counted
in ``report.discontinuous_spans`` and are span errors under the ``on_error`` policy: never silently dropped.
Other line types (A, R, E, N, M, #, *) are ignored. Hidden files (``._N.txt``) and ``__MACOSX/`` metadata (a
folder unpacked from a zip made on a Mac) are passed over, counted in a log line. Record id: the ``.txt`` path
relative to the folder, without suffix.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from medner.corpus.lines import check_path, decode_text, note_empty
from medner.corpus.validate import SKIP_FIX, Checker, RecordProblem, SpanProblem, name_of
from medner.errors import CorpusError, location
from medner.files import not_a_record
from medner.types import Record

FORMAT = "brat"
_OFFSETS = re.compile(r"[0-9 ;]{1,60}")  # fragment offsets: shown in messages as they are
_ID = re.compile(r"[A-Z][0-9]{1,9}")  # an annotation id (T12): shown as is

log = logging.getLogger(__name__)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def read_brat(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Yield one record per ``.txt`` document, in natural order of the relative paths."""
    check_path(path, want="any")
    if path.is_dir():
        root = path
        texts, anns = _documents(root)
        texts.sort(key=lambda p: _natural_key(p.relative_to(root)))
        for ann in sorted(p for p in anns if not p.with_suffix(".txt").is_file()):
            checker.drop_record(RecordProblem("no text file beside the annotations", kind="missing_file",
                                              where=str(ann), field="text", fix="put N.txt beside N.ann"))
    elif path.suffix in (".txt", ".ann"):
        root = path.parent
        texts = [path.with_suffix(".txt")]
    else:
        raise CorpusError(f"brat reads a folder or one N.txt / N.ann pair, not a `{path.suffix}` file", where=str(path),
                          field="format", fix="give the folder (unpack an archive first), or check --format: a CCKS "
                                              "2017 zip is ccks2017")
    checker.report.files += len(texts)
    if not texts:
        note_empty(path, checker)
        return
    for txt in texts:
        try:
            record = _document(txt, root, encoding, checker)
        except CorpusError as exc:
            checker.drop_record(exc)
            continue
        yield record


def _documents(root: Path) -> tuple[list[Path], list[Path]]:
    """The ``.txt`` and ``.ann`` files under ``root``, less hidden ones and ``__MACOSX/`` metadata (a folder
    unpacked from a zip made on a Mac); how many were passed over is logged."""
    found = [p for p in root.rglob("*") if p.suffix in (".txt", ".ann") and p.is_file()]
    files = [p for p in found if not not_a_record(p.relative_to(root).as_posix())]
    if len(files) < len(found):
        log.info("%s: %d hidden or Mac metadata files ignored (dot-files, __MACOSX/)", root, len(found) - len(files))
    return [p for p in files if p.suffix == ".txt"], [p for p in files if p.suffix == ".ann"]


def _document(txt: Path, root: Path, encoding: str, checker: Checker) -> Record:
    ann = txt.with_suffix(".ann")
    if not txt.is_file():
        raise RecordProblem("no text file beside the annotations", kind="missing_file", where=str(ann),
                            field="text", fix="put N.txt beside N.ann")
    if not ann.is_file():
        raise RecordProblem(f"no annotation file {ann.name!r} beside the text", kind="missing_file",
                            where=str(txt), field="annotations",
                            fix="add the .ann file (an empty one for a document without entities)")
    text = decode_text(txt.read_bytes(), encoding, str(txt), level=RecordProblem)
    lines = decode_text(ann.read_bytes(), encoding, str(ann), level=RecordProblem).split("\n")
    spans = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.startswith("T"):
            continue
        where = location(ann, number)
        try:
            spans.append(_text_bound(line, text, where, checker))
        except SpanProblem as exc:
            checker.drop_span(exc)
    rel = txt.relative_to(root).with_suffix("").as_posix()
    meta = {"format": FORMAT, "file": txt.relative_to(root).as_posix()}
    return Record(rel, text, (), meta).with_spans(spans)


def _text_bound(line: str, text: str, where: str, checker: Checker):
    fields = line.split("\t")
    if len(fields) < 2:
        raise SpanProblem("expected `ID<TAB>TYPE start end<TAB>mention`", kind="bad_span", where=where,
                          field="T", fix="write text-bound annotations as brat T lines")
    body = fields[1].split(" ", 1)
    if len(body) != 2 or not body[1].strip():
        raise SpanProblem("expected `TYPE start end` in the second column", kind="bad_span", where=where,
                          field="T", fix="write text-bound annotations as brat T lines")
    label, offsets = body
    mention = fields[2] if len(fields) > 2 else None
    if ";" in offsets:
        checker.report.discontinuous_spans += 1
        shown = name_of(offsets.strip(), checker.show_text, _OFFSETS)
        raise SpanProblem(f"discontinuous span ({shown}) of {name_of(fields[0], checker.show_text, _ID)} is not "
                          "supported",
                          kind="discontinuous", where=where, field="T",
                          fix=f"merge or split the fragments in the .ann, or {SKIP_FIX}")
    parts = offsets.split()
    if len(parts) != 2:
        raise SpanProblem(f"expected `start end`, got {len(parts)} offset field(s)", kind="bad_span", where=where,
                          field="T", fix="write text-bound annotations as brat T lines")
    return checker.span(text, parts[0], parts[1], label, where=where, names=("start", "end", "type"),
                        mention=mention)
