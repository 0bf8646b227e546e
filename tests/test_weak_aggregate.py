"""Aggregation: Dawid-Skene recovers known source accuracies (oracle), exact interval decoding (brute-force
oracle), majority vote semantics, and span-level aggregation on synthetic records."""
from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from medner.types import Record, Span
from medner.weak.aggregate import (DawidSkene, MajorityVote, _best_intervals, aggregate, apply_functions,
                                   dawid_skene, fold_composites, make_aggregator)
from medner.weak.base import RegexLF
from medner.weak.extent import ExtentLF


def simulate(accuracies, n=4000, classes=4, seed=0, abstain=0.0):
    rng = np.random.default_rng(seed)
    p = np.array([0.4, 0.3, 0.2, 0.1][:classes])
    truth = rng.choice(classes, n, p=p / p.sum())
    votes = np.empty((n, len(accuracies)), dtype=int)
    for j, acc in enumerate(accuracies):
        right = rng.random(n) < acc
        wrong = (truth + rng.integers(1, classes, n)) % classes  # a uniformly chosen other class
        votes[:, j] = np.where(right, truth, wrong)
        votes[rng.random(n) < abstain, j] = -1
    return truth, votes


def majority(votes, classes):
    out = []
    for row in votes:
        counts = np.bincount(row[row >= 0], minlength=classes)
        out.append(int(counts.argmax()))
    return np.array(out)


@pytest.mark.parametrize("abstain", [0.0, 0.3])
def test_dawid_skene_recovers_source_accuracies(abstain: float) -> None:
    accuracies = [0.92, 0.75, 0.6, 0.4, 0.35]
    truth, votes = simulate(accuracies, abstain=abstain)
    result = dawid_skene(votes, 4)
    estimated = [float((result.confusion[j].diagonal() * result.prior).sum()) for j in range(len(accuracies))]
    # the ranking of sources by estimated accuracy is the true ranking, and each estimate is close
    assert np.argsort(estimated).tolist() == np.argsort(accuracies).tolist()
    assert np.allclose(estimated, accuracies, atol=0.05)
    ds_acc = (result.posterior.argmax(1) == truth).mean()
    mv_acc = (majority(votes, 4) == truth).mean()
    assert ds_acc >= mv_acc
    assert result.converged
    assert np.allclose(result.posterior.sum(1), 1.0)
    # the log-likelihood of EM never decreases (up to float noise)
    assert all(b >= a - 1e-9 for a, b in zip(result.log_likelihood, result.log_likelihood[1:]))


def test_dawid_skene_ignores_spammers_that_outvote_good_sources() -> None:
    # three informative sources against four independent random ones (DS needs at least three informative,
    # conditionally independent sources to be identifiable): majority vote is often outvoted, EM is not
    rng = np.random.default_rng(1)
    truth, good = simulate([0.8, 0.75, 0.7], n=3000, classes=3, seed=2)
    votes = np.hstack([good, rng.integers(0, 3, (3000, 4))])
    result = dawid_skene(votes, 3)
    ds_acc = (result.posterior.argmax(1) == truth).mean()
    mv_acc = (majority(votes, 3) == truth).mean()
    assert ds_acc > mv_acc + 0.05
    diag = np.einsum("jkk->jk", result.confusion).mean(axis=1)
    assert diag[:3].min() > 0.6 and diag[3:].max() < 0.4  # spammers are recognised as chance (1/3)


def test_dawid_skene_input_checks() -> None:
    with pytest.raises(ValueError, match="shape"):
        dawid_skene(np.zeros(3, dtype=int), 2)
    with pytest.raises(ValueError, match="votes must lie"):
        dawid_skene(np.array([[0, 5]]), 2)
    with pytest.raises(ValueError, match="allowed"):
        dawid_skene(np.array([[0, 1]]), 2, allowed=np.ones((3, 2), bool))


def brute_force(items):
    best = 0.0
    for r in range(len(items) + 1):
        for combo in itertools.combinations(range(len(items)), r):
            chosen = [items[i] for i in combo]
            if any(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(chosen, 2)):
                continue
            best = max(best, sum(c[2] for c in chosen))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_best_intervals_is_optimal(seed: int) -> None:
    rnd = random.Random(seed)
    items = []
    for _ in range(rnd.randint(0, 9)):
        start = rnd.randint(0, 15)
        items.append((start, start + rnd.randint(1, 6), round(rnd.uniform(-1, 3), 2)))
    chosen = _best_intervals(items)
    picked = [items[i] for i in chosen]
    assert not any(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(picked, 2))
    assert sum(p[2] for p in picked) == pytest.approx(brute_force(items))


