"""Raw text for pretraining: the texts of named sources (any corpus format, labels ignored, or plain lines),
minus excluded texts, de-duplicated. Test splits are refused by name: their texts must never be trained on (the
same rule guards the unlabelled texts of distillation and of weak and self-training, :func:`check_unlabelled`)."""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from medner.config import TextSourceConfig
from medner.corpus import ReadReport, formats, read_corpus
from medner.corpus.lines import SNIFF_LINES, decode_text, markup_format
from medner.decoding import AUTO
from medner.errors import ConfigError, CorpusError

log = logging.getLogger(__name__)

# names of held-out splits: files test.json, CMeEE-V2_test.json, test1_unlabeled.txt, testA.json, TestSet.txt,
# 测试集.txt; folders test/, test2/, testB/, test_a/, test_set/, test_data/, 测试集/
TEST_FILE = re.compile(r"(^|[^a-z])test(\d*|[a-z]|[_-]?(set|data|split)s?)([^a-z]|$)|测试", re.IGNORECASE)
TEST_FOLDER = re.compile(r"test(\d*|[_-]?[a-z\d]|[_-]?(set|data|split)s?)|.*测试.*", re.IGNORECASE)


@dataclass
class SourceTexts:
    """What one source gave: its path, format, texts kept and the counts behind them."""

    path: str
    format: str
    texts: list[str] = field(default_factory=list)
    read: int = 0
    dropped_last: int = 0
    skipped_records: int = 0

    def summary(self) -> dict:
        return {"path": self.path, "format": self.format, "texts": len(self.texts), "read": self.read,
                "dropped_last": self.dropped_last, "chars": sum(map(len, self.texts)),
                "skipped_records": self.skipped_records, "sha256": _file_digest(Path(self.path))}


def test_split_part(path: Path) -> str | None:
    """The part of ``path`` named like a held-out split (the file name, ``TEST_FILE``, or one of the two folders
    above it, ``TEST_FOLDER``), else None."""
    if TEST_FILE.search(path.name):
        return path.name
    return next((p + "/" for p in path.parent.parts[-2:] if TEST_FOLDER.fullmatch(p)), None)


def refuse_test_split(path: str, field: str) -> None:
    """Refuse a corpus that is trained on (unlabelled or auxiliary texts) when it is named like a test split."""
    part = test_split_part(Path(path))
    if part:
        raise ConfigError(f"this looks like a test split ({part!r} in its path): its texts must never be trained on",
                          where=str(path), field=field,
                          fix=f"leave it out; if it is not a held-out split, rename {part!r} (without `test`)")


def check_unlabelled(paths: Sequence[str], format: str, field: str, *, encoding: str | None = None,
                     on_error: str = "raise") -> None:
    """Fail before any work on an unlabelled corpus that is missing, named like a test split, or whose first record
    cannot be read as ``format``. These texts are trained on (soft targets, weak or pseudo labels), so a held-out
    split among them would no longer be held out. ``field`` names the config key (``distill.unlabelled``)."""
    format_key = f"`{field}_format`" + (" (`medner distill --unlabelled-format`)" if field == "distill.unlabelled" else "")
    for path in paths:
        if not Path(path).exists():
            raise ConfigError("unlabelled texts not found", where=str(path), field=field,
                              fix=f"check the path in `{field}`")
        refuse_test_split(path, field)
    for path in paths:
        try:
            if next(read_corpus(path, format=format, encoding=encoding, on_error=on_error), None) is None:
                raise CorpusError("no record was read (every one skipped, or the file is empty)", where=str(path))
        except CorpusError as exc:
            fix = f"if these texts are in another format, name it in {format_key}"
            raise CorpusError(f"cannot be read as {format}: {exc.message}", where=exc.where or str(path),
                              field=f"{field}_format", fix=f"{exc.fix}; {fix}" if exc.fix else fix) from None


