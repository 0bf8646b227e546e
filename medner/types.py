"""The project's currency: character spans on raw text, and records that carry them.

Offsets are Python string indices (Unicode code points) into ``Record.text``; ``end`` is exclusive,
so ``text[span.start:span.end]`` is always the mention.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

#: decimals kept when a score is written out (jsonl, batch output, spaCy, rendered pages)
SCORE_DECIMALS = 6
#: the optional fields of a span, in the order they are written
OPTIONAL_SPAN_FIELDS = ("code", "name", "match", "link_score", "score", "source")


def round_score(value: float | None) -> float | None:
    """A score as written everywhere: rounded to :data:`SCORE_DECIMALS` decimals (None stays None)."""
    return None if value is None else round(float(value), SCORE_DECIMALS)


@dataclass(frozen=True, order=True)
class Span:
    """A labelled character span ``[start, end)`` on a record's raw text.

    ``code`` is an ICD-10 / ICD-9-CM-3 code where linked, ``score`` the confidence in the span in [0, 1],
    ``source`` the name of whatever produced the span (a reader, a labelling function, a model). A linked span
    also carries ``name`` (the code's canonical ICD name), ``match`` (how the code was found: ``exact``,
    ``alias``, ``normalised`` or ``fuzzy``, see :mod:`medner.lexicon.link`) and ``link_score`` (the confidence
    in the code, in [0, 1]). Only offsets and label take part in equality and ordering.
    """

    start: int
    end: int
    label: str
    code: str | None = field(default=None, compare=False)
    score: float | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)
    name: str | None = field(default=None, compare=False)
    match: str | None = field(default=None, compare=False)
    link_score: float | None = field(default=None, compare=False)

    def mention(self, text: str) -> str:
        """The covered text: ``text[start:end]``."""
        return text[self.start : self.end]

    def overlaps(self, other: "Span") -> bool:
        """True when the two spans share at least one character."""
        return self.start < other.end and other.start < self.end

    @property
    def length(self) -> int:
        return self.end - self.start

    def to_dict(self, text: str | None = None) -> dict[str, Any]:
        """JSON-ready dict; with ``text``, the mention is included as ``text``. Optional fields that are None
        are left out; scores are rounded by :func:`round_score`."""
        out: dict[str, Any] = {"start": self.start, "end": self.end, "label": self.label}
        if text is not None:
            out["text"] = text[self.start : self.end]
        for key in OPTIONAL_SPAN_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = round_score(value) if key in ("score", "link_score") else value
        return out


@dataclass(frozen=True)
class Record:
    """One document: an id, its raw text, its spans (sorted, possibly overlapping) and free metadata."""

    id: str
    text: str
    spans: tuple[Span, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.spans, tuple):
            object.__setattr__(self, "spans", tuple(self.spans))

    def with_spans(self, spans) -> "Record":
        """A copy with ``spans`` (sorted by start, then end)."""
        return replace(self, spans=tuple(sorted(spans, key=lambda s: (s.start, s.end, s.label))))

    def mentions(self) -> list[str]:
        return [s.mention(self.text) for s in self.spans]