class Fixed:
    """A labelling function that returns prepared spans per record id."""

    def __init__(self, name, spans_by_id, labels=None):
        self.name = name
        self.spans = spans_by_id
        if labels is not None:
            self.labels = labels

    def find_spans(self, record):
        return [Span(s, e, lab, code=code) for s, e, lab, code in self.spans.get(record.id, [])]


def test_majority_vote_semantics() -> None:
    record = Record("r", "abcdefghij")
    lfs = [Fixed("a", {"r": [(0, 3, "X", "C1"), (5, 7, "Y", None)]}),
           Fixed("b", {"r": [(0, 3, "X", None), (4, 8, "Z", None)]}),
           Fixed("c", {"r": [(1, 3, "Y", None), (5, 7, "Y", None)]})]
    outputs = apply_functions(record, lfs)
    assert all(s.source == name for name, spans in outputs.items() for s in spans)
    spans = MajorityVote().predict_record(record, outputs)
    got = [(s.start, s.end, s.label, s.code, s.score, s.source) for s in spans]
    # (0,3,X) has 2 votes of the 3 LFs touching it; (5,7,Y) 2 votes of 3 LFs (b's 4-8 overlaps it)
    assert got == [(0, 3, "X", "C1", round(2 / 3, 4), "weak:majority"),
                   (5, 7, "Y", None, round(2 / 3, 4), "weak:majority")]
    # a weight can turn the vote
    weighted = MajorityVote(weights={"b": 3.0}).predict_record(record, outputs)
    assert (4, 8, "Z") in [(s.start, s.end, s.label) for s in weighted]
    # ties go to the longer span
    tie = apply_functions(record, [Fixed("a", {"r": [(0, 2, "X", None)]}), Fixed("b", {"r": [(0, 4, "Y", None)]})])
    assert [(s.start, s.end) for s in MajorityVote().predict_record(record, tie)] == [(0, 4)]
    assert MajorityVote(min_votes=2).predict_record(record, tie) == []


def test_majority_vote_nested_spans_of_the_same_label() -> None:
    # two LFs know the pieces, one the whole chain: with nested=True (default) the whole wins
    record = Record("r", "胃癌根治术+胆囊切除术")
    lfs = [Fixed("whole", {"r": [(0, 11, "P", None)]}),
           Fixed("list", {"r": [(0, 5, "P", "C1"), (6, 11, "P", "C2")]}),
           Fixed("rule", {"r": [(0, 5, "P", None), (6, 11, "P", None)]})]
    outputs = apply_functions(record, lfs)
    assert [(s.start, s.end) for s in MajorityVote().predict_record(record, outputs)] == [(0, 11)]
    assert [(s.start, s.end) for s in MajorityVote(nested=False).predict_record(record, outputs)] == [(0, 5), (6, 11)]
    # a span of another label inside does not lend its votes
    other = apply_functions(record, [Fixed("whole", {"r": [(0, 11, "P", None)]}),
                                     Fixed("a", {"r": [(0, 2, "Q", None)]}), Fixed("b", {"r": [(0, 2, "Q", None)]})])
    assert [(s.start, s.end, s.label) for s in MajorityVote().predict_record(record, other)] == [(0, 2, "Q")]


def test_majority_vote_nested_spans_of_other_labels_count_with_nested_other() -> None:
    # 直肠癌根治术: two procedure LFs against three disease LFs (one of them a shorter piece, 肠癌)
    record = Record("r", "行直肠癌根治术")
    lfs = [Fixed("procedure", {"r": [(1, 7, "P", None)]}), Fixed("operation", {"r": [(1, 7, "P", None)]}),
           Fixed("icd", {"r": [(1, 4, "D", "C18")]}), Fixed("site", {"r": [(1, 4, "D", None)]}),
           Fixed("list", {"r": [(2, 4, "D", None)]})]
    outputs = apply_functions(record, lfs)
    assert [(s.start, s.end, s.label) for s in MajorityVote().predict_record(record, outputs)] == [(1, 4, "D")]
    # with nested_other=0.5 the procedure has 2 + 0.5 * 3 votes against the disease's 3
    spans = MajorityVote(nested_other=0.5).predict_record(record, outputs)
    assert [(s.start, s.end, s.label) for s in spans] == [(1, 7, "P")]
    # an LF that proposed the span itself is not counted twice, so the score stays a confidence in [0, 1]
    both = apply_functions(record, [Fixed("a", {"r": [(1, 7, "P", None), (1, 4, "D", None)]}),
                                    Fixed("b", {"r": [(1, 4, "D", None)]})])
    [span] = MajorityVote(nested_other=1.0).predict_record(record, both)
    assert (span.label, span.score) == ("P", 1.0)  # 2 votes (a, and b inside) of the 2 LFs involved
    with pytest.raises(ValueError, match="nested_other"):
        MajorityVote(nested_other=2.0)


