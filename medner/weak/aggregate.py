"""Aggregation of labelling-function outputs into one set of weak spans per record, with a confidence.

Input: per record, the spans of every labelling function (LF), ``{lf_name: [Span, ...]}``, as produced
by :func:`apply_functions`. Output: sorted, non-overlapping spans with ``score`` (a confidence in [0, 1]),
``code`` (taken from a source that proposed the winning span) and ``source = "weak:<aggregator>"``.

:class:`MajorityVote`
    Span-level voting. Every distinct ``(start, end, label)`` proposed by some LF is a candidate; its votes
    are the summed weights of the LFs that proposed it, or (``nested``, the default) a span of the same
    label inside it, plus ``nested_other`` times those of spans of other labels inside it (0 by default).
    Overlaps are resolved greedily: most votes first, then the longer span, then the
    earlier one. ``score`` = the candidate's votes divided by the
    total weight of the LFs that proposed any span overlapping it (so 1.0 means "no LF disagrees").

:class:`DawidSkene`
    The Dawid & Skene (1979) model, fitted by EM without gold, over characters: each character has a hidden
    class (``O`` or one of the labels); each LF "says" the label of the span covering the character, or
    ``O``. For every LF the model estimates a confusion matrix ``theta[j, k, l] = P(LF j says l | class k)``
    (an LF can only say ``O`` or its own labels; the rest of its row is fixed at 0) and a class prior. So a
    source that is often contradicted by the others gets a low estimated precision, and its votes count
    less. Characters with the same vote pattern share one posterior, so EM runs over the few hundred
    distinct patterns rather than every character (numpy only).

    A composite function that rewrites other functions' spans (:class:`~medner.weak.extent.ExtentLF`, any
    LF with a ``base`` of functions) is not an independent source, which the model assumes: counted beside
    its bases it forms a correlated block that EM over-trusts (on CCKS 2019 it cost 手术 0.58 -> 0.32). So
    its spans are folded into its bases first (:func:`fold_composites`): a base function "says" the widened
    span instead of its own spans inside it.

    Decoding keeps the LFs' span boundaries: every candidate ``(start, end, label)`` gets the gain
    ``sum over its characters of (2 * P(label) - 1)`` (expected correct minus expected wrong characters);
    the set of non-overlapping candidates with the largest total gain is chosen exactly (weighted interval
    scheduling), skipping candidates whose mean posterior is below ``min_confidence``.
    ``score`` = the mean posterior of the label over the span's characters.

Neither imports torch.
"""
from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medner.types import Record, Span
from medner.weak.base import LabellingFunction, lf_labels

__all__ = [
    "Outputs", "apply_functions", "fold_composites", "MajorityVote", "DawidSkene", "DSResult", "dawid_skene",
    "AGGREGATORS", "make_aggregator", "aggregate",
]

log = logging.getLogger(__name__)

Outputs = dict[str, list[Span]]
"""The spans of each labelling function on one record, by LF name."""


def apply_functions(record: Record, functions: Sequence[LabellingFunction]) -> Outputs:
    """Run every LF on ``record``; spans are checked against the text and given ``source = lf.name``."""
    out: Outputs = {}
    n = len(record.text)
    for lf in functions:
        spans = []
        for span in lf.find_spans(record):
            if not 0 <= span.start < span.end <= n:
                raise ValueError(f"labelling function {lf.name} returned span ({span.start}, {span.end}) outside "
                                 f"record {record.id} (length {n})")
            if span.source != lf.name:
                span = Span(span.start, span.end, span.label, code=span.code, score=span.score, source=lf.name)
            spans.append(span)
        out[lf.name] = sorted(spans, key=lambda s: (s.start, s.end, s.label))
    return out


