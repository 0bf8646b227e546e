"""The project's lexicon file: a versioned, sorted UTF-8 TSV, and :func:`load_lexicon` to read it.

Layout::

    # medner-lexicon format=1 version=zh-1 entries=52731 sha256=3f5c...
    term<TAB>label<TAB>code<TAB>canonical<TAB>source
    肝癌<TAB>疾病和诊断<TAB>C22.900<TAB>肝恶性肿瘤<TAB>icd10_national
    ...

Lines starting with ``#`` are comments. The header row names the columns (found by name; ``term`` and
``label`` are required). The fingerprint is the SHA-256 of the UTF-8 bytes after the comment lines
(header row and entry rows, ``\\n`` line ends), so it changes exactly when the content changes.
Rows are sorted by (term, label, code, canonical, source) and unique, so building twice from the same
sources gives the same bytes.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from medner.errors import LexiconError
from medner.files import atomic_write_bytes
from medner.lexicon.entry import LexiconEntry
from medner.lexicon.loaders import load_project_tsv
from medner.lexicon.matcher import LexiconMatcher

__all__ = ["COLUMNS", "FORMAT_VERSION", "Lexicon", "load_lexicon", "write_lexicon", "fingerprint_of"]

log = logging.getLogger(__name__)

COLUMNS = ("term", "label", "code", "canonical", "source")
FORMAT_VERSION = 1
_HEADER_RE = re.compile(r"#\s*medner-lexicon\b(?P<fields>.*)")


@dataclass(frozen=True)
class Lexicon:
    """Entries of one lexicon file plus its ``fingerprint`` (``sha256:<hex>``) and declared ``version``."""

    entries: tuple[LexiconEntry, ...]
    fingerprint: str
    version: str | None = None
    path: str | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LexiconEntry]:
        return iter(self.entries)

    def labels(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted({e.label for e in self.entries})

    def matcher(self, **kwargs: Any) -> LexiconMatcher:
        """A :class:`~medner.lexicon.matcher.LexiconMatcher` over these entries (kwargs passed on)."""
        return LexiconMatcher(self.entries, **kwargs)


def _escape(value: str | None) -> str:
    return "" if value is None else value.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _row(entry: LexiconEntry) -> str:
    return "\t".join(_escape(v) for v in (entry.term, entry.label, entry.code, entry.canonical, entry.source))


def _sort_key(entry: LexiconEntry) -> tuple[str, str, str, str, str]:
    return (entry.term, entry.label, entry.code or "", entry.canonical, entry.source)


def fingerprint_of(body: bytes) -> str:
    """``sha256:<hex>`` of the file content after the comment lines."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def render(entries: Iterable[LexiconEntry]) -> tuple[bytes, int]:
    """Sorted, de-duplicated body (header row + rows) as UTF-8 bytes, and the number of rows."""
    rows = sorted({_row(e): _sort_key(e) for e in entries}.items(), key=lambda kv: kv[1])
    body = "\t".join(COLUMNS) + "\n" + "".join(r + "\n" for r, _ in rows)
    return body.encode("utf-8"), len(rows)


def write_lexicon(entries: Iterable[LexiconEntry], path: str | PathLike, *, version: str = "0") -> str:
    """Write ``entries`` sorted and unique with the versioned header; returns the fingerprint.

    The file is written to a temporary name and renamed, so readers never see half a file.
    """
    if not re.fullmatch(r"[\w.\-+]+", version):
        raise LexiconError(f"version {version!r} may only hold letters, digits and . - + _", field="version",
                           fix="set a simple `version:` such as zh-1")
    body, n = render(entries)
    fp = fingerprint_of(body)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# medner-lexicon format={FORMAT_VERSION} version={version} entries={n} {fp.replace(':', '=', 1)}\n"
    atomic_write_bytes(path, header.encode("utf-8") + body)
    return fp


def _read_header(data: bytes) -> tuple[dict[str, str], bytes]:
    """Parse the leading comment lines; returns (header fields, body bytes)."""
    meta: dict[str, str] = {}
    pos = 0
    while data.startswith(b"#", pos) or data.startswith(b"\xef\xbb\xbf#", pos):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        line = data[pos:end].decode("utf-8-sig", errors="replace").strip()
        m = _HEADER_RE.match(line)
        if m:
            for part in m.group("fields").split():
                key, _, value = part.partition("=")
                meta[key] = value
        pos = end
    return meta, data[pos:]


def load_lexicon(path: str | PathLike) -> Lexicon:
    """Read a lexicon file written by :func:`write_lexicon` (or by hand in the same format).

    Every row must be valid (errors name ``file:line``). The fingerprint is recomputed from the content;
    when the header declares a different one (the file was edited after the build) a warning is logged
    and the recomputed one is used.
    """
    path = Path(path)
    result = load_project_tsv(path, source=path.stem, strict=True, log_level=logging.DEBUG,  # checks the file
                              lenient="build the lexicon again with `medner lexicon build`")
    meta, body = _read_header(path.read_bytes())
    fp = fingerprint_of(body)
    declared = meta.get("sha256")
    if declared and "sha256:" + declared != fp:
        log.warning("%s: content fingerprint %s differs from the header's sha256=%s (edited after the build?); "
                    "using the content's", path, fp[:19], declared[:12])
    return Lexicon(entries=tuple(result.entries), fingerprint=fp, version=meta.get("version"), path=str(path),
                   meta=meta)