def text_key(text: str) -> str:
    """One text's identity for de-duplication and exclusion (its stripped UTF-8 bytes, hashed)."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def check_source(source: TextSourceConfig, key: str = "sources") -> None:
    """Fail before any work on a missing path, an unknown format or a path named like a test split; ``key`` is the
    config list it is in (sources, exclude). An ``exclude`` entry may be a test split: it keeps texts out."""
    path = Path(source.path)
    if not path.exists():
        raise ConfigError("text source not found", where=source.path, fix=f"check the path in `{key}`")
    if source.format != "lines" and source.format not in formats():
        raise ConfigError(f"unknown text source format {source.format!r}", where=source.path,
                          fix=f"use lines or one of {', '.join(formats())}")
    if source.format == "lines" and path.is_dir():
        raise ConfigError("`lines` sources are files (one text per line), not folders", where=source.path,
                          fix="name the file, or give the folder's corpus format (brat, ccks2017)")
    part = test_split_part(path) if key != "exclude" else None
    if part and not source.not_a_test_split:
        raise ConfigError(f"this looks like a test split ({part!r} in its path): its texts must never be used for "
                          "pretraining",
                          where=source.path, fix="leave it out; if it is not a held-out split, set "
                                                 "`not_a_test_split: true` on this source")


def read_source(source: TextSourceConfig, key: str = "sources") -> SourceTexts:
    """The texts of one source in file order, the last ``drop_last`` records left out; ``key`` as
    :func:`check_source` takes it."""
    check_source(source, key)
    out = SourceTexts(source.path, source.format)
    if source.format == "lines":
        texts = _lines(source)
    else:
        report = ReadReport()
        try:
            texts = [r.text for r in read_corpus(source.path, format=source.format, encoding=source.encoding,
                                                 on_error="skip", report=report)]
        except CorpusError as exc:
            raise CorpusError(f"cannot be read as {source.format}: {exc.message}", where=exc.where or source.path,
                              fix=exc.fix or "check `format` of this source") from None
        out.skipped_records = report.skipped_records
    out.read = len(texts)
    if source.drop_last:
        if source.drop_last >= len(texts):
            raise ConfigError(f"`drop_last` is {source.drop_last} but the source has {len(texts)} texts",
                              where=source.path)
        texts, out.dropped_last = texts[: -source.drop_last], source.drop_last
    out.texts = [t for t in texts if t.strip()]
    if not out.texts:
        raise CorpusError(f"no text was read as {source.format}", where=source.path,
                          fix="check `format` of this source")
    return out


def _lines(source: TextSourceConfig) -> list[str]:
    """The non-blank lines of a `lines` source, decoded as the corpus readers decode (its `encoding`, else
    detected); a corpus file read as plain lines (JSON lines or document, ``text|||spans``, ``character tag``
    lines: :func:`medner.corpus.lines.markup_format`) is refused: its markup and gold mentions would be trained
    on, and no `exclude` of the same corpus would match its texts."""
    text = decode_text(Path(source.path).read_bytes(), source.encoding or AUTO, source.path)
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    found = markup_format(lines)
    if found is None and lines[:SNIFF_LINES] and all("|||" in line for line in lines[:SNIFF_LINES]):
        found = "`text|||spans` records", "chip"
    if found is not None:
        what, fmt = found
        raise ConfigError(f"this file is {what}, not plain text lines", where=source.path,
                          fix=f"give this source its corpus `format` ({fmt}): `lines` would train on the markup "
                              "and gold mentions")
    return lines


def collect_texts(sources: list[TextSourceConfig], exclude: list[TextSourceConfig]) -> tuple[list[str], dict]:
    """All source texts in order, de-duplicated, without any text of an ``exclude`` source.

    Returns the texts and a JSON-ready provenance (per source counts and file digests, exclusions)."""
    for key, group in (("sources", sources), ("exclude", exclude)):  # every path checked before a file is read
        for source in group:
            check_source(source, key)
    both = sorted({str(Path(s.path).resolve()) for s in sources} & {str(Path(s.path).resolve()) for s in exclude})
    if both:
        raise ConfigError(f"{both[0]} is both a source and excluded: nothing of it would be trained on, or (read "
                          "in another format) all of it", field="exclude",
                          fix="leave it out of `sources` (and keep it in `exclude` only if another source holds "
                              "the same texts)")
    excluded = {text_key(t) for source in exclude for t in read_source(source, "exclude").texts}
    seen: set[str] = set()
    texts: list[str] = []
    summaries = []
    removed = duplicates = 0
    for source in sources:
        got = read_source(source)
        kept = []
        for text in got.texts:
            key = text_key(text)
            if key in excluded:
                removed += 1
            elif key in seen:
                duplicates += 1
            else:
                seen.add(key)
                kept.append(text)
        got.texts = kept
        summaries.append(got.summary())
        texts.extend(kept)
        log.info("pretraining text: %s (%s): %d texts, %d characters", source.path, source.format, len(kept),
                 sum(map(len, kept)))
    provenance = {"sources": summaries, "excluded_sources": [s.path for s in exclude],
                  "texts_excluded": removed, "duplicates_dropped": duplicates, "texts": len(texts),
                  "chars": sum(map(len, texts))}
    return texts, provenance


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