def fold_composites(outputs: Outputs, composites: Mapping[str, Sequence[str]]) -> Outputs:
    """``outputs`` with each composite's spans handed to its base functions (module docstring, DawidSkene).

    ``composites``: composite name -> base function names. Each base function's spans that lie inside a
    composite span of the same label are replaced by that span (once, with the composite's code: a narrower base
    span's code names another concept); the composite's own entry goes, so
    a composite that relabels its bases' spans (``ExtentLF.from_labels``) takes no part in Dawid–Skene.
    Idempotent: outputs without composite entries come back unchanged.
    """
    if not any(name in outputs for name in composites):
        return outputs
    out = dict(outputs)
    for name, bases in composites.items():
        wide = out.pop(name, [])
        if not wide:
            continue
        for base in bases:
            spans = out.get(base, [])
            kept, taken = [], set()
            for s in spans:
                outer = next((w for w in wide if w.label == s.label and w.start <= s.start and s.end <= w.end), None)
                if outer is None:
                    kept.append(s)
                elif (outer.start, outer.end) not in taken:
                    taken.add((outer.start, outer.end))
                    same = (s.start, s.end) == (outer.start, outer.end)  # else s.code names a narrower concept
                    kept.append(Span(outer.start, outer.end, s.label, code=s.code if same else outer.code,
                                     source=base))
            out[base] = sorted(kept, key=lambda s: (s.start, s.end, s.label))
    return out


@dataclass
class _Candidate:
    start: int
    end: int
    label: str
    sources: list[str] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.end - self.start


def _candidates(outputs: Outputs) -> list[_Candidate]:
    by_key: dict[tuple[int, int, str], _Candidate] = {}
    for name, spans in outputs.items():
        for s in spans:
            cand = by_key.get((s.start, s.end, s.label))
            if cand is None:
                cand = by_key[(s.start, s.end, s.label)] = _Candidate(s.start, s.end, s.label)
            if name not in cand.sources:
                cand.sources.append(name)
                if s.code:
                    cand.codes[name] = s.code
    return sorted(by_key.values(), key=lambda c: (c.start, c.end, c.label))


class MajorityVote:
    """Span-level (weighted) majority vote with greedy overlap resolution (module docstring).

    ``weights``: LF name -> weight (default 1 each); ``min_votes``: candidates with fewer votes are dropped;
    ``nested=True``: a candidate also counts the votes of the LFs that proposed a span of the *same label*
    strictly inside it (each LF once), so the whole of ``胃癌根治术+胆囊切除术`` is not outvoted by the pieces
    that two lists know; labels still compete only with exact votes. ``nested_other``: the weight (0-1) of
    the LFs that proposed a span of *another* label strictly inside it (flat corpora annotate the outermost
    entity: the disease lists that find 直肠癌 inside 直肠癌根治术 are evidence of an entity there, not
    against the procedure); 0 (default) ignores them; used only with ``nested=True``.
    """

    name = "majority"

    def __init__(self, weights: Mapping[str, float] | None = None, min_votes: float = 1.0,
                 nested: bool = True, nested_other: float = 0.0) -> None:
        if not 0.0 <= nested_other <= 1.0:
            raise ValueError(f"majority: nested_other must be in [0, 1], got {nested_other}")
        self.weights = dict(weights or {})
        self.min_votes = float(min_votes)
        self.nested = nested
        self.nested_other = float(nested_other)

    def fit(self, records: Sequence[Record], outputs: Sequence[Outputs]) -> "MajorityVote":
        """Nothing to learn; returns self (same interface as :class:`DawidSkene`)."""
        return self

    def _weight(self, name: str) -> float:
        return self.weights.get(name, 1.0)

    def _votes(self, names: Iterable[str]) -> float:
        """The summed weights of ``names``, exact and in a fixed order: a float sum depends on its order
        (0.1 + 0.2 + 0.3 is not 0.3 + 0.2 + 0.1), and a set's order on PYTHONHASHSEED."""
        return math.fsum(self._weight(n) for n in sorted(names))

    def predict_record(self, record: Record, outputs: Outputs) -> list[Span]:
        cands = _candidates(outputs)
        if not cands:
            return []
        if self.nested:
            votes = []
            for c in cands:
                voters, others = set(c.sources), set()
                for o in cands:
                    if c.start <= o.start and o.end <= c.end and (o.start, o.end) != (c.start, c.end):
                        (voters if o.label == c.label else others).update(o.sources)
                votes.append(math.fsum((self._votes(voters), self.nested_other * self._votes(others - voters))))
        else:
            votes = [self._votes(c.sources) for c in cands]
        # weight of the LFs proposing anything overlapping each candidate (itself included)
        spans_by_lf = [(name, [(s.start, s.end) for s in spans]) for name, spans in outputs.items() if spans]
        order = sorted(range(len(cands)), key=lambda i: (-votes[i], -cands[i].length, cands[i].start))
        taken: list[tuple[int, int]] = []
        out: list[Span] = []
        for i in order:
            c = cands[i]
            if votes[i] < self.min_votes:
                continue
            if any(c.start < e and s < c.end for s, e in taken):
                continue
            involved = self._votes(name for name, edges in spans_by_lf
                                   if any(s < c.end and c.start < e for s, e in edges))
            score = votes[i] / involved if involved else 0.0
            code = next((c.codes[n] for n in c.sources if n in c.codes), None)
            out.append(Span(c.start, c.end, c.label, code=code, score=round(score, 4), source=f"weak:{self.name}"))
            taken.append((c.start, c.end))
        return sorted(out)

    def predict(self, records: Sequence[Record], outputs: Sequence[Outputs]) -> list[list[Span]]:
        return [self.predict_record(r, o) for r, o in zip(records, outputs)]


