"""CCKS 2017 CNER: a zip or a folder of ``X-n.txtoriginal.txt`` (raw text) + ``X-n.txt`` (annotations).

Annotation lines are ``mention\\tstart\\tend\\ttype`` with ``end`` inclusive, CRLF line ends.
The raw text is kept exactly as stored, CRLF included: on the released data every document is one line
followed by CRLF line ends, and all 29,866 offsets index that raw text directly (checked against the
mentions), so nothing is normalised or shifted. Record id: ``<section>/<doc>`` (e.g. ``一般项目/一般项目-1``),
where the section is the containing folder. Hidden files (``._X.txt``, ``.DS_Store``) and the ``__MACOSX/``
metadata of a zip made on a Mac are passed over (counted in a log line). Zip member names are UTF-8 (flag
0x800); names without the flag are decoded as UTF-8, then GB18030, instead of zipfile's cp437 fallback.
"""
from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from medner.corpus.lines import check_path, decode_text, note_empty
from medner.corpus.validate import Checker, RecordProblem, SpanProblem
from medner.errors import CorpusError, location
from medner.files import not_a_record
from medner.types import Record

FORMAT = "ccks2017"
TEXT_SUFFIX = ".txtoriginal.txt"
ANN_SUFFIX = ".txt"
_UTF8_FLAG = 0x800

log = logging.getLogger(__name__)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's real name: undo zipfile's cp437 decoding for names stored without the UTF-8 flag."""
    if info.flag_bits & _UTF8_FLAG or info.filename.isascii():
        return info.filename
    raw = info.filename.encode("cp437")
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename  # pragma: no cover - cp437 decoding never fails


class _Zip:
    def __init__(self, path: Path) -> None:
        try:
            self.zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise CorpusError(f"not a readable zip file ({exc})", where=str(path),
                              fix="pass the CCKS 2017 zip or the unpacked folder") from None
        self.path = path
        self.members = {_member_name(i): i for i in self.zf.infolist() if not i.is_dir()}

    def names(self) -> list[str]:
        return list(self.members)

    def read(self, name: str) -> bytes:
        return self.zf.read(self.members[name])

    def where(self, name: str) -> str:
        return f"{self.path}!{name}"

    def close(self) -> None:
        self.zf.close()


class _Folder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self) -> list[str]:
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def where(self, name: str) -> str:
        return str(self.path / name)

    def close(self) -> None:
        pass


def read_ccks2017(path: Path, *, encoding: str, checker: Checker) -> Iterator[Record]:
    """Yield one record per ``*.txtoriginal.txt`` document, sorted by section then number."""
    check_path(path, want="any")
    source = _Folder(path) if path.is_dir() else _Zip(path)
    try:
        names = _document_names(source, path)
        docs = sorted((n for n in names if n.endswith(TEXT_SUFFIX)), key=_natural_key)
        checker.report.files += 1
        files = [n for n in names if not n.endswith("/")]  # a zip's folder entries are none
        if not docs and files:
            raise CorpusError(f"no CCKS 2017 document (`*{TEXT_SUFFIX}`) among its {len(files)} files: another "
                              "corpus format?", where=str(path), field="format",
                              fix="check --format (`data.format`): a folder of N.txt + N.ann is brat")
        if not docs:
            note_empty(path, checker)
            return
        for name in docs:
            try:
                record = _document(source, name, names, encoding, checker)
            except CorpusError as exc:
                checker.drop_record(exc)
                continue
            yield record
    finally:
        source.close()


def _document_names(source, path: Path) -> set[str]:
    """The names of the zip or folder, less hidden files and ``__MACOSX/`` metadata (a zip made on a Mac); how many
    ``.txt`` ones were passed over is logged."""
    names, hidden = set(), 0
    for name in source.names():
        if not not_a_record(name):
            names.add(name)
        elif name.endswith(ANN_SUFFIX):
            hidden += 1
    if hidden:
        log.info("%s: %d hidden or Mac metadata files ignored (dot-files, __MACOSX/)", path, hidden)
    return names


def _document(source, name: str, names: set[str], encoding: str, checker: Checker) -> Record:
    member = PurePosixPath(name)
    doc = member.name[: -len(TEXT_SUFFIX)]
    section = member.parent.name
    ann_name = name[: -len(TEXT_SUFFIX)] + ANN_SUFFIX
    if ann_name not in names:
        raise RecordProblem(f"no annotation file {PurePosixPath(ann_name).name!r} beside the text",
                            kind="missing_file", where=source.where(name), field="annotations",
                            fix="add the annotation file (an empty one for a document without entities)")
    text = decode_text(source.read(name), encoding, source.where(name), level=RecordProblem)
    ann = decode_text(source.read(ann_name), encoding, source.where(ann_name), level=RecordProblem)
    spans = []
    for number, line in enumerate(ann.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = location(source.where(ann_name), number)
        try:
            fields = line.split("\t")
            if len(fields) != 4:
                fields = line.rsplit(None, 3)
            if len(fields) != 4:
                raise SpanProblem(f"expected `mention<TAB>start<TAB>end<TAB>type`, got {len(fields)} field(s)",
                                  kind="bad_span", where=where, field="annotation",
                                  fix="write one tab-separated annotation a line")
            mention, start, end, label = fields
            spans.append(checker.span(text, start, end, label.strip(), where=where, names=("start", "end", "type"),
                                      inclusive=True, mention=mention))
        except SpanProblem as exc:
            checker.drop_span(exc)
    rid = f"{section}/{doc}" if section else doc
    meta = {"format": FORMAT, "file": name, "section": section}
    return Record(rid, text, (), meta).with_spans(spans)
