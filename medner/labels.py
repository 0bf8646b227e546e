"""Tag schemes (BIO = IOB2, BIOES): character spans <-> per-character tags, overlap policy, CRF constraints.

Tags are strings ``"O"`` or ``"<P>-<type>"`` with prefix ``P`` in ``B I`` (BIO) or ``B I E S`` (BIOES).
Tag ids are deterministic: ``"O"`` is 0, then for each entity type in sorted order its
``B-``, ``I-`` (and ``E-``, ``S-`` for BIOES) tags.

Decoding is *strict* and mirrors ``seqeval`` ``mode="strict"``: under BIO an entity is ``B-X (I-X)*``;
an ``I-X`` that does not continue a ``B-X``/``I-X`` run (a "lone" I) is not part of any entity.
Under BIOES an entity is ``S-X`` or ``B-X (I-X)* E-X``; every other fragment is dropped.
The CRF never emits such fragments (see :func:`allowed_transitions`), so the strict rule only
matters for hand-made or foreign tag sequences, where it is the conservative choice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np

from medner.types import Record, Span

__all__ = [
    "SCHEMES",
    "TagScheme",
    "spans_to_tags",
    "tags_to_spans",
    "resolve_overlaps",
    "OVERLAP_POLICIES",
    "allowed_transitions",
    "START",
    "END",
]

log = logging.getLogger(__name__)

#: scheme name -> entity prefixes, in tag-id order
SCHEMES: dict[str, tuple[str, ...]] = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
_ALIASES = {"BIO": "BIO", "IOB2": "BIO", "BIOES": "BIOES", "IOBES": "BIOES"}
OVERLAP_POLICIES = ("keep_longest", "keep_first", "error")
#: pseudo-tags of transition-prior keys (``START -> B-X``, ``I-X -> END``, see medner.model.crf); not entity types
START, END = "START", "END"


def _scheme_name(name: str) -> str:
    key = str(name).strip().upper()
    if key not in _ALIASES:
        raise ValueError(f"unknown tag scheme {name!r}; expected one of BIO (IOB2), BIOES (IOBES)")
    return _ALIASES[key]


def check_type(label: str) -> None:
    if not isinstance(label, str) or not label or label != label.strip() or label.startswith("-") \
            or label.endswith("-") or "->" in label or label in (START, END, "O"):
        raise ValueError(f"invalid entity type {label!r}: expected a non-empty name without surrounding "
                         f"spaces or '-', without '->', and not O/START/END")


@dataclass(frozen=True)
class TagScheme:
    """A tag scheme over a fixed set of entity types.

    ``TagScheme(["疾病和诊断", "药物"], "BIO").tags == ("O", "B-疾病和诊断", "I-疾病和诊断", "B-药物", "I-药物")``.
    Types are de-duplicated and sorted, so the tag ids do not depend on input order.
    """

    types: tuple[str, ...]
    name: str = "BIO"

    def __init__(self, types: Iterable[str], name: str = "BIO") -> None:
        types = tuple(sorted(set(types)))
        for label in types:
            check_type(label)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "name", _scheme_name(name))

    @classmethod
    def from_records(cls, records: Iterable[Record], name: str = "BIO") -> "TagScheme":
        """The scheme over every span label found in ``records``."""
        return cls({span.label for record in records for span in record.spans}, name)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TagScheme":
        """Inverse of :meth:`to_dict`; checks that the stored tag order is the one this code builds."""
        scheme = cls(data["types"], data.get("name", "BIO"))
        if "tags" in data and tuple(data["tags"]) != scheme.tags:
            raise ValueError(f"stored tags {list(data['tags'])} differ from the tags rebuilt from the types "
                             f"{list(scheme.tags)}; the label scheme file was edited or written by other code")
        return scheme

    def to_dict(self) -> dict:
        """JSON-ready description (``name``, ``types``, ``tags``)."""
        return {"name": self.name, "types": list(self.types), "tags": list(self.tags)}

    @property
    def prefixes(self) -> tuple[str, ...]:
        return SCHEMES[self.name]

    @cached_property
    def tags(self) -> tuple[str, ...]:
        return ("O",) + tuple(f"{p}-{t}" for t in self.types for p in self.prefixes)

    @cached_property
    def tag_to_id(self) -> dict[str, int]:
        return {tag: i for i, tag in enumerate(self.tags)}

    @cached_property
    def id_to_tag(self) -> dict[int, str]:
        return dict(enumerate(self.tags))

    def __len__(self) -> int:
        return len(self.tags)

    def encode(self, tags: Sequence[str]) -> list[int]:
        """Tag strings -> ids; raises ValueError listing the valid tags on an unknown tag."""
        try:
            return [self.tag_to_id[t] for t in tags]
        except KeyError as exc:
            raise ValueError(f"unknown tag {exc.args[0]!r}; valid tags: {', '.join(self.tags)}") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tag ids -> tag strings."""
        return [self.tags[int(i)] for i in ids]