# ----------------------------------------------------------------------------------------- Dawid-Skene

@dataclass
class DSResult:
    """A fitted Dawid-Skene model on a vote matrix.

    ``posterior``: shape (n_items, n_classes); ``confusion``: shape (n_sources, n_classes, n_classes),
    ``confusion[j, k, l] = P(source j says l | true class k)``; ``prior``: shape (n_classes,);
    ``log_likelihood`` per iteration.
    """

    posterior: np.ndarray
    confusion: np.ndarray
    prior: np.ndarray
    log_likelihood: list[float]
    n_iter: int
    converged: bool

    def source_precision(self) -> np.ndarray:
        """shape (n_sources, n_classes): ``P(true class l | source j says l)`` (nan where never said)."""
        # joint[j, k, l] = prior[k] * confusion[j, k, l]
        joint = self.prior[None, :, None] * self.confusion
        said = joint.sum(axis=1)  # shape (n_sources, n_classes): P(source says l)
        diag = np.einsum("jkk->jk", joint)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(said > 0, diag / said, np.nan)

    def source_recall(self) -> np.ndarray:
        """shape (n_sources, n_classes): ``P(source j says k | true class k)``."""
        return np.einsum("jkk->jk", self.confusion).copy()


def dawid_skene(votes: np.ndarray, n_classes: int, *, counts: np.ndarray | None = None,
                allowed: np.ndarray | None = None, init: np.ndarray | None = None, max_iter: int = 100,
                tol: float = 1e-6, smoothing: float = 0.01, prior_smoothing: float = 1.0,
                prior_strength: float = 0.0, null_class: int | None = None) -> DSResult:
    """Fit the Dawid-Skene model by EM.

    ``votes``: int array, shape (n_items, n_sources), class ids in ``[0, n_classes)``, or -1 for "this source
    abstains on this item" (ignored). ``counts``: shape (n_items,), how many identical items each row
    stands for (default 1). ``allowed``: bool, shape (n_sources, n_classes): the outputs each source can
    produce (default all); confusion entries outside it are fixed at 0. ``init``: initial posterior,
    shape (n_items, n_classes) (default: the normalised vote counts, an item without votes uniform; with
    ``null_class`` (the "no entity" class), votes for it count only where no source votes anything else).
    ``smoothing``: Dirichlet pseudo-count added to every allowed confusion cell; ``prior_smoothing`` to
    every class of the prior. ``prior_strength`` > 0 (with ``null_class``) adds a Dirichlet prior on each
    source's row of the null class, centred on its value under the initial posterior: ``prior_strength``
    times those initial counts are added in every M-step (MAP-EM). How often a source fires on items that
    are really "no entity" cannot be learned where it is the only source for its label (nothing agrees or
    disagrees with it), and plain EM then lets the null class absorb such a source; the prior keeps that
    rate near its initial value.
    Stops when the log-likelihood per item improves by less than ``tol``.
    """
    votes = np.asarray(votes, dtype=np.int64)
    if votes.ndim != 2:
        raise ValueError(f"expected votes of shape (n_items, n_sources), got {votes.shape}")
    n_items, n_sources = votes.shape
    if votes.size and (votes.max() >= n_classes or votes.min() < -1):
        raise ValueError(f"votes must lie in [-1, {n_classes - 1}], got [{votes.min()}, {votes.max()}]")
    counts = np.ones(n_items) if counts is None else np.asarray(counts, dtype=np.float64)
    allowed = np.ones((n_sources, n_classes), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if allowed.shape != (n_sources, n_classes):
        raise ValueError(f"expected allowed of shape {(n_sources, n_classes)}, got {allowed.shape}")
    # one-hot votes, shape (n_items, n_sources, n_classes); abstentions are all-zero rows
    onehot = np.zeros((n_items, n_sources, n_classes))
    rows, cols = np.nonzero(votes >= 0)
    onehot[rows, cols, votes[rows, cols]] = 1.0
    if init is None:
        post = onehot.sum(axis=1)
        if null_class is not None:
            other = np.delete(post, null_class, axis=1).sum(axis=1) > 0
            post[other, null_class] = 0.0
        empty = post.sum(axis=1) == 0
        post[empty] = 1.0
        post /= post.sum(axis=1, keepdims=True)
    else:
        post = np.asarray(init, dtype=np.float64).copy()
        if post.shape != (n_items, n_classes):
            raise ValueError(f"expected init of shape {(n_items, n_classes)}, got {post.shape}")
    history: list[float] = []
    total = counts.sum() or 1.0
    converged = False
    it = 0
    prior = np.full(n_classes, 1.0 / n_classes)
    confusion = np.full((n_sources, n_classes, n_classes), 1.0 / n_classes)
    # Dirichlet pseudo-counts, shape (n_sources, n_classes_true, n_classes_said)
    pseudo = smoothing * np.broadcast_to(allowed[:, None, :], (n_sources, n_classes, n_classes)).astype(np.float64)
    if prior_strength > 0:
        anchor = prior_strength * np.einsum("ik,ijl->jkl", post * counts[:, None], onehot)
        if null_class is not None:  # anchor only the row of the null class (see the docstring)
            keep = np.zeros((1, n_classes, 1))
            keep[0, null_class, 0] = 1.0
            anchor = anchor * keep
        pseudo = pseudo + anchor
    for it in range(1, max_iter + 1):
        # M-step. weighted[i, k] = counts[i] * post[i, k]
        weighted = post * counts[:, None]
        prior = weighted.sum(axis=0) + prior_smoothing
        prior /= prior.sum()
        # shape (n_sources, n_classes_true, n_classes_said)
        confusion = np.einsum("ik,ijl->jkl", weighted, onehot) + pseudo
        confusion *= allowed[:, None, :]
        confusion /= np.maximum(confusion.sum(axis=2, keepdims=True), 1e-300)
        # E-step. log P(item, class k) = log prior[k] + sum_j log confusion[j, k, vote_ij]
        log_conf = np.log(np.maximum(confusion, 1e-300))  # finite, so 0 * log_conf stays 0
        log_joint = np.log(prior)[None, :] + np.einsum("ijl,jkl->ik", onehot, log_conf)
        peak = log_joint.max(axis=1, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        joint = np.exp(log_joint - peak)
        norm = joint.sum(axis=1, keepdims=True)
        post = joint / np.maximum(norm, 1e-300)
        ll = float(((np.log(np.maximum(norm[:, 0], 1e-300)) + peak[:, 0]) * counts).sum() / total)
        history.append(ll)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    return DSResult(posterior=post, confusion=confusion, prior=prior, log_likelihood=history, n_iter=it,
                    converged=converged)


class DawidSkene:
    """Character-level Dawid-Skene label model with exact span decoding (module docstring).

    ``min_confidence``: candidates whose mean posterior is lower are never output; ``max_iter``/``tol``/
    ``smoothing``/``prior_strength`` go to :func:`dawid_skene` (``prior_strength`` > 0 when some label has
    a single source, as with lexicon-only types). Call :meth:`fit` on the records to label (no gold needed), then
    :meth:`predict`. After fitting, :attr:`labels` (class 0 is ``O``), :attr:`sources` and :attr:`result`
    describe the model; :meth:`reliability` gives per-source, per-label estimated precision and recall.
    """

    name = "dawid_skene"

    def __init__(self, min_confidence: float = 0.5, max_iter: int = 100, tol: float = 1e-6,
                 smoothing: float = 0.01, prior_strength: float = 0.0,
                 functions: Sequence[LabellingFunction] = ()) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        self.min_confidence = min_confidence
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.prior_strength = prior_strength
        self._composites = {lf.name: tuple(b.name for b in lf.base) for lf in functions if getattr(lf, "base", None)}
        self._declared = {lf.name: lf_labels(lf) for lf in functions if lf.name not in self._composites}
        self.labels: list[str] = ["O"]
        self.sources: list[str] = []
        self.result: DSResult | None = None
        self._pattern_index: dict[bytes, int] = {}
        self._patterns = np.zeros((0, 0), dtype=np.int16)  # shape (n_patterns, n_sources), set by fit()

    # -------------------------------------------------------------------------------------------- fit
    def _matrix(self, record: Record, outputs: Outputs) -> np.ndarray:
        """Vote matrix of one record, shape (len(text), n_sources), class ids (0 = O)."""
        index = {label: i for i, label in enumerate(self.labels)}
        mat = np.zeros((len(record.text), len(self.sources)), dtype=np.int16)
        for j, name in enumerate(self.sources):
            for s in outputs.get(name, ()):
                k = index.get(s.label)
                if k is not None:
                    mat[s.start:s.end, j] = k
        return mat

    def fit(self, records: Sequence[Record], outputs: Sequence[Outputs]) -> "DawidSkene":
        """Estimate source reliabilities and the class prior from the LF outputs on ``records``."""
        outputs = [fold_composites(o, self._composites) for o in outputs]
        names: list[str] = list(self._declared)
        for out in outputs:
            for name in out:
                if name not in names:
                    names.append(name)
        labels: set[str] = set()
        said: dict[str, set[str]] = defaultdict(set)
        for out in outputs:
            for name, spans in out.items():
                for s in spans:
                    said[name].add(s.label)
                    labels.add(s.label)
        for name, declared in self._declared.items():
            if declared:
                said[name].update(declared)
                labels.update(declared)
        self.sources = names
        self.labels = ["O", *sorted(labels)]
        allowed = np.zeros((len(names), len(self.labels)), dtype=bool)
        allowed[:, 0] = True
        for j, name in enumerate(names):
            for label in said[name]:
                allowed[j, self.labels.index(label)] = True
        if not records:
            raise ValueError("cannot fit a label model on zero records")
        mats = [self._matrix(r, o) for r, o in zip(records, outputs)]
        stacked = np.concatenate(mats, axis=0) if mats else np.zeros((0, len(names)), dtype=np.int16)
        if stacked.shape[0] == 0:
            raise ValueError("cannot fit a label model on empty texts")
        patterns, counts = np.unique(stacked, axis=0, return_counts=True)
        self._pattern_index = {row.tobytes(): i for i, row in enumerate(patterns)}
        self._patterns = patterns
        self.result = dawid_skene(patterns, len(self.labels), counts=counts, allowed=allowed, max_iter=self.max_iter,
                                  tol=self.tol, smoothing=self.smoothing, prior_strength=self.prior_strength,
                                  null_class=0)
        log.info("dawid-skene: %d characters, %d vote patterns, %d sources, %d labels, %d iterations%s",
                 stacked.shape[0], len(patterns), len(names), len(self.labels) - 1, self.result.n_iter,
                 "" if self.result.converged else " (not converged)")
        return self

    # -------------------------------------------------------------------------------------- predict
    def char_posterior(self, record: Record, outputs: Outputs) -> np.ndarray:
        """shape (len(text), n_classes): the posterior class distribution of every character."""
        if self.result is None:
            raise RuntimeError("call fit() before predict()")
        mat = self._matrix(record, fold_composites(outputs, self._composites))
        post = np.empty((mat.shape[0], len(self.labels)))
        missing = []
        for c, row in enumerate(mat):
            i = self._pattern_index.get(row.tobytes())
            if i is None:
                missing.append(c)
            else:
                post[c] = self.result.posterior[i]
        if missing:  # a pattern unseen in fit: compute it from the fitted parameters
            post[missing] = self._posterior_of(mat[missing])
        return post

    def _posterior_of(self, votes: np.ndarray) -> np.ndarray:
        assert self.result is not None
        log_conf = np.log(np.maximum(self.result.confusion, 1e-300))
        log_joint = np.log(self.result.prior)[None, :].repeat(len(votes), axis=0)
        for j in range(votes.shape[1]):
            log_joint += log_conf[j][:, votes[:, j]].T
        peak = log_joint.max(axis=1, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        joint = np.exp(log_joint - peak)
        return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)

    def predict_record(self, record: Record, outputs: Outputs) -> list[Span]:
        outputs = fold_composites(outputs, self._composites)
        cands = _candidates(outputs)
        if not cands:
            return []
        post = self.char_posterior(record, outputs)
        index = {label: i for i, label in enumerate(self.labels)}
        precision = self._precision_by_name()
        kept: list[tuple[_Candidate, float, float]] = []  # candidate, gain, mean posterior
        for c in cands:
            p = post[c.start:c.end, index[c.label]]
            mean = float(p.mean())
            if mean < self.min_confidence or mean <= 0.0:
                continue
            kept.append((c, float((2.0 * p - 1.0).sum()), mean))
        chosen = _best_intervals([(c.start, c.end, gain) for c, gain, _ in kept])
        out = []
        for i in chosen:
            c, _, mean = kept[i]
            code = None
            if c.codes:
                best = max(c.codes, key=lambda n: precision.get((n, c.label), 0.0))
                code = c.codes[best]
            out.append(Span(c.start, c.end, c.label, code=code, score=round(mean, 4), source=f"weak:{self.name}"))
        return sorted(out)

    def predict(self, records: Sequence[Record], outputs: Sequence[Outputs]) -> list[list[Span]]:
        return [self.predict_record(r, o) for r, o in zip(records, outputs)]

    # ---------------------------------------------------------------------------------- reliability
    def _precision_by_name(self) -> dict[tuple[str, str], float]:
        if self.result is None:
            return {}
        prec = self.result.source_precision()
        return {(name, label): float(prec[j, k]) for j, name in enumerate(self.sources)
                for k, label in enumerate(self.labels) if k and np.isfinite(prec[j, k])}

    def reliability(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{source: {label: {"precision": P(label | source says label), "recall": P(says label | label)}}}``
        for the labels each source can say (estimated without gold, per character)."""
        if self.result is None:
            raise RuntimeError("call fit() first")
        prec = self.result.source_precision()
        rec = self.result.source_recall()
        out: dict[str, dict[str, dict[str, float]]] = {}
        for j, name in enumerate(self.sources):
            row = {}
            for k, label in enumerate(self.labels):
                if k == 0 or not np.isfinite(prec[j, k]) or self.result.confusion[j, :, k].sum() == 0:
                    continue
                row[label] = {"precision": round(float(prec[j, k]), 4), "recall": round(float(rec[j, k]), 4)}
            out[name] = row
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready description of the fitted model."""
        if self.result is None:
            return {"aggregator": self.name, "fitted": False}
        return {"aggregator": self.name, "labels": self.labels[1:], "sources": self.sources,
                "prior": {label: round(float(p), 6) for label, p in zip(self.labels, self.result.prior)},
                "iterations": self.result.n_iter, "converged": self.result.converged,
                "reliability": self.reliability()}


def _best_intervals(items: Sequence[tuple[int, int, float]]) -> list[int]:
    """Indices of non-overlapping intervals ``(start, end, gain)`` with the largest total positive gain
    (weighted interval scheduling, O(n log n)); ties prefer fewer, earlier-ending intervals."""
    order = sorted((i for i, it in enumerate(items) if it[2] > 0), key=lambda i: (items[i][1], items[i][0]))
    ends = [items[i][1] for i in order]
    best = [0.0] * (len(order) + 1)
    take = [False] * (len(order) + 1)
    prev = [0] * (len(order) + 1)
    for n, i in enumerate(order, start=1):
        start, _, gain = items[i]
        p = bisect.bisect_right(ends, start, 0, n - 1)  # intervals 1..p end at or before start
        prev[n] = p
        with_it = best[p] + gain
        if with_it > best[n - 1] + 1e-12:
            best[n], take[n] = with_it, True
        else:
            best[n] = best[n - 1]
    chosen: list[int] = []
    n = len(order)
    while n > 0:
        if take[n]:
            chosen.append(order[n - 1])
            n = prev[n]
        else:
            n -= 1
    return sorted(chosen)


AGGREGATORS = ("majority", "dawid_skene")


def make_aggregator(method: str, functions: Sequence[LabellingFunction] = (), **options: Any):
    """``"majority"`` -> :class:`MajorityVote`, ``"dawid_skene"`` -> :class:`DawidSkene` (options passed on)."""
    if method == "majority":
        return MajorityVote(**options)
    if method == "dawid_skene":
        return DawidSkene(functions=functions, **options)
    raise ValueError(f"unknown aggregator {method!r}; valid: {', '.join(AGGREGATORS)}")


def aggregate(records: Sequence[Record], outputs: Sequence[Outputs], aggregator) -> list[Record]:
    """Fit ``aggregator`` on the outputs and return copies of ``records`` whose spans are the weak spans."""
    aggregator.fit(records, outputs)
    return [r.with_spans(spans) for r, spans in zip(records, aggregator.predict(records, outputs))]

