"""Windowing of long records, merging of per-window predictions, offset-safe normalisation for matching.

Windows
    :func:`split_windows` cuts a record into windows ``[start, end)`` (record offsets) of at most
    ``max_len`` characters. Consecutive windows overlap by at least ``overlap`` characters. A window
    preferably ends just after a sentence boundary (one of ``。；！？`` or a newline) found in its last
    ``max_len // 4`` characters, else it ends at ``start + max_len``. The next window starts ``overlap``
    characters before that end, or up to ``overlap // 2`` characters earlier when that lets it begin just
    after a boundary, so the overlap lies between ``overlap`` and ``1.5 * overlap`` characters.
    Window starts strictly increase (each window ends more than ``overlap`` characters after its start),
    so the loop terminates for any ``max_len > overlap >= 0``.

Merging (the "centre" rule)
    :func:`merge_window_predictions` maps each window's spans back to record offsets. A span's *margin* is
    its distance to the nearer cut edge of its window (the record's own start and end are not cuts, so
    they count as infinitely far). Candidates are taken in order of decreasing margin (ties: start, end,
    label, window index); a candidate identical to a kept span (same start, end, label) is a duplicate and
    dropped, one overlapping a kept span is dropped; the rest are kept with their ``score``/``code``.
    So where two windows disagree, the prediction made with more context on both sides wins, and the
    output never holds overlapping spans.

    Round trip: every span of at most ``overlap + 1`` characters lies wholly inside some window (a span
    missing from all windows must straddle a whole overlap region), so splitting, taking
    :func:`window_spans` per window and merging returns non-overlapping gold spans exactly when all are
    that short; longer spans that no window holds are lost (count them with :func:`spans_crossing`).

Span edges
    :func:`trim_spans` moves span edges so that a span never starts or ends on an invisible character and never
    splits what a reader sees as one character (an extended grapheme cluster, Unicode UAX #29: a letter and its
    combining marks, an emoji ZWJ sequence, a variation selector, CRLF). A cluster belongs to a span when its first
    code point does, so an end inside a cluster moves to the cluster's end and a start inside one moves to the
    next cluster. Then invisible clusters (starting with whitespace, a control Cc or a format Cf character, or
    holding only those and combining marks) are dropped from both ends; a span left with nothing is dropped. A
    format character inside a visible cluster (the joiner of ``👨‍👩``, the tag characters of a flag, an Arabic
    number sign before its digits) stays with it. Offsets stay exact.

Normalisation
    :func:`normalize_with_map` folds text for dictionary matching (full-width ASCII -> half-width, NFKC
    per character, lower case) and returns a map from each normalised character to the raw character it
    came from. NFKC changes lengths (``℃`` -> ``°c``, ``㎎`` -> ``mg``, ``Ⅱ`` -> ``ii``), so matches found in the
    normalised text must be mapped back with :func:`to_raw_span`; never slice the raw text with
    normalised offsets. Lexicon terms must be normalised with the same function.
"""
from __future__ import annotations

import logging
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Iterable, Sequence

import regex

from medner.types import Span

__all__ = [
    "BOUNDARY_CHARS",
    "Window",
    "split_windows",
    "window_spans",
    "spans_crossing",
    "merge_window_predictions",
    "trim_spans",
    "normalize_with_map",
    "to_raw_span",
]

log = logging.getLogger(__name__)

BOUNDARY_CHARS = "。；！？\n"


@dataclass(frozen=True, order=True)
class Window:
    """A window ``[start, end)`` in record offsets (end exclusive)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def slice(self, text: str) -> str:
        """The window's text: ``text[start:end]``."""
        return text[self.start : self.end]

    def contains(self, span: Span) -> bool:
        """True when ``span`` (record offsets) lies wholly inside the window."""
        return self.start <= span.start and span.end <= self.end