def _split_tag(tag: str) -> tuple[str, str | None]:
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if not sep or not label or len(prefix) != 1:
        raise ValueError(f"malformed tag {tag!r}: expected 'O' or '<prefix>-<type>'")
    return prefix, label


def _resolve(scheme: "TagScheme | str") -> tuple[str, TagScheme | None]:
    if isinstance(scheme, TagScheme):
        return scheme.name, scheme
    return _scheme_name(scheme), None


def spans_to_tags(spans: Iterable[Span], length: int, scheme: "TagScheme | str" = "BIO") -> list[str]:
    """Per-character tags (a list of ``length`` strings) for non-overlapping ``spans``.

    Raises ValueError for a span outside ``[0, length]``, an empty span, two overlapping spans
    (resolve them first with :func:`resolve_overlaps`) or, with a :class:`TagScheme`, an unknown label.
    """
    name, tag_scheme = _resolve(scheme)
    tags = ["O"] * length
    ordered = sorted(spans, key=lambda s: (s.start, s.end, s.label))
    prev: Span | None = None
    for span in ordered:
        if not 0 <= span.start < span.end <= length:
            raise ValueError(f"span ({span.start}, {span.end}, {span.label}) is empty or outside the text: "
                             f"expected 0 <= start < end <= {length}")
        if tag_scheme is not None and span.label not in tag_scheme.types:
            raise ValueError(f"span ({span.start}, {span.end}) has label {span.label!r} which is not in the "
                             f"scheme; known types: {', '.join(tag_scheme.types)}")
        if prev is not None and prev.end > span.start:
            raise ValueError(f"overlapping spans ({prev.start}, {prev.end}, {prev.label}) and "
                             f"({span.start}, {span.end}, {span.label}) cannot be tagged flat; "
                             f"resolve them with resolve_overlaps() first")
        prev = span
        if name == "BIOES" and span.length == 1:
            tags[span.start] = f"S-{span.label}"
            continue
        tags[span.start] = f"B-{span.label}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label}"
        if name == "BIOES":
            tags[span.end - 1] = f"E-{span.label}"
    return tags


def tags_to_spans(tags: Sequence[str], scheme: "TagScheme | str" = "BIO") -> list[Span]:
    """Spans from per-character tags, decoded strictly (see module doc); sorted by start.

    Raises ValueError for a malformed tag or a prefix the scheme does not have.
    """
    name, _ = _resolve(scheme)
    allowed = set(SCHEMES[name]) | {"O"}
    parsed = []
    for i, tag in enumerate(tags):
        prefix, label = _split_tag(tag)
        if prefix not in allowed:
            raise ValueError(f"tag {tag!r} at position {i} has a prefix the {name} scheme does not use "
                             f"(allowed: {', '.join(sorted(allowed))})")
        parsed.append((prefix, label))
    spans: list[Span] = []
    n = len(parsed)
    i = 0
    while i < n:
        prefix, label = parsed[i]
        if name == "BIOES" and prefix == "S":
            spans.append(Span(i, i + 1, label))
            i += 1
            continue
        if prefix != "B":
            i += 1  # O, or a fragment that does not start an entity: strict decoding drops it
            continue
        j = i + 1
        while j < n and parsed[j] == ("I", label):
            j += 1
        if name == "BIO":
            spans.append(Span(i, j, label))
            i = j
        elif j < n and parsed[j] == ("E", label):
            spans.append(Span(i, j + 1, label))
            i = j + 1
        else:
            i = j  # B-X I-X* without its E-X: not an entity under strict BIOES
    return spans


