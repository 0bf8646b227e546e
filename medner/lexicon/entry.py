"""Lexicon rows and the per-source load report.

A :class:`LexiconEntry` is one surface form (``term``) with its entity ``label``, an optional ICD code,
the ``canonical`` name it stands for (the term itself for official names, the official name for aliases)
and the ``source`` it came from. A :class:`LoadReport` accounts for every row a loader read::

    rows == loaded + len(bad) + merged + sum(skipped.values())

``bad`` rows are input errors (empty names, malformed codes, conflicting duplicates, "terms" without a
letter such as ``21`` or ``III``), each with its
``file:row``; ``merged`` rows are duplicates folded into an earlier row (same term and code, or the same
term with a code that refines or generalises the kept one); ``skipped`` rows were left out on purpose
(fuzzy or untranslated entries, categories mapped to no label, codes matching ``exclude_codes``),
counted by reason. Blank lines and comments are not rows.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["LexiconEntry", "BadRow", "LoadReport", "LoadResult"]

_EXAMPLES = 5  # bad rows listed in sidecars


@dataclass(frozen=True)
class LexiconEntry:
    """One surface form. ``code`` is None when the source gives none; ``canonical`` defaults to ``term``."""

    term: str
    label: str
    code: str | None = None
    canonical: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not self.canonical:
            object.__setattr__(self, "canonical", self.term)

    @property
    def is_alias(self) -> bool:
        """True when this entry is a derived form of another name (``term != canonical``)."""
        return self.term != self.canonical


@dataclass(frozen=True)
class BadRow:
    """A rejected input row: ``where`` is ``file:row``, ``kind`` one of :data:`LoadReport.BAD_KINDS`."""

    where: str
    kind: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message} (field `{self.field}`)"


@dataclass
class LoadReport:
    """Row accounting for one source file (see the module docstring for the invariant)."""

    BAD_KINDS = ("empty_name", "malformed_code", "conflicting_duplicate", "not_a_term", "malformed_row",
                 "unknown_category")

    source: str
    path: str
    rows: int = 0
    loaded: int = 0
    merged: int = 0
    bad: list[BadRow] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def bad_counts(self) -> dict[str, int]:
        """Number of bad rows by kind (only kinds that occurred)."""
        return dict(sorted(Counter(b.kind for b in self.bad).items()))

    def balanced(self) -> bool:
        """True when every row read is accounted for."""
        return self.rows == self.loaded + len(self.bad) + self.merged + sum(self.skipped.values())

    def log(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        """Log a one-line summary at ``level`` and, when rows were bad, one short warning line with their count
        by kind and where the first is (no terms: a line per bad row goes to DEBUG, ``-vv``)."""
        logger.log(level, "%s: %d rows -> %d entries (%d merged duplicates, %d bad, skipped %s) from %s",
                   self.source, self.rows, self.loaded, self.merged, len(self.bad),
                   _kinds(dict(sorted(self.skipped.items()))) or "none", self.path)
        if self.bad:
            logger.warning("%s: %d bad rows skipped (%s), the first at %s; -vv lists each", self.source,
                           len(self.bad), _kinds(self.bad_counts()), os.path.basename(self.bad[0].where))
            for row in self.bad:
                logger.debug("%s: bad row %s", self.source, row)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the first few bad rows."""
        return {
            "rows": self.rows,
            "loaded": self.loaded,
            "merged_duplicates": self.merged,
            "bad": self.bad_counts(),
            "bad_examples": [str(b) for b in self.bad[:_EXAMPLES]],
            "skipped": dict(sorted(self.skipped.items())),
        }


def _kinds(counts: dict[str, int]) -> str:
    """``{"a": 2, "b": 1}`` -> ``"a 2, b 1"``."""
    return ", ".join(f"{k} {v}" for k, v in counts.items())


@dataclass
class LoadResult:
    """What a loader returns: the entries, in file order, and the report. Iterating yields the entries."""

    entries: list[LexiconEntry]
    report: LoadReport

    def __iter__(self) -> Iterator[LexiconEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
