"""Labelling functions: one contract, ``find_spans(record) -> Iterable[Span]``; abstain by yielding nothing.

Every span a labelling function (LF) yields carries ``source = lf.name`` and, where the LF knows one,
an ICD ``code``; offsets are on the record's raw text (``text[start:end]`` is the mention). One LF's
spans never overlap each other (each LF is leftmost-longest); different LFs may disagree, which is what
:mod:`medner.weak.aggregate` resolves.

* :class:`LexiconLF` wraps a :class:`~medner.lexicon.matcher.LexiconMatcher` over lexicon entries, filtered
  by source and label and relabelled with a ``label_map`` (``{"疾病和诊断": "疾病和诊断"}``,
  ``{"anatomy": "解剖部位"}``). Optional ``prefixes`` add prefixed variants of every term (laterality:
  ``右`` + ``肺上叶``) and ``suffixes`` extend a match over a following qualifier (``结肠癌`` + ``术后``).
* :class:`RegexLF` runs regular expressions on the folded text (full/half width, NFKC, lower case; see
  :func:`medner.lexicon.normalize.fold_with_offsets`) and maps matches back to raw offsets.

Neither imports torch.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from medner.lexicon.entry import LexiconEntry
from medner.lexicon.matcher import LexiconMatcher
from medner.lexicon.normalize import FoldedText, fold, fold_with_offsets
from medner.types import Record, Span

__all__ = ["LabellingFunction", "LexiconLF", "RegexLF", "leftmost_longest", "lf_labels"]

log = logging.getLogger(__name__)

_BLOCK = "\x00block"  # label of blocking terms inside a LexiconLF's matcher; never emitted


@runtime_checkable
class LabellingFunction(Protocol):
    """Anything with a ``name`` and ``find_spans(record)``; ``labels`` (optional) lists what it can emit."""

    name: str

    def find_spans(self, record: Record) -> Iterable[Span]:
        """Spans on ``record.text`` with ``source == self.name``; nothing when the LF abstains."""
        ...


def lf_labels(lf: LabellingFunction) -> tuple[str, ...] | None:
    """The labels ``lf`` declares (attribute ``labels``), or None when it does not say."""
    labels = getattr(lf, "labels", None)
    return tuple(labels) if labels is not None else None


def leftmost_longest(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping subset: scanning by start, the longest span at each start wins (ties: first given)."""
    best: dict[int, Span] = {}
    for span in spans:
        held = best.get(span.start)
        if held is None or span.end > held.end:
            best[span.start] = span
    out: list[Span] = []
    pos = 0
    for start in sorted(best):
        if start < pos:
            continue
        out.append(best[start])
        pos = best[start].end
    return out


