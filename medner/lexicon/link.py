"""ICD linking: give a disease or procedure mention its ICD code, the code's name, how the code was found and
how sure the link is.

    linker = IcdLinker.from_lexicon("lexicons/build/lexicon_zh.tsv")
    linker.best("右肺上叶腺癌术后", "疾病和诊断")  # -> Link(code, canonical, score, match, term)
    span = linker.link(text, span)                # the span with code, name, match and link_score set

Cascade, first hit wins (``match`` kind, ``link_score`` in brackets):

1. ``exact``: the mention is an official ICD name as written [1.0];
2. ``alias``: the mention is a derived alias of an official name as written (``胃癌`` for ``胃恶性肿瘤``,
   see :mod:`medner.lexicon.normalize`) [0.95];
3. ``normalised``: after folding (width, NFKC, case) and removing spaces, punctuation and bracketed notes
   [0.9]; then after also stripping what clinical text adds to a diagnosis [0.85] -- laterality (``左``,
   ``双侧``), a leading bracketed site (``（直肠）``), status tails (``术后``, ``化疗后``, ``复发``, ``可能``,
   ``待查``, ``原因待查``), stage and grade tails (``III期``, ``II级``, ``T3N1M0``), differentiation,
   multiplicity, amount and severity words (``中分化``, ``多发``, ``少量``, ``重度``), a ``伴 …`` tail that
   names no second diagnosis (``房颤伴长间歇``, not ``胃癌伴贲门梗阻``), and
   finally the morphology generalised (``直肠腺癌`` -> ``直肠癌`` -> ``直肠恶性肿瘤``). Each step only
   removes detail, so what it finds is the mention's code or a parent of it;
4. ``fuzzy``: the terms whose sets of character bigrams are most similar to the mention's (Dice coefficient
   ``2|A∩B| / (|A|+|B|)``), found through an inverted bigram index (only terms sharing a bigram with the
   mention are scored, never a scan of the whole lexicon); the best one that passes the head-word check
   (below) and reaches ``min_score`` [the Dice coefficient].

Head-word check (:mod:`medner.lexicon.heads`): the morphology (``腺癌``, ``炎``, ``结石`` ...; for procedures
the operation: ``切除术``, ``吻合术`` ...) and the site of the term must agree with the mention's, or be
broader (a parent). A fuzzy candidate that fails is never emitted: ``十二指肠乳头低分化腺癌`` (a carcinoma)
does not get the code of ``十二指肠乳头炎`` (an inflammation), nor ``胰十二指肠切除术`` that of
``十二指肠切除术``. ``head_check=False`` turns it off (the cascade as it was before the check).

Default threshold: fuzzy links with a Dice coefficient below :data:`FUZZY_MIN_SCORE` are not emitted
(``min_score``). Link precision per match kind, measured on CCKS 2019 dev: ``BENCHMARKS.md`` and
``scripts/bench/bench_link.py``.

Ties go to an official name over an alias, then to the earlier source of ``source_priority``, then to the
term closest in length. Only entries with a code are used; each span label is looked up in the entries of
its lexicon label (``label_map`` translates corpus labels, e.g. ``{"dis": "疾病和诊断"}``).

:meth:`IcdLinker.link` keeps ``Span.score`` (the model's confidence in the span) as it is and sets
``Span.link_score`` (the confidence in the code). Never imports torch.
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
from medner.lexicon.heads import DISEASE_HEADS, disagreement
from medner.lexicon.normalize import fold
from medner.lexicon.store import Lexicon, load_lexicon
from medner.types import Span

__all__ = ["IcdLinker", "Link", "MATCH_KINDS", "FUZZY_MIN_SCORE", "normalise_mention", "mention_variants",
           "DEFAULT_SOURCE_PRIORITY"]

log = logging.getLogger(__name__)

DEFAULT_SOURCE_PRIORITY: tuple[str, ...] = ("icd10_national", "icd9cm3_national", "icd10_beijing", "gnuhealth_zh",
                                            "icd10_cn_3char")
MATCH_KINDS: tuple[str, ...] = ("exact", "alias", "normalised", "fuzzy")
SCORE_EXACT = 1.0
SCORE_ALIAS = 0.95
SCORE_NORMALISED = 0.9
SCORE_STRIPPED = 0.85
#: the lowest Dice coefficient of a fuzzy link emitted by default (chosen on CCKS 2019 dev: BENCHMARKS.md)
FUZZY_MIN_SCORE = 0.6
_FUZZY_CANDIDATES = 64  # best-scoring fuzzy candidates tried against the head-word check

_BRACKETED = re.compile(r"[(（\[【［〔<《][^()（）\[\]【】［］〔〕<>《》]*[)）\]】］〕>》]")
_PUNCT = re.compile(r"[\s,，。.;；:：!！?？'\"“”‘’`·\-—–_\\|~～*＊#]+")
_SIDE = re.compile(r"^(?:左右两侧|双侧|两侧|左侧|右侧|双|两|左|右)(?=.{2})")
_TAIL = re.compile(r"(?:综合治疗后|放化疗后|化疗后|放疗后|治疗后|根治术后|姑息术后|切除术后|术后复发|术后|复发|转移后|"
                   r"可能性大|可能|原因待查|原因不明|原因不能明确|待查|待排|史|疑似|\(?待排除\)?)$")
_STAGE = re.compile(r"(?:[ivx\d]+[abc]?\d?[期级度型][abc]?\d?|[ptyc]?t[\dxis]+[abc]?n[\dx]+[abc]?m[\dx]+[abc]?|"
                    r"\d+级(?:[高中低]危|极高危|很高危)?组?|[高中低]危组?|极高危组?|很高危组?|[急慢]性期|急性加重期)$")
_MODIFIER = re.compile(r"[高中低](?:[至到]?[高中低])?分化|多发性?|单发|少量|中量|大量|少许|轻度|中度|重度|早期|晚期|"
                       r"早(?=癌)")
_WITH = re.compile(r"(?:伴有|伴|合并|并(?!发))(?P<what>..+)$")
_MORPHOLOGY = re.compile(r"(?<=[^性状型])(?:腺鳞癌|鳞状细胞癌|鳞癌|腺癌)$")
_CANCER = re.compile(r"(?<=.)癌$")
#: clinical abbreviations written out before matching (``房颤`` -> ``心房颤动``; ``胃ca`` -> ``胃癌``)
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    (r"冠心病", "冠状动脉粥样硬化性心脏病"), (r"(?<!心)房颤", "心房颤动"), (r"(?<!心)房扑", "心房扑动"),
    (r"心衰(?!竭)", "心力衰竭"), (r"慢支(?!气管)炎?", "慢性支气管炎"), (r"慢阻肺", "慢性阻塞性肺疾病"),
    (r"甲亢", "甲状腺功能亢进"), (r"甲减", "甲状腺功能减退"), (r"([甲乙丙丁戊])肝", r"\1型病毒性肝炎"),
    (r"([甲乙丙丁戊])型肝炎", r"\1型病毒性肝炎"), (r"(?<=[\u4e00-\u9fff])ca(?![a-z])", "癌"),
    (r"(?<=[\u4e00-\u9fff])mt(?![a-z])", "恶性肿瘤"),
)
_ABBREVIATIONS = tuple((re.compile(p), r) for p, r in ABBREVIATIONS)


def expand_abbreviations(key: str) -> str:
    """``key`` (a normalised mention) with the clinical abbreviations of :data:`ABBREVIATIONS` written out."""
    for pattern, replacement in _ABBREVIATIONS:
        key = pattern.sub(replacement, key)
    return key


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
    abbreviations written out (:data:`ABBREVIATIONS`), laterality, status and stage tails
    (``左肺上叶腺癌术后`` -> ``左肺上叶腺癌``, ``肺上叶腺癌``), then
    differentiation, multiplicity, amount and severity words, then a ``伴 …`` tail, then the morphology
    generalised (``肺上叶腺癌`` -> ``肺上叶癌`` -> ``肺上叶恶性肿瘤``). Every form only drops detail (its code is
    the mention's or a parent). The leading bracketed site is already gone in :func:`normalise_mention`; the
    plain normalised form is not repeated; forms shorter than 2 characters are dropped."""
    base = normalise_mention(text)
    seen = {base}
    out: list[str] = []

    def add(form: str) -> None:
        if len(form) >= 2 and form not in seen:
            seen.add(form)
            out.append(form)

    def strip_ends(form: str) -> str:
        for _ in range(4):
            before = form
            for pattern in (_TAIL, _STAGE, _SIDE):
                form = pattern.sub("", form)
                add(form)
            if form == before:
                break
        return form

    expanded = expand_abbreviations(base)
    add(expanded)
    current = strip_ends(expanded)
    for pattern in (_MODIFIER, _WITH):
        found = pattern.search(current)
        if pattern is _WITH and found and found.group("what").endswith(DISEASE_HEADS):
            continue  # "X伴Y" with Y a diagnosis is two diagnoses: X's code alone is partial
        stripped = pattern.sub("", current)
        if stripped != current and len(stripped) >= 2:
            current = strip_ends(stripped)
            add(current)
    for form in list(out) or [base]:
        general = _MORPHOLOGY.sub("癌", form)
        if general != form:
            add(general)
    for form in list(out) or [base]:
        add(_CANCER.sub("恶性肿瘤", form))
    return out


