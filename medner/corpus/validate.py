"""Validation shared by every corpus reader: span checks, the ``on_error`` policy and the read report.

Readers raise :class:`SpanProblem` for a bad span (only that span is dropped under ``on_error="skip"``)
and :class:`RecordProblem` for a bad record or line (the whole record is dropped). File-level problems
(missing file, unreadable JSON array) are plain :class:`~medner.errors.CorpusError` and always raise.
Messages and the read report never carry record text (these are medical records): they give offsets, lengths,
short sha256 digests and the file/line. Only a ``Checker`` built with ``show_text=True`` (``--show-text``, for
debugging a corpus) quotes short escaped excerpts of mentions and field values.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from medner.errors import CorpusError
from medner.types import Span

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
#: how a malformed span or record may be passed over, the end of its fix
SKIP_FIX = "skip it with --on-error skip (`data.on_error: skip` in a run config, or --set data.on_error=skip)"
MAX_EXAMPLES = 5
_EXCERPT = 8  # characters of record text allowed in a message
_INT = re.compile(r"-?[0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,39}")  # a key or tag name, shown as is
SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: a broken JSON escape, not Unicode text


class SpanProblem(CorpusError):
    """One span is malformed; the rest of its record is usable."""

    def __init__(self, message: str, *, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(message, **kwargs)


class RecordProblem(CorpusError):
    """A whole record (or line) cannot be read."""

    def __init__(self, message: str, *, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(message, **kwargs)


@dataclass
class ReadReport:
    """What a reader saw. Filled in while iterating; complete once the iterator is exhausted.

    ``examples`` holds the first problems as one-line strings ``file:line: message``;
    ``problems`` counts every problem by kind (``bad_json``, ``start_not_before_end``, ...).
    """

    path: str = ""
    format: str = ""
    files: int = 0
    records: int = 0
    spans: int = 0
    skipped_records: int = 0
    skipped_spans: int = 0
    discontinuous_spans: int = 0
    case_mismatches: int = 0
    whitespace_edge_spans: int = 0
    invalid_tag_sequences: int = 0
    empty_files: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Records plus spans dropped under ``on_error="skip"``."""
        return self.skipped_records + self.skipped_spans

    @property
    def unusual(self) -> bool:
        """Whether anything was skipped, repaired or accepted that a user should hear of."""
        return bool(self.skipped or self.discontinuous_spans or self.case_mismatches or self.whitespace_edge_spans
                    or self.invalid_tag_sequences)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = dict(self.problems)
        out["skipped"] = self.skipped
        return out

    def summary(self) -> str:
        """One line: counts of records, spans and anything unusual (no record text)."""
        parts = [f"{self.records} records", f"{self.spans} spans"]
        if self.skipped_records:
            parts.append(f"{self.skipped_records} records skipped")
        if self.skipped_spans:
            parts.append(f"{self.skipped_spans} spans skipped")
        if self.discontinuous_spans:
            parts.append(f"{self.discontinuous_spans} discontinuous spans")
        if self.case_mismatches:
            parts.append(f"{self.case_mismatches} case-only mention mismatches accepted")
        if self.whitespace_edge_spans:
            parts.append(f"{self.whitespace_edge_spans} spans begin or end with whitespace (kept as written; a model "
                         "predicts them without it)")
        if self.invalid_tag_sequences:
            parts.append(f"{self.invalid_tag_sequences} invalid tag sequences repaired")
        return f"{self.path} ({self.format}): " + ", ".join(parts)


