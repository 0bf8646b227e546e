"""displaCy HTML of annotated records that reads in Chinese: one colour per entity type, ICD codes in the
labels, the score and ICD name on hover, a legend.

    page = render_records(records).html       # Record.spans, e.g. from Annotator.predict_records
    page = render_docs(docs).html             # spaCy Docs after the `medner` component (doc.ents)

The page declares ``<meta charset="utf-8">`` and ``lang="zh-CN"`` and sets a CJK font stack
(:data:`FONT_STACK`: Noto Sans CJK / Source Han Sans, PingFang, Microsoft YaHei, WenQuanYi ...), so that
browsers pick an installed Chinese font instead of drawing boxes (on Debian: ``apt-get install fonts-noto-cjk``;
nothing is fetched from the network). A legend lists the types on the page with their colours. Each entity
reads ``疾病和诊断 C20.x00`` when it has a code, else just the type; hovering shows its type, score, ICD code
and name, how the code was found and the link score (the ``title`` attribute). Scores are rounded by
:func:`medner.types.round_score` (3 decimals shown). displaCy escapes the text; titles, labels and hover
text are escaped here. The ``ent`` style cannot draw overlapping spans: for each overlap the longest span is
kept and the others are counted in :attr:`RenderResult.hidden`.
"""
from __future__ import annotations

import hashlib
import html as html_lib
from dataclasses import dataclass
from typing import Iterable, Sequence

from spacy import displacy

from medner.types import Record, Span, round_score

__all__ = ["TYPE_COLOURS", "FONT_STACK", "RenderResult", "display_label", "hover_text", "render_docs",
           "render_records", "type_colour"]

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

#: fonts tried in order: CJK fonts of Linux (Noto / Source Han, WenQuanYi), macOS (PingFang, Hiragino) and
#: Windows (Microsoft YaHei, SimHei), then the generic family
FONT_STACK = ('"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "PingFang SC", '
              '"Hiragino Sans GB", "Microsoft YaHei", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "SimHei", '
              '"Heiti SC", "Droid Sans Fallback", sans-serif')

# displaCy's entity template with a hover title (``params``) and no kb link
_ENT_TEMPLATE = (
    '<mark class="entity" title="{title}" style="background: {bg}; padding: 0.45em 0.6em; margin: 0 0.25em; '
    'line-height: 1; border-radius: 0.35em;">{text}<span style="font-size: 0.8em; font-weight: bold; '
    'line-height: 1; border-radius: 0.35em; vertical-align: middle; margin-left: 0.5rem">{label}</span></mark>'
)
_PAGE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: {fonts}; font-size: 16px; padding: 2rem; color: #222; }}
h2 {{ font-size: 1.1em; margin: 1.5em 0 0.3em; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 0.4em 1em; align-items: center; margin-bottom: 1em; }}
.legend .swatch {{ display: inline-block; padding: 0.2em 0.6em; border-radius: 0.35em; font-weight: bold; }}
.legend .note {{ color: #666; font-size: 0.85em; }}
mark.entity {{ cursor: help; display: inline-block; margin-bottom: 0.3em !important; }}
</style>
</head>
<body>
{legend}
{content}
</body>
</html>
"""


def type_colour(label: str) -> str:
    """Background colour (``#rrggbb``) of an entity type; stable across runs."""
    if label in TYPE_COLOURS:
        return TYPE_COLOURS[label]
    digest = hashlib.sha1(label.encode("utf-8")).digest()
    return _PALETTE[digest[0] % len(_PALETTE)]


def display_label(label: str, code: str | None) -> str:
    """``"<type> <code>"`` when there is a code, else ``"<type>"``."""
    return f"{label} {code}" if code else label


def _fmt(value: float | None) -> str:
    return f"{round_score(value):.3f}"


def hover_text(span: Span) -> str:
    """What hovering an entity shows (plain text): type, score, ICD code and name, match kind, link score."""
    parts = [span.label]
    if span.score is not None:
        parts.append(f"score {_fmt(span.score)}")
    if span.code:
        parts.append(f"{span.code} {span.name}" if span.name else span.code)
        if span.match:
            parts.append(f"{span.match} link" + (f" {_fmt(span.link_score)}" if span.link_score is not None else ""))
    return " · ".join(parts)


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


def _legend(types: Sequence[str]) -> str:
    if not types:
        return '<div class="legend"><span class="note">no entities</span></div>'
    chips = "".join(f'<span class="swatch" style="background: {type_colour(t)}">{html_lib.escape(t)}</span>'
                    for t in types)
    return (f'<div class="legend">{chips}<span class="note">悬停实体可看得分与 ICD 名称 (hover: score, ICD name)'
            f'</span></div>')


def _page(items: list[tuple[str, str, list[Span]]], page: bool, title: str) -> RenderResult:
    """``items``: (title, text, spans) per record."""
    colours: dict[str, str] = {}
    types: dict[str, None] = {}
    parsed = []
    entities = hidden = 0
    for record_title, text, spans in items:
        shown, left_out = _non_overlapping(spans)
        hidden += left_out
        entities += len(shown)
        ents = []
        for s in shown:
            label = html_lib.escape(display_label(s.label, s.code))  # displaCy escapes text, not labels
            colours[label] = type_colour(s.label)
            types.setdefault(s.label)
            ents.append({"start": s.start, "end": s.end, "label": label,
                         "params": {"title": html_lib.escape(hover_text(s), quote=True)}})
        parsed.append({"text": text, "ents": ents, "title": html_lib.escape(record_title)})
    markup = displacy.render(parsed, style="ent", manual=True, page=False, jupyter=False,
                             options={"colors": colours, "template": _ENT_TEMPLATE})
    if page:
        markup = _PAGE.format(title=html_lib.escape(title), fonts=FONT_STACK, legend=_legend(list(types)),
                              content=markup)
    return RenderResult(html=markup, records=len(parsed), entities=entities, hidden=hidden)


def render_records(records: Iterable[Record], *, page: bool = True, title: str = "medner") -> RenderResult:
    """HTML (a full page with ``page=True``) of the records' spans, one section per record titled by its id."""
    return _page([(str(r.id), r.text, list(r.spans)) for r in records], page, title)


def render_docs(docs: Iterable, *, page: bool = True, titles: Sequence[str] | None = None,
                title: str = "medner") -> RenderResult:
    """HTML of spaCy Docs' ``doc.ents`` with ``kb_id_`` as the code and the ``._`` values of the medner
    components (score, ICD name, match, link score) on hover."""
    items = []
    for i, doc in enumerate(docs):
        spans = [Span(e.start_char, e.end_char, e.label_, code=e.kb_id_ or None, score=_ext(e, "score"),
                      name=_ext(e, "icd_name"), match=_ext(e, "match"), link_score=_ext(e, "link_score"))
                 for e in doc.ents]
        items.append((titles[i] if titles is not None else str(i), doc.text, spans))
    return _page(items, page, title)


def _ext(span, name: str):
    return getattr(span._, name) if span.has_extension(name) else None