class Link(NamedTuple):
    """A code for a mention: ``code``, the ``canonical`` (official) name, ``score`` in [0, 1] (the link score),
    the ``match`` kind (``exact`` / ``alias`` / ``normalised`` / ``fuzzy``, :data:`MATCH_KINDS`) and the lexicon
    ``term`` that matched."""

    code: str
    canonical: str
    score: float
    match: str
    term: str

    @property
    def method(self) -> str:
        """Former name of :attr:`match`."""
        return self.match


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
    """Links disease/procedure spans to ICD codes through exact, alias, normalised and fuzzy lookups.

    ``entries``: lexicon entries or a :class:`~medner.lexicon.store.Lexicon`; ``labels``: the span labels to
    link (others pass through unchanged); ``label_map``: span label -> lexicon label (default: the same
    name); ``min_score``: the lowest Dice coefficient of a fuzzy link (default :data:`FUZZY_MIN_SCORE`);
    ``head_check``: refuse fuzzy links whose morphology or site disagrees with the mention's
    (:mod:`medner.lexicon.heads`); ``ngram``: n-gram size (2: bigrams); ``overwrite``: whether :meth:`link`
    replaces a code a span already has.
    """

    def __init__(self, entries: Iterable[LexiconEntry] | Lexicon, labels: Sequence[str] = ("疾病和诊断", "手术"), *,
                 label_map: Mapping[str, str] | None = None, min_score: float = FUZZY_MIN_SCORE,
                 head_check: bool = True, ngram: int = 2, source_priority: Sequence[str] = DEFAULT_SOURCE_PRIORITY,
                 overwrite: bool = False) -> None:
        if not 0.0 < min_score <= 1.0:
            raise ValueError(f"min_score must lie in (0, 1], got {min_score}")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.labels = tuple(labels)
        self.label_map = {label: (label_map or {}).get(label, label) for label in self.labels}
        self.min_score = min_score
        self.head_check = head_check
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
        """The :class:`Link` for ``mention`` among the entries of ``label``'s lexicon label (None: all linked
        labels), or None when no exact, alias or normalised match exists and no fuzzy candidate both
        reaches ``min_score`` and passes the head-word check."""
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
        for ix in indexes:  # exact / alias
            i = ix.exact.get(mention)
            if i is not None:
                return self._link(ix, i, SCORE_ALIAS if ix.entries[i].is_alias else SCORE_EXACT,
                                  "alias" if ix.entries[i].is_alias else "exact")
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
                for score, i in self._fuzzy(ix, form):
                    order = (score, -abs(len(ix.keys[i]) - len(form)), -int(ix.rank[i]))
                    if best is not None and order <= best[0]:
                        break  # candidates come best first: none of the rest can win
                    if self.head_check and disagreement(form, ix.keys[i], ix.entries[i].code):
                        continue
                    best = (order, ix, i)
                    break
        if best is None:
            return None
        return self._link(best[1], best[2], round(best[0][0], 4), "fuzzy")

    def _fuzzy(self, ix: _Index, key: str) -> list[tuple[float, int]]:
        """Up to ``_FUZZY_CANDIDATES`` ``(dice, term id)`` with dice >= ``min_score``, best first (ties: closest
        length, then rank)."""
        grams = _grams(key, self.ngram)
        lists = [ix.postings[g] for g in grams if g in ix.postings]
        if not lists:
            return []
        # shape (n_terms,): number of shared bigrams with the mention
        shared = np.bincount(np.concatenate(lists), minlength=len(ix.entries))
        dice = 2.0 * shared / (ix.sizes + len(grams))
        found = np.flatnonzero(dice >= self.min_score - 1e-12)
        if len(found) > _FUZZY_CANDIDATES:
            found = found[np.argsort(-dice[found], kind="stable")[:_FUZZY_CANDIDATES]]
        order = sorted(found, key=lambda i: (-round(float(dice[i]), 12), abs(len(ix.keys[i]) - len(key)),
                                             int(ix.rank[i])))
        return [(float(dice[i]), int(i)) for i in order]

    @staticmethod
    def _link(ix: _Index, i: int, score: float, match: str) -> Link:
        e = ix.entries[i]
        return Link(e.code or "", e.canonical, score, match, e.term)

    # ------------------------------------------------------------------------------------------- spans
    def link(self, text: str, span: Span) -> Span:
        """``span`` with ``code``, ``name`` (the canonical ICD name), ``match`` and ``link_score`` set from the
        link of ``text[span.start:span.end]`` (offsets, label, score and source unchanged); spans of other
        labels, already coded spans (unless ``overwrite``) and spans without a link come back as they are."""
        if span.label not in self.label_map or (span.code and not self.overwrite):
            return span
        found = self.best(text[span.start:span.end], span.label)
        if found is None:
            return span
        return replace(span, code=found.code, name=found.canonical, match=found.match, link_score=found.score)

    __call__ = link

    def link_spans(self, text: str, spans: Iterable[Span]) -> list[Span]:
        """:meth:`link` applied to every span of one text."""
        return [self.link(text, s) for s in spans]