def resolve_overlaps(spans: Iterable[Span], policy: str = "keep_longest",
                     label_order: Sequence[str] | None = None) -> tuple[list[Span], int]:
    """Make ``spans`` flat (pairwise non-overlapping) for tagging.

    Policies:
      * ``keep_longest``: longer span wins; ties -> earlier start, then label order.
      * ``keep_first``: earlier start wins; ties -> longer span, then label order.
      * ``error``: raise ValueError naming the first overlapping pair (offsets and labels).

    Exact duplicates (same start, end and label) carry no conflict: they are collapsed under every policy
    (the first one is kept, with its code/score) and counted as dropped. Label order is ``label_order``
    when given (e.g. ``TagScheme.types``), else alphabetical. Returns ``(kept spans sorted by start, end;
    number of spans dropped)``.
    """
    if policy not in OVERLAP_POLICIES:
        raise ValueError(f"unknown overlap policy {policy!r}; expected one of {', '.join(OVERLAP_POLICIES)}")
    rank = {label: i for i, label in enumerate(label_order)} if label_order is not None else None

    def label_key(span: Span):
        if rank is None:
            return (0, span.label)
        return (rank.get(span.label, len(rank)), span.label)

    unique: dict[tuple[int, int, str], Span] = {}
    total = 0
    for span in spans:
        total += 1
        unique.setdefault((span.start, span.end, span.label), span)
    candidates = list(unique.values())
    if policy == "error":
        ordered = sorted(candidates, key=lambda s: (s.start, s.end, label_key(s)))
        reach: Span | None = None
        for span in ordered:
            if reach is not None and reach.end > span.start:
                raise ValueError(f"overlapping spans ({reach.start}, {reach.end}, {reach.label}) and "
                                 f"({span.start}, {span.end}, {span.label})")
            if reach is None or span.end > reach.end:
                reach = span
        return ordered, total - len(ordered)
    if policy == "keep_longest":
        key = lambda s: (-s.length, s.start, label_key(s))  # noqa: E731
    else:
        key = lambda s: (s.start, -s.length, label_key(s))  # noqa: E731
    kept: list[Span] = []
    occupied = bytearray()
    for span in sorted(candidates, key=key):
        if span.end > len(occupied):
            occupied.extend(b"\0" * (span.end - len(occupied)))
        if any(occupied[span.start:span.end]):
            continue
        occupied[span.start:span.end] = b"\1" * span.length
        kept.append(span)
    kept.sort(key=lambda s: (s.start, s.end))
    dropped = total - len(kept)
    if dropped:
        log.debug("resolve_overlaps(%s): dropped %d of %d spans", policy, dropped, total)
    return kept, dropped


def allowed_transitions(scheme: TagScheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard constraints of the scheme as boolean masks over tag ids.

    Returns ``(start, trans, end)`` with shapes ``(T,)``, ``(T, T)`` indexed ``[from, to]``, ``(T,)``;
    ``True`` means allowed. BIO: ``I-X`` may only follow ``B-X`` or ``I-X`` and cannot start a sequence.
    BIOES: ``B-X``/``I-X`` -> ``I-X``/``E-X`` only; ``O``/``E-*``/``S-*`` -> ``O``/``B-*``/``S-*`` only;
    a sequence starts with ``O``/``B-*``/``S-*`` and ends with ``O``/``E-*``/``S-*``.
    """
    tags = scheme.tags
    size = len(tags)
    parsed = [_split_tag(t) for t in tags]
    start = np.ones(size, dtype=np.bool_)
    end = np.ones(size, dtype=np.bool_)
    trans = np.zeros((size, size), dtype=np.bool_)
    if scheme.name == "BIO":
        for j, (p_to, l_to) in enumerate(parsed):
            start[j] = p_to != "I"
            for i, (p_from, l_from) in enumerate(parsed):
                trans[i, j] = p_to != "I" or (p_from in ("B", "I") and l_from == l_to)
        return start, trans, end
    for j, (p_to, l_to) in enumerate(parsed):
        start[j] = p_to in ("O", "B", "S")
        end[j] = p_to in ("O", "E", "S")
        for i, (p_from, l_from) in enumerate(parsed):
            if p_from in ("B", "I"):
                trans[i, j] = p_to in ("I", "E") and l_from == l_to
            else:
                trans[i, j] = p_to in ("O", "B", "S")
    return start, trans, end
