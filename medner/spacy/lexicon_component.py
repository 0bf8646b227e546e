"""spaCy pipeline component ``medner_lexicon``: leftmost-longest lexicon matches with ICD codes, no model.

    nlp.add_pipe("medner_lexicon", config={"lexicon": "lexicons/build/lexicon_zh.tsv"})  # doc.spans only
    nlp.add_pipe("medner_lexicon", config={"lexicon": "lexicons/build/lexicon_zh.tsv", "ents_policy": "merge"})
    # ... also doc.ents, like the `medner` component without a model

Never imports torch. What it writes on each Doc: :mod:`medner.spacy.writer`.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from medner.errors import ConfigError, LexiconError
from medner.lexicon.link import SCORE_ALIAS, SCORE_EXACT
from medner.lexicon.store import load_lexicon
from medner.spacy.writer import (ASSIGNS, META_FILE, META_FORMAT, SCORE_WEIGHTS, SpanWriter, copy_file,
                                 loading_saved_pipeline, read_meta)

__all__ = ["LexiconComponent", "make_medner_lexicon"]

log = logging.getLogger(__name__)


class LexiconComponent(SpanWriter):
    """The ``medner_lexicon`` pipe: leftmost-longest ICD lexicon matches (a weak labeller), no model.

    ``lexicon`` is a lexicon TSV (``medner lexicon build ... -o FILE``); ``labels`` keeps only those labels,
    ``label_priority`` and ``min_length`` are passed to :class:`~medner.lexicon.matcher.LexiconMatcher`.
    Matches carry the entry's code (``kb_id_``), canonical name (``._.icd_name``), ``._.match`` (``exact`` for
    an official name, ``alias`` for a derived one) and ``._.link_score``; ``._.score`` is None.
    ``ents_policy``: ``keep`` (default: ``doc.spans`` only, a weak labeller), ``merge`` or ``overwrite``
    (also ``doc.ents``).
    """

    def __init__(self, nlp: Optional[Language], name: str = "medner_lexicon", *, lexicon: Optional[str] = None,
                 labels: Optional[List[str]] = None, label_priority: Sequence[str] = (), min_length: int = 2,
                 ents_policy: str = "keep", spans_key: str = "medner_lexicon", store_lexicon: bool = True) -> None:
        super().__init__(name, spans_key, ents_policy)
        if not lexicon:
            raise ConfigError(f"component {name!r} needs a lexicon file", field="lexicon",
                              fix='nlp.add_pipe("medner_lexicon", config={"lexicon": "lexicons/build/lexicon_zh.tsv"})'
                                  " (build it with `medner lexicon build configs/lexicon_zh.yaml -o FILE`)")
        if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
            raise ConfigError(f"component {name!r}: min_length must be a whole number >= 1, got {min_length!r}",
                              field="min_length", fix="use 2 (the default: single characters are not matched) or 1")
        self.lexicon = str(lexicon)
        self.label_filter = list(labels) if labels is not None else None
        self.label_priority = list(label_priority)
        self.min_length = min_length
        self.store_lexicon = store_lexicon
        self._lexicon_path = Path(lexicon)
        self._matcher = None
        self._labels: Optional[tuple] = None
        if not loading_saved_pipeline():  # fail at add_pipe, not on the first document
            if not self._lexicon_path.is_file():
                raise LexiconError(f"component {name!r}: lexicon file not found", where=str(self._lexicon_path),
                                   field="lexicon", fix="build it with `medner lexicon build configs/lexicon_zh.yaml "
                                                        "-o lexicons/build/lexicon_zh.tsv`")
            _ = self.matcher  # a file that is no lexicon, too

    @property
    def matcher(self):
        """The :class:`~medner.lexicon.matcher.LexiconMatcher` (built on first access)."""
        if self._matcher is None:
            lex = load_lexicon(self._lexicon_path)
            self._labels = tuple(lex.labels())
            unknown = sorted(set(self.label_filter or ()) - set(self._labels))
            if unknown:  # a typo would match nothing, without a word
                raise ConfigError(f"component {self.name!r}: labels {unknown} are not in the lexicon "
                                  f"{self._lexicon_path} (its labels: {', '.join(self._labels)})", field="labels",
                                  fix="name labels the lexicon has, or leave `labels` out for all of them")
            self._matcher = lex.matcher(min_length=self.min_length, label_priority=self.label_priority,
                                        labels=self.label_filter)
            log.info("%s: %d lexicon keys from %s", self.name, len(self._matcher), self._lexicon_path)
        return self._matcher

    @property
    def labels(self) -> tuple:
        """Labels the component writes (what ``nlp.meta["labels"]`` shows for it)."""
        if self.label_filter is not None:
            return tuple(self.label_filter)
        if self._labels is None and self._lexicon_path.is_file():
            _ = self.matcher
        return self._labels or ()

    def __call__(self, doc: Doc) -> Doc:
        counts: Counter = Counter()
        self._set(doc, counts)
        self._report(counts)
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        for docs in minibatch(stream, size=batch_size):
            counts: Counter = Counter()
            for doc in docs:
                self._set(doc, counts)
            self._report(counts)
            yield from docs

    def _set(self, doc: Doc, counts: Counter) -> None:
        items = []
        for m in self.matcher.matches(doc.text):
            span, entry = m.to_span(), m.entry
            if entry.code:
                alias = entry.is_alias
                span = replace(span, name=entry.canonical, match="alias" if alias else "exact",
                               link_score=SCORE_ALIAS if alias else SCORE_EXACT)
            items.append((span, None))
        self._write(doc, items, counts)

    def to_disk(self, path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write ``medner_component.json`` and, with ``store_lexicon``, a copy of the lexicon file."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        source = self._lexicon_path.resolve()
        meta = {"format": META_FORMAT, "stored": bool(self.store_lexicon), "lexicon": str(source)}
        if self.store_lexicon:
            copy_file(source, path / "lexicon.tsv")
            meta["lexicon"] = "lexicon.tsv"
        (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    def from_disk(self, path, *, exclude: Iterable[str] = tuple()) -> "LexiconComponent":
        path = Path(path)
        meta = read_meta(path, self.name)
        self._lexicon_path = path / meta["lexicon"] if meta.get("stored") else Path(meta["lexicon"])
        self._matcher = None
        _ = self.matcher
        return self

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_matcher"] = None
        return state


@Language.factory(
    "medner_lexicon",
    assigns=list(ASSIGNS),
    default_score_weights=SCORE_WEIGHTS,
    default_config={"lexicon": None, "labels": None, "label_priority": [], "min_length": 2, "ents_policy": "keep",
                    "spans_key": "medner_lexicon", "store_lexicon": True},
)
def make_medner_lexicon(nlp: Language, name: str, *, lexicon: Optional[str], labels: Optional[List[str]],
                        label_priority: List[str], min_length: int, ents_policy: str, spans_key: str,
                        store_lexicon: bool) -> LexiconComponent:
    """``lexicon``: lexicon TSV; ``labels``: keep only these (None = all); ``label_priority``: labels, highest
    first, for terms with several labels; ``min_length``: shortest term; others as for ``medner``."""
    return LexiconComponent(nlp, name, lexicon=lexicon, labels=labels, label_priority=label_priority,
                            min_length=min_length, ents_policy=ents_policy, spans_key=spans_key,
                            store_lexicon=store_lexicon)