class LexiconLF:
    """Dictionary labelling function over lexicon entries.

    ``entries``: lexicon rows; ``sources``: keep only entries whose ``source`` is listed (None: all);
    ``label_map``: lexicon label -> output label (entries whose label is not a key, or maps to None, are
    dropped; None keeps labels as they are); ``include_aliases=False`` keeps official names only
    (``term == canonical``); ``prefixes``: strings put before every term as extra variants (``左``,
    ``右``, ``双侧``; the variant keeps the entry's code and canonical); ``suffixes``: when the raw text
    right after a match starts with one of them (folded comparison), the span is extended over it;
    ``block``: terms that take part in the leftmost-longest scan but are never emitted, so ``恶心`` (a
    symptom) hides the ``心`` inside it from an anatomy list; ``block_matching``: a regular expression; entries
    whose folded term it finds are blocked the same way (``(肿物|占位)$``: a finding, not a diagnosis, and
    what is inside it stays free for other functions); ``not_before``: a regular expression; a match
    is dropped when it matches the folded text right after it (``\\s*[(（]\\s*[+-]``: an immunohistochemistry
    result such as ``CEA(+)`` is not a lab test); ``min_length`` / ``stop_terms`` /
    ``label_priority`` / ``word_boundary`` go to the matcher.
    """

    def __init__(self, name: str, entries: Iterable[LexiconEntry], *, label_map: Mapping[str, str | None] | None = None,
                 sources: Iterable[str] | None = None, include_aliases: bool = True, prefixes: Sequence[str] = (),
                 suffixes: Sequence[str] = (), min_length: int = 2, stop_terms: Iterable[str] = (),
                 label_priority: Sequence[str] = (), word_boundary: bool = True, block: Iterable[str] = (),
                 block_matching: str | None = None, not_before: str | None = None) -> None:
        self.name = name
        keep_sources = set(sources) if sources is not None else None
        selected: list[LexiconEntry] = []
        for entry in entries:
            if keep_sources is not None and entry.source not in keep_sources:
                continue
            if not include_aliases and entry.is_alias:
                continue
            if label_map is not None:
                target = label_map.get(entry.label)
                if target is None:
                    continue
                if target != entry.label:
                    entry = replace(entry, label=target)
            selected.append(entry)
        if block_matching:
            try:
                found = re.compile(block_matching).search
            except re.error as exc:
                raise ValueError(f"{name}: block_matching is not a valid regular expression: {exc}") from None
            hit = [found(fold(e.term)) is not None for e in selected]
            block = [*block, *(e.term for e, h in zip(selected, hit) if h)]
            selected = [e for e, h in zip(selected, hit) if not h]
        variants = [replace(e, term=p + e.term) for p in prefixes for e in selected if not e.term.startswith(p)]
        self.labels: tuple[str, ...] = tuple(sorted({e.label for e in selected}))
        self.n_entries = len(selected)
        blockers = [LexiconEntry(t, _BLOCK, None, t, _BLOCK) for t in block if t]
        self.n_blockers = len(blockers)
        self.matcher = LexiconMatcher([*blockers, *selected, *variants], min_length=min_length,
                                      label_priority=(_BLOCK, *label_priority),
                                      stop_terms=stop_terms, word_boundary=word_boundary)
        self.suffixes = tuple(sorted({fold(s) for s in suffixes if s}, key=len, reverse=True))
        try:
            self.not_before = re.compile(not_before) if not_before else None
        except re.error as exc:
            raise ValueError(f"{name}: not_before is not a valid regular expression: {exc}") from None
        if not selected:
            log.warning("labelling function %s has no entries (check its sources and label_map)", name)

    def find_spans(self, record: Record) -> Iterator[Span]:
        text = record.text
        folded: FoldedText | None = None
        for match in self.matcher.matches(text):
            entry = match.entry
            if entry.label == _BLOCK:
                continue
            end = match.end
            if self.not_before is not None and self.not_before.match(fold(text[end:end + 12])):
                continue
            if self.suffixes:
                folded = folded or fold_with_offsets(text)
                end = self._extend(folded, end)
            yield Span(match.start, end, entry.label, code=entry.code or None, source=self.name)

    def _extend(self, ft: FoldedText, raw_end: int) -> int:
        # compare on the folded text of the next few raw characters; only length-preserving neighbourhoods
        tail = ft.raw[raw_end: raw_end + max(len(s) for s in self.suffixes)]
        folded_tail = fold(tail)
        if len(folded_tail) != len(tail):
            return raw_end
        for suffix in self.suffixes:
            if folded_tail.startswith(suffix):
                return raw_end + len(suffix)
        return raw_end

    def __repr__(self) -> str:
        return f"LexiconLF({self.name!r}, {self.n_entries} entries, labels={list(self.labels)})"


class RegexLF:
    """Regular-expression labelling function for one ``label``.

    ``patterns`` are compiled with ``flags`` and searched on the *folded* text (lower case, half width), so
    write them in lower case; the span is the named group ``span`` when the pattern has one, else the whole
    match. Matches of all patterns are merged leftmost-longest; a match whose edge falls inside the fold
    of one raw character is dropped. ``code`` is put on every span (usually None).
    """

    def __init__(self, name: str, label: str, patterns: Iterable[str | re.Pattern[str]], *, flags: int = 0,
                 code: str | None = None) -> None:
        self.name = name
        self.label = label
        self.labels: tuple[str, ...] = (label,)
        self.code = code
        self.patterns: list[re.Pattern[str]] = []
        for i, pattern in enumerate(patterns):
            try:
                self.patterns.append(re.compile(pattern, flags) if isinstance(pattern, str) else pattern)
            except re.error as exc:
                raise ValueError(f"{name}: pattern {i} is not a valid regular expression: {exc}") from None
        if not self.patterns:
            raise ValueError(f"{name}: expected at least one pattern")

    def find_spans(self, record: Record) -> list[Span]:
        text = record.text
        if not text:
            return []
        ft = fold_with_offsets(text)
        found: list[Span] = []
        for pattern in self.patterns:
            has_group = "span" in pattern.groupindex
            for m in pattern.finditer(ft.folded):
                start, end = m.span("span") if has_group else m.span()
                if start < 0 or end <= start:
                    continue
                raw = ft.raw_span(start, end)
                if raw is None:
                    continue
                found.append(Span(raw[0], raw[1], self.label, code=self.code, source=self.name))
        return leftmost_longest(found)

    def __repr__(self) -> str:
        return f"RegexLF({self.name!r}, {self.label!r}, {len(self.patterns)} patterns)"
