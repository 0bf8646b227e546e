"""ICD linking: give a disease or procedure mention its best ICD code, with a link score.

    linker = IcdLinker.from_lexicon("lexicons/build/lexicon_zh.tsv")
    linker.best("右肺上叶腺癌术后", "疾病和诊断")     # -> Link(code, canonical, score, method, term)
    span = linker.link(text, span)                   # the same span with `code` set; `score` untouched

Cascade, first hit wins (``score`` in brackets):

1. ``exact``: the mention is a lexicon term (official name or alias) as written [1.0];
2. ``normalised``: after folding (width, NFKC, case) and removing spaces, punctuation and bracketed notes
   [0.95]; then after also stripping what clinical text adds to a diagnosis -- laterality (``左``, ``双侧``),
   a leading bracketed site (``（直肠）``), status tails (``术后``, ``化疗后``, ``复发``, ``可能``, ``待查``),
   stage and grade tails (``III期``, ``II级``, ``T3N1M0``) [0.9];
3. ``fuzzy``: the term whose set of character bigrams is most similar to the mention's (Dice coefficient
   ``2|A∩B| / (|A|+|B|)``), found through an inverted bigram index (only terms sharing a bigram with the
   mention are scored, never a scan of the whole lexicon) [the Dice coefficient, at least ``min_score``].

Ties go to an official name over an alias, then to the earlier source of ``source_priority``, then to the
term closest in length. Only entries with a code are used; each span label is looked up in the entries of
its lexicon label (``label_map`` translates corpus labels, e.g. ``{"dis": "疾病和诊断"}``).

The link score is a property of the code, not of the span: :meth:`IcdLinker.link` keeps ``Span.score``
(the model's confidence) as it is; ask :meth:`IcdLinker.best` for the link score. Never imports torch.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from typing import NamedTuple

import numpy as np

from medner.lexicon.entry import LexiconEntry
from medner.lexicon.normalize import fold
from medner.lexicon.store import Lexicon, load_lexicon
from medner.types import Span

__all__ = ["IcdLinker", "Link", "normalise_mention", "mention_variants", "DEFAULT_SOURCE_PRIORITY"]

log = logging.getLogger(__name__)

DEFAULT_SOURCE_PRIORITY: tuple[str, ...] = ("icd10_national", "icd9cm3_national", "icd10_beijing", "gnuhealth_zh",
                                            "icd10_cn_3char")
SCORE_EXACT = 1.0
SCORE_NORMALISED = 0.95
SCORE_STRIPPED = 0.9

_BRACKETED = re.compile(r"[(（\[【［〔][^()（）\[\]【】［］〔〕]*[)）\]】］〕]")
_PUNCT = re.compile(r"[\s,，、。.;；:：!！?？'\"“”‘’`·\-—–_/\\|~～*＊#+＋]+")
_SIDE = re.compile(r"^(?:左右两侧|双侧|两侧|左侧|右侧|双|两|左|右)(?=.{2})")
_TAIL = re.compile(r"(?:综合治疗后|放化疗后|化疗后|放疗后|根治术后|姑息术后|切除术后|术后复发|术后|复发|转移后|可能性大|"
                   r"可能|待查|待排|史|疑似|\(?待排除\)?)$")
_STAGE = re.compile(r"(?:[ivx\d]+[abc]?[期级度型][abc]?|[ptyc]?t[\dxis]+[abc]?n[\dx]+[abc]?m[\dx]+[abc]?|"
                    r"\d+级(?:[高中低]危|极高危|很高危)?|[高中低]危|极高危|很高危)$")


def normalise_mention(text: str) -> str:
    """Folded text without bracketed notes, spaces and punctuation (the ``normalised`` key)."""
    out = fold(text)
    while True:
        new = _BRACKETED.sub("", out)
        if new == out:
            break
        out = new
    return _PUNCT.sub("", out)


def mention_variants(text: str) -> list[str]:
    """Normalised forms of a clinical mention with what clinical text adds stripped, most specific first:
    laterality, status and stage tails (``左肺上叶腺癌术后`` -> ``左肺上叶腺癌``, ``肺上叶腺癌``); the
    leading bracketed site is already gone in :func:`normalise_mention`. The plain normalised form is not
    repeated; forms shorter than 2 characters are dropped."""
    base = normalise_mention(text)
    seen = {base}
    out: list[str] = []
    current = base
    for _ in range(4):
        before = current
        for pattern in (_TAIL, _STAGE, _SIDE):
            current = pattern.sub("", current)
            if len(current) >= 2 and current not in seen:
                seen.add(current)
                out.append(current)
        if current == before:
            break
    return out


class Link(NamedTuple):
    """The best code for a mention: ``code``, the ``canonical`` (official) name, ``score`` in [0, 1], the
    cascade step (``exact`` / ``normalised`` / ``fuzzy``) and the lexicon ``term`` that matched."""

    code: str
    canonical: str
    score: float
    method: str
    term: str


@dataclass
class _Index:
    """Lookups for the entries of one lexicon label."""

    entries: list[LexiconEntry]
    exact: dict[str, int]
    normalised: dict[str, int]
    keys: list[str]                 # normalised key per term id
    sizes: np.ndarray               # shape (n_terms,): number of distinct bigrams per term
    postings: dict[str, np.ndarray]  # bigram -> term ids (int32, sorted)
    rank: np.ndarray                # shape (n_terms,): tie-break rank (lower is better)


def _grams(key: str, n: int) -> set[str]:
    if len(key) < n:
        return {key} if key else set()
    return {key[i:i + n] for i in range(len(key) - n + 1)}


class IcdLinker:
    """Links disease/procedure spans to ICD codes through exact, normalised and fuzzy lookups.

    ``entries``: lexicon entries or a :class:`~medner.lexicon.store.Lexicon`; ``labels``: the span labels to
    link (others pass through unchanged); ``label_map``: span label -> lexicon label (default: the same
    name); ``min_score``: the lowest Dice coefficient accepted by the fuzzy step; ``ngram``: n-gram size
    (2: bigrams); ``overwrite``: whether :meth:`link` replaces a code a span already has.
    """

    def __init__(self, entries: Iterable[LexiconEntry] | Lexicon, labels: Sequence[str] = ("疾病和诊断", "手术"), *,
                 label_map: Mapping[str, str] | None = None, min_score: float = 0.6, ngram: int = 2,
                 source_priority: Sequence[str] = DEFAULT_SOURCE_PRIORITY, overwrite: bool = False) -> None:
        if not 0.0 < min_score <= 1.0:
            raise ValueError(f"min_score must lie in (0, 1], got {min_score}")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.labels = tuple(labels)
        self.label_map = {label: (label_map or {}).get(label, label) for label in self.labels}
        self.min_score = min_score
        self.ngram = ngram
        self.overwrite = overwrite
        source_rank = {s: i for i, s in enumerate(source_priority)}
        wanted = set(self.label_map.values())
        grouped: dict[str, list[LexiconEntry]] = {label: [] for label in wanted}
        for entry in entries.entries if isinstance(entries, Lexicon) else entries:
            if entry.code and entry.label in wanted:
                grouped[entry.label].append(entry)
        self._index = {label: self._build(items, source_rank) for label, items in grouped.items()}
        # ICD code -> canonical name: official entries first, then by source priority
        self.names: dict[str, str] = {}
        for ix in self._index.values():
            for entry in sorted(ix.entries, key=lambda e: (e.is_alias, source_rank.get(e.source, len(source_rank)),
                                                             e.source, e.term)):
                self.names.setdefault(entry.code, entry.canonical)
        sizes = {label: len(ix.entries) for label, ix in self._index.items()}
        if not any(sizes.values()):
            log.warning("ICD linker has no coded entries for labels %s", sorted(wanted))
        log.debug("ICD linker: %s coded entries", sizes)

    @classmethod
    def from_lexicon(cls, path: str | PathLike, **kwargs) -> "IcdLinker":
        """Build from a lexicon file (:func:`medner.lexicon.store.load_lexicon`); kwargs as for the class."""
        return cls(load_lexicon(path), **kwargs)

    def _build(self, items: list[LexiconEntry], source_rank: Mapping[str, int]) -> _Index:
        def quality(e: LexiconEntry) -> tuple[int, int, str]:
            return (int(e.is_alias), source_rank.get(e.source, len(source_rank)), e.code or "")

        items = sorted(items, key=lambda e: (quality(e), e.term))
        exact: dict[str, int] = {}
        normalised: dict[str, int] = {}
        keys: list[str] = []
        buckets: dict[str, list[int]] = {}
        sizes: list[int] = []
        for i, e in enumerate(items):
            exact.setdefault(e.term, i)
            key = normalise_mention(e.term)
            keys.append(key)
            if key:
                normalised.setdefault(key, i)
            grams = _grams(key, self.ngram)
            sizes.append(len(grams))
            for g in grams:
                buckets.setdefault(g, []).append(i)
        postings = {g: np.asarray(ids, dtype=np.int32) for g, ids in buckets.items()}
        rank = np.arange(len(items), dtype=np.int64)  # items are sorted by quality already
        return _Index(items, exact, normalised, keys, np.asarray(sizes, dtype=np.float64), postings, rank)

    def __len__(self) -> int:
        return sum(len(ix.entries) for ix in self._index.values())

    # ----------------------------------------------------------------------------------------- lookups
    def best(self, mention: str, label: str | None = None) -> Link | None:
        """The best :class:`Link` for ``mention`` among the entries of ``label``'s lexicon label (None: all
        linked labels), or None when nothing reaches ``min_score``."""
        mention = mention.strip()
        if not mention:
            return None
        if label is None:
            indexes = [self._index[v] for v in dict.fromkeys(self.label_map.values())]
        else:
            target = self.label_map.get(label, label)
            if target not in self._index:
                return None
            indexes = [self._index[target]]
        for ix in indexes:  # exact
            i = ix.exact.get(mention)
            if i is not None:
                return self._link(ix, i, SCORE_EXACT, "exact")
        key = normalise_mention(mention)
        for ix in indexes:
            i = ix.normalised.get(key)
            if i is not None:
                return self._link(ix, i, SCORE_NORMALISED, "normalised")
        variants = mention_variants(mention)
        for form in variants:
            for ix in indexes:
                i = ix.normalised.get(form)
                if i is not None:
                    return self._link(ix, i, SCORE_STRIPPED, "normalised")
        best: tuple[tuple[float, int, int], _Index, int] | None = None
        for ix in indexes:
            for form in dict.fromkeys([key, *variants]):
                hit = self._fuzzy(ix, form)
                if hit is None:
                    continue
                score, i = hit
                order = (score, -abs(len(ix.keys[i]) - len(form)), -int(ix.rank[i]))
                if best is None or order > best[0]:
                    best = (order, ix, i)
        if best is None or best[0][0] < self.min_score:
            return None
        return self._link(best[1], best[2], round(best[0][0], 4), "fuzzy")

    def _fuzzy(self, ix: _Index, key: str) -> tuple[float, int] | None:
        grams = _grams(key, self.ngram)
        lists = [ix.postings[g] for g in grams if g in ix.postings]
        if not lists:
            return None
        # shape (n_terms,): number of shared bigrams with the mention
        shared = np.bincount(np.concatenate(lists), minlength=len(ix.entries))
        dice = 2.0 * shared / (ix.sizes + len(grams))
        top = float(dice.max())
        if top <= 0.0:
            return None
        tied = np.flatnonzero(dice >= top - 1e-12)
        if len(tied) > 1:  # official name and earlier source first, then closest length
            tied = sorted(tied, key=lambda i: (abs(len(ix.keys[i]) - len(key)), int(ix.rank[i])))
        return top, int(tied[0])

    @staticmethod
    def _link(ix: _Index, i: int, score: float, method: str) -> Link:
        e = ix.entries[i]
        return Link(e.code or "", e.canonical, score, method, e.term)

    # ------------------------------------------------------------------------------------------- spans
    def link(self, text: str, span: Span) -> Span:
        """``span`` with ``code`` set to the best link of ``text[span.start:span.end]`` (offsets, label,
        score and source unchanged); spans of other labels, already coded spans (unless ``overwrite``)
        and spans without a link come back as they are."""
        if span.label not in self.label_map or (span.code and not self.overwrite):
            return span
        found = self.best(text[span.start:span.end], span.label)
        if found is None:
            return span
        return replace(span, code=found.code)

    __call__ = link

    def link_spans(self, text: str, spans: Iterable[Span]) -> list[Span]:
        """:meth:`link` applied to every span of one text."""
        return [self.link(text, s) for s in spans]
