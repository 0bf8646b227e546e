"""What the medner spaCy components write on each Doc, and what they share (saving, policies).

What a component writes on each Doc
  ``doc.spans[spans_key]``  every prediction (overlaps allowed), sorted by position.
  ``doc.ents``              by ``ents_policy``:
                            ``"merge"`` (default of ``medner``): existing entities are kept and predictions
                            that overlap none of them are added (spaCy's EntityRuler behaviour);
                            ``"overwrite"``: predictions replace all existing entities;
                            ``"keep"`` (default of ``medner_lexicon``): ``doc.ents`` is left untouched.
                            Predictions that overlap each other once aligned to tokens cannot all be
                            entities: the longest is kept (``spacy.util.filter_spans``).
  on every span             ``label_``; ``kb_id_`` = ICD code ("" when not linked); ``._.score`` (the
                            confidence in the span, float in [0, 1], None for lexicon matches);
                            ``._.icd_name`` (canonical ICD name of the code, None when not linked);
                            ``._.match`` (how the code was found: exact / alias / normalised / fuzzy) and
                            ``._.link_score`` (the confidence in the code, in [0, 1]), both None when not
                            linked (:mod:`medner.lexicon.link`); ``._.char_offsets`` = ``(start, end)`` of the
                            predicted character span on ``doc.text`` (differs from the span's own boundaries
                            when it was expanded; a list ``[start, end]`` once the Doc went through msgpack, as
                            with ``nlp.pipe(n_process=2)`` or ``DocBin``). Scores are rounded by
                            :func:`medner.types.round_score`.

Both components implement ``score(examples)`` (what ``nlp.evaluate`` reports): ``ents_p/r/f`` and
``ents_per_type`` from spaCy's span scorer when they write ``doc.ents``, else ``spans_<key>_p/r/f`` and
``spans_<key>_per_type`` over their ``doc.spans`` group.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.tokens import Span as SpacySpan
from spacy.util import filter_spans

from medner.errors import ConfigError, ModelError
from medner.types import Span, round_score

log = logging.getLogger(__name__)

ENTS_POLICIES = ("keep", "merge", "overwrite")
EXTENSIONS = ("score", "icd_name", "match", "link_score", "char_offsets")
#: what the components write on a Doc (their factories' ``assigns``)
ASSIGNS = ("doc.ents", "doc.spans", "token.ent_iob", "token.ent_type", *(f"span._.{n}" for n in EXTENSIONS))
#: score weights of the factories: entity F1 counts, P and R are reported
SCORE_WEIGHTS = {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None}
META_FILE = "medner_component.json"
META_FORMAT = 1

for _name in EXTENSIONS:
    if not SpacySpan.has_extension(_name):
        SpacySpan.set_extension(_name, default=None)


def check_policy(policy: str, name: str) -> None:
    if policy not in ENTS_POLICIES:
        raise ConfigError(f"component {name!r}: unknown ents_policy {policy!r}", field="ents_policy",
                          fix=f"use one of {', '.join(ENTS_POLICIES)}")


class SpanWriter:
    """Writes medner spans onto Docs (alignment, ``doc.spans``, ``doc.ents``) and keeps ``stats``."""

    name: str
    spans_key: str
    ents_policy: str

    def __init__(self, name: str, spans_key: str, ents_policy: str) -> None:
        check_policy(ents_policy, name)
        self.name = name
        self.spans_key = spans_key
        self.ents_policy = ents_policy
        self.stats: Counter = Counter()
        self._warned = False

    def _write(self, doc: Doc, items: Sequence[Tuple[Span, Optional[str]]], counts: Counter) -> None:
        """Set ``doc.spans[self.spans_key]`` and ``doc.ents`` from ``(span, icd_name)`` pairs (``icd_name``:
        the name to show when the span carries none of its own)."""
        counts["docs"] += 1
        group: List[SpacySpan] = []
        seen = set()
        for span, icd_name in items:
            counts["spans"] += 1
            sp = doc.char_span(span.start, span.end, label=span.label, kb_id=span.code or "",
                               alignment_mode="expand")
            if sp is None or len(sp) == 0:
                counts["unaligned"] += 1
                log.debug("%s: span [%d, %d) %s covers no token; not written", self.name, span.start, span.end,
                          span.label)
                continue
            if (sp.start_char, sp.end_char) != (span.start, span.end):
                counts["expanded"] += 1
                log.debug("%s: span [%d, %d) %s expanded to token boundaries [%d, %d)", self.name, span.start,
                          span.end, span.label, sp.start_char, sp.end_char)
            else:
                counts["aligned"] += 1
            edges = (sp.start_char, sp.end_char)
            if edges in seen:  # spaCy keys `._` values by boundaries: the first span keeps them
                counts["shared_boundaries"] += 1
                log.debug("%s: span [%d, %d) %s shares token boundaries [%d, %d) with an earlier span and its "
                          "._ values", self.name, span.start, span.end, span.label, *edges)
            else:
                seen.add(edges)
                sp._.score = round_score(span.score)
                sp._.icd_name = (span.name or icd_name) if span.code else None
                sp._.match = span.match if span.code else None
                sp._.link_score = round_score(span.link_score) if span.code else None
                sp._.char_offsets = (span.start, span.end)
            group.append(sp)
        doc.spans[self.spans_key] = group
        if self.ents_policy == "keep":
            counts["ents_skipped"] += len(group)
            return
        chosen = filter_spans(group)
        if self.ents_policy == "overwrite":
            doc.ents = chosen
            added = chosen
        else:  # merge
            taken = set()
            for ent in doc.ents:
                taken.update(range(ent.start, ent.end))
            added = [sp for sp in chosen if not taken.intersection(range(sp.start, sp.end))]
            doc.set_ents(added, default="unmodified")
        counts["ents_added"] += len(added)
        counts["ents_skipped"] += len(group) - len(added)

    @property
    def writes_ents(self) -> bool:
        """Whether this component writes ``doc.ents`` (``ents_policy`` other than ``keep``)."""
        return self.ents_policy != "keep"

    def score(self, examples, **kwargs) -> dict:
        """Scores for ``nlp.evaluate``: ``ents_p/r/f`` and ``ents_per_type`` (spaCy's span scorer over
        ``doc.ents``) when the component writes entities; else (``ents_policy: keep``) ``spans_<key>_p/r/f`` and
        ``spans_<key>_per_type``: its ``doc.spans`` group against the reference entities."""
        if self.writes_ents:
            return Scorer.score_spans(examples, "ents", **kwargs)
        key = self.spans_key
        kwargs.setdefault("getter", lambda doc, attr: doc.spans[key] if key in doc.spans else doc.ents)
        kwargs.setdefault("allow_overlap", True)
        return Scorer.score_spans(examples, f"spans_{key}", **kwargs)

    def _report(self, counts: Counter) -> None:
        """Add one call's counts to ``stats`` and log a summary when spans were expanded or dropped."""
        self.stats.update(counts)
        moved, lost = counts["expanded"], counts["unaligned"]
        if moved or lost:
            level = logging.INFO if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "%s: %d of %d spans expanded to token boundaries, %d covered no token (in %d docs; "
                    "totals in component.stats)", self.name, moved, counts["spans"], lost, counts["docs"])


def loading_saved_pipeline() -> bool:
    """True while spaCy builds a saved pipeline (``spacy.load`` of a folder or of an installed package):
    the component's files then come from ``from_disk``, so the paths in its config need not exist (a pipeline
    saved with ``store_model`` / ``store_lexicon`` carries its own copies to machines without the original).

    spaCy gives a factory no sign of this; its call stack does (``spacy.util.load_model_from_path``)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "load_model_from_path" and frame.f_globals.get("__name__") == "spacy.util":
            return True
        frame = frame.f_back
    return False


def read_meta(path: Path, name: str) -> dict:
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"component {name!r}: no {META_FILE} in the saved pipeline", where=str(path),
                         fix="save the pipeline again with nlp.to_disk") from None
    if meta.get("format") != META_FORMAT:
        raise ModelError(f"component {name!r}: saved format {meta.get('format')} is not {META_FORMAT}",
                         where=str(meta_path), field="format", fix="save the pipeline again with this medner")
    return meta


def copy_file(source: Path, target: Path) -> None:
    if target.exists() and target.resolve() == source.resolve():
        return
    shutil.copyfile(source, target)