class Checker:
    """Applies the ``on_error`` policy for one read and fills ``report``; ``show_text`` lets messages quote short
    excerpts of record text (off by default)."""

    def __init__(self, on_error: str, report: ReadReport, *, show_text: bool = False) -> None:
        if on_error not in ON_ERROR:
            raise CorpusError(f"unknown on_error policy {on_error!r}", field="on_error",
                              fix=f"use one of {', '.join(ON_ERROR)}")
        self.on_error = on_error
        self.report = report
        self.show_text = show_text

    def _note(self, exc: CorpusError) -> None:
        self.report.problems[getattr(exc, "kind", "other")] += 1
        if len(self.report.examples) < MAX_EXAMPLES:
            self.report.examples.append(f"{exc.where}: {exc.message}" if exc.where else exc.message)

    def drop_span(self, exc: SpanProblem) -> None:
        """Re-raise under ``raise``; otherwise count the dropped span."""
        if self.on_error == "raise":
            raise exc
        self._note(exc)
        self.report.skipped_spans += 1

    def drop_record(self, exc: CorpusError) -> None:
        """Re-raise under ``raise`` (and for file-level errors); otherwise count the dropped record."""
        if self.on_error == "raise" or not isinstance(exc, (RecordProblem, SpanProblem)):
            raise exc
        self._note(exc)
        self.report.skipped_records += 1

    def finish(self) -> None:
        """Log the summary: a warning when anything was skipped, info for accepted oddities."""
        r = self.report
        if r.skipped:
            logger.warning("%s; first problems: %s", r.summary(), " | ".join(r.examples))
        elif r.unusual:
            logger.info("%s", r.summary())
        else:
            logger.debug("%s", r.summary())

    def span(self, text: str, start: Any, end: Any, label: Any, *, where: str,
             names: tuple[str, str, str] = ("start", "end", "label"), inclusive: bool = False,
             mention: Any = None, mention_field: str = "mention", case_ok: bool = True) -> Span:
        """Build a checked :class:`Span` from source values, or raise :class:`SpanProblem`.

        ``start``/``end`` are as in the source file (``end`` inclusive when ``inclusive``);
        ``names`` are the source field names used in messages; ``mention``, when given, must equal
        the covered text (a case-only difference is accepted and counted when ``case_ok``).
        """
        s_name, e_name, l_name = names
        s = as_int(start, s_name, where, show_text=self.show_text)
        e = as_int(end, e_name, where, show_text=self.show_text)
        if not isinstance(label, str) or not label.strip():
            got = repr(label) if isinstance(label, str) or label is None else describe(label, self.show_text)
            raise SpanProblem(f"expected a non-empty label, got {got}", kind="empty_label",
                              where=where, field=l_name, fix="give every span a type")
        stop = e + 1 if inclusive else e
        rel = "<=" if inclusive else "<"
        if s < 0:
            raise SpanProblem(f"expected {s_name} >= 0, got {s}", kind="negative_offset", where=where,
                              field=s_name, fix="correct or remove this span")
        if s >= stop:
            raise SpanProblem(f"expected {s_name} {rel} {e_name}, got {s_name}={s}, {e_name}={e}",
                              kind="start_not_before_end", where=where, field=e_name,
                              fix=f"correct or remove this span, or {SKIP_FIX}")
        if stop > len(text):
            limit = len(text) - 1 if inclusive else len(text)
            raise SpanProblem(f"expected {e_name} <= {limit} (text length {len(text)}), got {e}",
                              kind="offset_past_text", where=where, field=e_name,
                              fix="check that the offsets belong to this text and the file encoding")
        if mention is not None:
            covered = text[s:stop]
            if mention != covered:
                if not isinstance(mention, str):
                    raise SpanProblem(f"expected a string mention, got {type(mention).__name__}",
                                      kind="bad_type", where=where, field=mention_field,
                                      fix="store the mention as a string")
                if case_ok and mention.casefold() == covered.casefold():
                    self.report.case_mismatches += 1
                else:
                    if self.show_text:
                        found = f"text[{s}:{stop}] is {excerpt(covered)} but {mention_field} is {excerpt(mention)}"
                    else:
                        found = (f"text[{s}:{stop}] ({_size(covered)}, {digest(covered)}) differs from "
                                 f"{mention_field} ({_size(mention)}, {digest(mention)})")
                    raise SpanProblem(f"mention mismatch: {found}{_shift_hint(text, mention, s)}",
                                      kind="mention_mismatch", where=where, field=mention_field,
                                      fix=f"correct the offsets or the mention, or {SKIP_FIX}")
        if text[s].isspace() or text[stop - 1].isspace():
            self.report.whitespace_edge_spans += 1
        return Span(s, stop, label)


def _shift_hint(text: str, mention: str, start: int, reach: int = 3) -> str:
    """" (found at start 10: offsets off by -1)" when the mention sits a few characters away."""
    for delta in sorted(range(-reach, reach + 1), key=abs):
        if delta and start + delta >= 0 and text[start + delta : start + delta + len(mention)] == mention:
            return f" (found at start {start + delta}: offsets off by {delta:+d})"
    return ""


def as_int(value: Any, name: str, where: str, *, show_text: bool = False) -> int:
    """An integer offset from an int or a string of ASCII digits, else :class:`SpanProblem`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        raise SpanProblem(f"missing offset {name}", kind="missing_field", where=where, field=name,
                          fix=f"add `{name}` to the span")
    raise SpanProblem(f"expected an integer offset, got {describe(value, show_text)}", kind="bad_type",
                      where=where, field=name, fix="write offsets as integers")


def require(obj: dict, key: str, kind: type | tuple[type, ...], *, where: str,
            level: type[CorpusError] = RecordProblem, default: Any = ...) -> Any:
    """``obj[key]`` checked against ``kind``; a missing key returns ``default`` if one is given."""
    if key not in obj or obj[key] is None:
        if default is not ...:
            return default
        raise level(f"missing field {key!r}", kind="missing_field", where=where, field=key,
                    fix=f"add `{key}` to every {'span' if level is SpanProblem else 'record'}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise level(f"expected {key!r} to be {names}, got {type(value).__name__}", kind="bad_type",
                    where=where, field=key, fix=f"write `{key}` as {names}")
    return value


def excerpt(value: str, limit: int = _EXCERPT) -> str:
    """A short, escaped, single-line excerpt for messages (only where the user asked for text: ``show_text``)."""
    short = value if len(value) <= limit else value[:limit] + "…"
    return repr(short)


def digest(value: str) -> str:
    """``sha256 <12 hex digits>`` of ``value`` (UTF-8): tells two values apart without showing them."""
    return "sha256 " + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _size(value: str) -> str:
    return f"{len(value)} character{'s' if len(value) != 1 else ''}"


def label_name(label: str) -> str:
    """A label for a message: as is when it is short (label names are not record text), else described."""
    return label if len(label) <= 24 and "\n" not in label else describe(label)


def describe(value: Any, show_text: bool = False) -> str:
    """A value from a corpus file for a message: an excerpt with ``show_text``, else its type, length and digest."""
    if show_text:
        return excerpt(value if isinstance(value, str) else str(value))
    if isinstance(value, str):
        return f"a string of {_size(value)} ({digest(value)})"
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    return f"a {type(value).__name__} of length {len(value)}" if hasattr(value, "__len__") else type(value).__name__


def name_of(value: str, show_text: bool = False, pattern: re.Pattern = _NAME) -> str:
    """A key or tag name for a message: quoted when it has the shape of one (or with ``show_text``), else
    described without its text (a corrupted file can hold record text where a name belongs)."""
    if show_text or pattern.fullmatch(value):
        return repr(value)
    return describe(value)