_TIE = """
import itertools
from medner.types import Record, Span
from medner.weak.aggregate import MajorityVote
record = Record("r", "右肺上叶腺癌")
outputs = {"a": [Span(0, 4, "X")], "b": [Span(0, 4, "X")], "c": [Span(0, 4, "X")], "d": [Span(0, 6, "Y")]}
vote = MajorityVote(weights={"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.6}, min_votes=0.1)
winners = {tuple((s.start, s.end, s.label, s.score) for s in vote.predict_record(record, dict(order)))
           for order in itertools.permutations(outputs.items())}
print(sorted(winners))
"""


def test_weighted_majority_vote_does_not_depend_on_order_or_hash_seed() -> None:
    # 0.1 + 0.2 + 0.3 is 0.6 or 0.6000000000000001 by the order of summing: a tie with 0.6 (the longer span
    # wins) or not; the sum must not depend on the order of the outputs or on set order (PYTHONHASHSEED)
    printed = set()
    for seed in ("1", "2", "3", "5"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _TIE], env=env, capture_output=True, text=True, check=True)
        printed.add(done.stdout)
    assert printed == {"[((0, 6, 'Y', 0.5),)]\n"}


def test_apply_functions_rejects_spans_outside_the_text() -> None:
    record = Record("r", "abc")
    with pytest.raises(ValueError, match="outside record r"):
        apply_functions(record, [Fixed("bad", {"r": [(2, 9, "X", None)]})])


def synthetic_corpus(n_records=150, seed=0):
    """Records of 60 characters with 4 gold entities each; a reliable, a decent and a noisy LF."""
    rnd = random.Random(seed)
    labels = ["A", "B", "C"]
    records, by_lf = [], {"good": {}, "fair": {}, "noisy": {}}
    for i in range(n_records):
        rid = f"r{i}"
        gold = []
        for k in range(4):
            start = k * 15 + rnd.randint(0, 5)
            gold.append((start, start + rnd.randint(2, 6), rnd.choice(labels)))
        records.append(Record(rid, "x" * 60, tuple(Span(s, e, lab) for s, e, lab in gold)))
        for name, recall, accuracy in (("good", 0.9, 0.95), ("fair", 0.7, 0.8), ("noisy", 0.9, 0.4)):
            out = []
            for s, e, lab in gold:
                if rnd.random() < recall:
                    out.append((s, e, lab if rnd.random() < accuracy else rnd.choice([x for x in labels if x != lab]),
                                f"{name}-code"))
            if name == "noisy":  # plus spurious spans in the gaps
                for k in range(4):
                    if rnd.random() < 0.5:
                        start = k * 15 + 12
                        out.append((start, start + 2, rnd.choice(labels), None))
            by_lf[name][rid] = sorted(out)
    lfs = [Fixed(name, spans, labels=tuple(labels)) for name, spans in by_lf.items()]
    return records, lfs


def span_f1(gold_records, pred_records):
    gold = {(r.id, s.start, s.end, s.label) for r in gold_records for s in r.spans}
    pred = {(r.id, s.start, s.end, s.label) for r in pred_records for s in r.spans}
    tp = len(gold & pred)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(gold) if gold else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def test_dawid_skene_on_spans_learns_which_source_is_reliable() -> None:
    records, lfs = synthetic_corpus(600)
    outputs = [apply_functions(r, lfs) for r in records]
    model = DawidSkene(functions=lfs)
    weak = aggregate(records, outputs, model)
    rel = model.reliability()
    for label in ("A", "B", "C"):
        assert rel["good"][label]["precision"] > rel["fair"][label]["precision"] > rel["noisy"][label]["precision"]
    noisy_only = [r.with_spans(o["noisy"]) for r, o in zip(records, outputs)]
    voted = aggregate(records, outputs, MajorityVote())
    assert span_f1(records, weak) > span_f1(records, voted) > span_f1(records, noisy_only)
    for r in weak:
        assert all(s.source == "weak:dawid_skene" and 0.5 <= s.score <= 1.0 for s in r.spans)
        assert all(a.end <= b.start for a, b in zip(r.spans, r.spans[1:]))  # sorted, no overlaps
        # the code comes from a source that proposed the span, the most reliable one first
        assert all(s.code in {"good-code", "fair-code", "noisy-code", None} for s in r.spans)
    coded = [s.code for r in weak for s in r.spans if s.code]
    assert coded.count("good-code") > coded.count("noisy-code")
    summary = model.summary()
    assert summary["labels"] == ["A", "B", "C"] and summary["sources"] == ["good", "fair", "noisy"]