def split_windows(text: str, max_len: int, overlap: int, boundary_chars: str = BOUNDARY_CHARS) -> list[Window]:
    """Cut ``text`` into overlapping windows of at most ``max_len`` characters (rules in the module doc).

    Windows are in order, cover ``[0, len(text))`` and consecutive windows share at least ``overlap``
    characters. A text of at most ``max_len`` characters gives one window; the empty text gives one empty
    window ``Window(0, 0)`` (so every record has at least one window to predict on).
    Raises ValueError unless ``max_len > overlap >= 0``.
    """
    if not (isinstance(max_len, int) and isinstance(overlap, int)) or not max_len > overlap >= 0:
        raise ValueError(f"expected integers max_len > overlap >= 0, got max_len={max_len!r}, overlap={overlap!r}")
    n = len(text)
    if n <= max_len:
        return [Window(0, n)]
    end_search = max_len // 4
    start_search = overlap // 2
    windows: list[Window] = []
    start = 0
    while n - start > max_len:
        hard = start + max_len
        end = hard
        for cut in range(hard, max(start + overlap + 1, hard - end_search) - 1, -1):
            if text[cut - 1] in boundary_chars:
                end = cut
                break
        windows.append(Window(start, end))
        target = end - overlap  # > start because end > start + overlap
        nxt = target
        for cut in range(target, max(start + 1, target - start_search) - 1, -1):
            if text[cut - 1] in boundary_chars:
                nxt = cut
                break
        start = nxt
    windows.append(Window(start, n))
    return windows


def window_spans(spans: Iterable[Span], window: Window) -> list[Span]:
    """Spans lying wholly inside ``window``, shifted to window offsets, sorted by start.

    Spans that cross a window edge are left out (see :func:`spans_crossing` to count them); spans of at
    most ``overlap + 1`` characters then appear whole in a neighbouring window.
    """
    inside = [replace(s, start=s.start - window.start, end=s.end - window.start)
              for s in spans if window.contains(s)]
    inside.sort(key=lambda s: (s.start, s.end, s.label))
    return inside


def spans_crossing(spans: Iterable[Span], window: Window) -> list[Span]:
    """Spans (record offsets) that share characters with ``window`` but do not lie wholly inside it."""
    return [s for s in spans if s.start < window.end and window.start < s.end and not window.contains(s)]


def merge_window_predictions(windows: Sequence[Window], per_window_spans: Sequence[Iterable[Span]]) -> list[Span]:
    """Merge spans predicted per window (window offsets) into record offsets by the centre rule.

    Returns non-overlapping spans sorted by start, keeping ``score``/``code``/``source`` of the kept
    prediction. Raises ValueError when the two sequences differ in length or a span lies outside its window.
    """
    if len(windows) != len(per_window_spans):
        raise ValueError(f"got {len(windows)} windows but {len(per_window_spans)} lists of predictions")
    if not windows:
        return []
    first = min(w.start for w in windows)
    last = max(w.end for w in windows)
    inf = float("inf")
    candidates: list[tuple[float, int, int, str, int, Span]] = []
    for k, (window, spans) in enumerate(zip(windows, per_window_spans)):
        for span in spans:
            if not 0 <= span.start < span.end <= window.length:
                raise ValueError(f"span ({span.start}, {span.end}, {span.label}) in window {k} "
                                 f"[{window.start}, {window.end}) is empty or outside it: expected "
                                 f"0 <= start < end <= {window.length} (window offsets)")
            shifted = replace(span, start=span.start + window.start, end=span.end + window.start)
            left = shifted.start - window.start if window.start > first else inf
            right = window.end - shifted.end if window.end < last else inf
            candidates.append((-min(left, right), shifted.start, shifted.end, shifted.label, k, shifted))
    candidates.sort(key=lambda c: c[:5])
    occupied = bytearray(last - first)
    kept: list[Span] = []
    dropped = 0
    for *_, span in candidates:
        lo, hi = span.start - first, span.end - first
        if any(occupied[lo:hi]):
            dropped += 1  # a duplicate of, or in conflict with, a span predicted with more context
            continue
        occupied[lo:hi] = b"\1" * (hi - lo)
        kept.append(span)
    kept.sort(key=lambda s: (s.start, s.end))
    log.debug("merged %d windows: kept %d spans, dropped %d duplicates/conflicts", len(windows), len(kept), dropped)
    return kept


