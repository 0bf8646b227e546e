"""displaCy HTML of annotated records: one colour per entity type, ICD codes in the labels.

    page = render_records(records).html       # Record.spans, e.g. from Annotator.predict_records
    page = render_docs(docs).html             # spaCy Docs after the `medner` component (doc.ents)

A label reads ``疾病和诊断 C20.x00`` when the span has a code, else just the type. displaCy escapes the
text; titles (record ids) and labels are escaped here. The ``ent`` style cannot draw overlapping spans:
for each overlap the longest span is kept and the others are counted in :attr:`RenderResult.hidden`.
"""
from __future__ import annotations

import hashlib
import html as html_lib
from dataclasses import dataclass
from typing import Iterable, Sequence

from spacy import displacy

from medner.types import Record, Span

__all__ = ["TYPE_COLOURS", "RenderResult", "display_label", "render_docs", "render_records", "type_colour"]

# CCKS 2019 types get fixed colours; other types a pastel picked from the palette by a hash of the name.
TYPE_COLOURS = {
    "疾病和诊断": "#f4a6a6",
    "手术": "#9cc3f0",
    "药物": "#a8dc8c",
    "影像检查": "#f3cf7a",
    "实验室检验": "#cdaaf0",
    "解剖部位": "#8fd9cf",
}
_PALETTE = ("#f7b89c", "#b7c7f7", "#e3e38c", "#f0a8d8", "#a8e6b8", "#d6c2a0", "#b0e0f0", "#e0b0b0")


def type_colour(label: str) -> str:
    """Background colour (``#rrggbb``) of an entity type; stable across runs."""
    if label in TYPE_COLOURS:
        return TYPE_COLOURS[label]
    digest = hashlib.sha1(label.encode("utf-8")).digest()
    return _PALETTE[digest[0] % len(_PALETTE)]


def display_label(label: str, code: str | None) -> str:
    """``"<type> <code>"`` when there is a code, else ``"<type>"``."""
    return f"{label} {code}" if code else label


@dataclass
class RenderResult:
    """The page and what is on it: ``records`` drawn, ``entities`` drawn, ``hidden`` overlapping spans left out."""

    html: str
    records: int
    entities: int
    hidden: int


def _non_overlapping(spans: Sequence[Span]) -> tuple[list[Span], int]:
    """Longest-first greedy choice of non-overlapping spans (sorted by start) and the number left out."""
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.length, s.start)):
        if not any(span.overlaps(c) for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: (s.start, s.end)), len(spans) - len(chosen)


def _page(items: list[tuple[str, str, list[Span]]], page: bool) -> RenderResult:
    """``items``: (title, text, spans) per record."""
    colours: dict[str, str] = {}
    parsed = []
    entities = hidden = 0
    for title, text, spans in items:
        shown, left_out = _non_overlapping(spans)
        hidden += left_out
        entities += len(shown)
        ents = []
        for s in shown:
            label = html_lib.escape(display_label(s.label, s.code))  # displaCy escapes text, not labels
            colours[label] = type_colour(s.label)
            ents.append({"start": s.start, "end": s.end, "label": label})
        parsed.append({"text": text, "ents": ents, "title": html_lib.escape(title)})
    html = displacy.render(parsed, style="ent", manual=True, page=page, jupyter=False,
                           options={"colors": colours})
    return RenderResult(html=html, records=len(parsed), entities=entities, hidden=hidden)


def render_records(records: Iterable[Record], *, page: bool = True) -> RenderResult:
    """HTML (a full page with ``page=True``) of the records' spans, one section per record titled by its id."""
    return _page([(str(r.id), r.text, list(r.spans)) for r in records], page)


def render_docs(docs: Iterable, *, page: bool = True, titles: Sequence[str] | None = None) -> RenderResult:
    """HTML of spaCy Docs' ``doc.ents`` with ``kb_id_`` as the code (e.g. after the ``medner`` component)."""
    items = []
    for i, doc in enumerate(docs):
        spans = [Span(e.start_char, e.end_char, e.label_, code=e.kb_id_ or None) for e in doc.ents]
        items.append((titles[i] if titles is not None else str(i), doc.text, spans))
    return _page(items, page)