def test_fold_composites_hands_widened_spans_to_their_bases() -> None:
    d = "疾病和诊断"
    outputs = {
        "a": [Span(0, 3, d, code="C20"), Span(4, 7, d), Span(9, 11, "解剖部位")],
        "b": [Span(4, 7, d)],
        "other": [Span(0, 3, d)],
        "wide": [Span(0, 7, d, code="C20"), Span(8, 12, d)],
    }
    folded = fold_composites(outputs, {"wide": ["a", "b"]})
    assert "wide" not in folded and folded["other"] == outputs["other"]          # only the bases change
    assert [(s.start, s.end, s.label, s.code, s.source) for s in folded["a"]] == [
        (0, 7, d, "C20", "a"), (9, 11, "解剖部位", None, None)]                   # two heads -> one widened span
    assert [(s.start, s.end) for s in folded["b"]] == [(0, 7)]
    assert fold_composites(folded, {"wide": ["a", "b"]}) is folded                # idempotent
    first = outputs["a"][0]                                                       # the input is not modified
    assert (first.start, first.end, first.label, first.code, first.source) == (0, 3, d, "C20", None)


def test_fold_composites_gives_a_widened_span_no_code_of_a_narrower_base_span() -> None:
    d = "疾病和诊断"  # 直肠癌 (C20) widened to 直肠癌伴肝转移: C20 is not that diagnosis's code; the linker decides
    outputs = {"a": [Span(0, 3, d, code="C20"), Span(4, 7, d, code="C78.7")], "wide": [Span(0, 7, d)]}
    folded = fold_composites(outputs, {"wide": ["a"]})
    assert [(s.start, s.end, s.code) for s in folded["a"]] == [(0, 7, None)]
    same = fold_composites({"a": [Span(0, 7, d, code="C20")], "wide": [Span(0, 7, d)]}, {"wide": ["a"]})
    assert [(s.start, s.end, s.code) for s in same["a"]] == [(0, 7, "C20")]   # its own extent: its own code


def test_dawid_skene_folds_a_composite_into_its_bases() -> None:
    d = "疾病和诊断"
    head = RegexLF("head", d, [r"(?P<span>直肠癌|肝转移)"])
    other = RegexLF("other", d, [r"(?P<span>直肠癌)"])
    wide = ExtentLF("wide", d, [head])
    lfs = [head, other, wide]
    records = [Record(f"r{i}", "患者直肠癌伴肝转移。" if i % 2 else "直肠癌术后，无肝转移。") for i in range(20)]
    outputs = [apply_functions(r, lfs) for r in records]
    assert outputs[1]["wide"]  # the composite widened 直肠癌 + 伴 + 肝转移
    model = DawidSkene(functions=lfs).fit(records, outputs)
    assert model.sources == ["head", "other"]
    for r, o in zip(records, outputs):
        folded = fold_composites(o, {"wide": ["head"]})
        proposed = {(s.start, s.end, s.label) for spans in folded.values() for s in spans}
        assert {(s.start, s.end, s.label) for s in model.predict_record(r, o)} <= proposed


def test_dawid_skene_predicts_unseen_patterns_and_needs_fit() -> None:
    records, lfs = synthetic_corpus(40, seed=3)
    outputs = [apply_functions(r, lfs) for r in records]
    model = DawidSkene(functions=lfs)
    with pytest.raises(RuntimeError, match="fit"):
        model.predict_record(records[0], outputs[0])
    model.fit(records[:20], outputs[:20])
    spans = model.predict(records[20:], outputs[20:])
    assert len(spans) == 20 and any(spans)
    with pytest.raises(ValueError, match="zero records"):
        DawidSkene().fit([], [])


def test_make_aggregator() -> None:
    assert isinstance(make_aggregator("majority"), MajorityVote)
    assert isinstance(make_aggregator("dawid_skene", min_confidence=0.7), DawidSkene)
    with pytest.raises(ValueError, match="unknown aggregator"):
        make_aggregator("snorkel")
    with pytest.raises(ValueError, match="min_confidence"):
        DawidSkene(min_confidence=1.5)