_CLUSTER = regex.compile(r"\X")
#: a code point that can share a grapheme cluster with a neighbour (every other one is a cluster of its own)
_JOINING = regex.compile(r"[^\p{GCB=Other}\p{GCB=Control}\p{GCB=LF}]")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Mc", "Me"})
#: format characters that start a visible cluster (Grapheme_Cluster_Break=Prepend: number signs before digits)
_PREPEND_FORMAT = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2"
                            "\U000110bd\U000110cd")


def _invisible(cluster: str) -> bool:
    """True when ``cluster`` is nothing a reader sees as part of a mention: it starts with whitespace, a control
    or a format character (a stray mark or modifier after a space goes with the space), or holds only
    whitespace, controls, format characters and marks."""
    base = cluster[0]
    category = unicodedata.category(base)
    if base.isspace() or category == "Cc" or (category == "Cf" and base not in _PREPEND_FORMAT):
        return True
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in cluster)


def cluster_bounds(text: str) -> list[int]:
    """Start offsets of the extended grapheme clusters of ``text``, then ``len(text)``."""
    return [m.start() for m in _CLUSTER.finditer(text)] + [len(text)]


def one_code_point_characters(text: str) -> bool:
    """Whether every grapheme cluster of ``text`` is one code point (nearly all clinical text): then every offset
    is a character edge. One scan, much cheaper than :func:`cluster_bounds`."""
    return _JOINING.search(text) is None


def trim_spans(text: str, spans: Iterable[Span]) -> list[Span]:
    """``spans`` (on ``text``) with their edges on visible, whole characters (rules in the module doc), in input
    order; a span with nothing visible is dropped. ``label``/``code``/``score``/``source`` are kept. Disjoint
    spans stay disjoint."""
    spans = list(spans)
    if not spans:
        return []
    bounds = cluster_bounds(text)
    out = []
    for span in spans:
        first, stop = bisect_left(bounds, span.start), bisect_left(bounds, span.end)  # clusters first..stop-1
        while first < stop and _invisible(text[bounds[first] : bounds[first + 1]]):
            first += 1
        while stop > first and _invisible(text[bounds[stop - 1] : bounds[stop]]):
            stop -= 1
        if first == stop:
            continue
        start, end = bounds[first], bounds[stop]
        out.append(span if (start, end) == (span.start, span.end) else replace(span, start=start, end=end))
    return out


@lru_cache(maxsize=65536)
def _fold_char(ch: str, nfkc: bool) -> str:
    code = ord(ch)
    if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII block
        folded = chr(code - 0xFEE0)
    elif code == 0x3000:  # ideographic space
        folded = " "
    elif nfkc:
        folded = unicodedata.normalize("NFKC", ch)
    else:
        folded = ch
    return folded.lower()


def normalize_with_map(text: str, nfkc: bool = True) -> tuple[str, list[int]]:
    """Fold ``text`` for matching, character by character.

    Each raw character becomes its full-width->half-width fold, then (with ``nfkc``) its NFKC form, then
    lower case; the result may be 0, 1 or more characters. Returns ``(normalized, index_map)`` where
    ``index_map[i]`` is the raw index of the character that produced ``normalized[i]``
    (``len(index_map) == len(normalized)``, non-decreasing).
    """
    pieces: list[str] = []
    index_map: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold_char(ch, nfkc)
        pieces.append(folded)
        if len(folded) == 1:
            index_map.append(i)
        else:
            index_map.extend([i] * len(folded))
    return "".join(pieces), index_map


def to_raw_span(nstart: int, nend: int, index_map: Sequence[int]) -> tuple[int, int]:
    """Map a normalised span ``[nstart, nend)`` to raw offsets ``(start, end)``.

    A boundary falling inside the expansion of one raw character (e.g. only the ``c`` of ``℃`` -> ``°c``)
    snaps outward to that whole raw character. Raises ValueError unless ``0 <= nstart < nend <= len(index_map)``.
    """
    if not 0 <= nstart < nend <= len(index_map):
        raise ValueError(f"expected 0 <= nstart < nend <= {len(index_map)} (normalised length), "
                         f"got ({nstart}, {nend})")
    return index_map[nstart], index_map[nend - 1] + 1
