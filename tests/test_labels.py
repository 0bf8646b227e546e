"""Tag schemes: tag order, spans <-> tags, strict decoding, overlap policies, CRF constraints."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.scheme import IOB2, IOBES, Entities

from medner.labels import (
    TagScheme,
    allowed_transitions,
    resolve_overlaps,
    spans_to_tags,
    tags_to_spans,
)
from medner.types import Span

TYPES = ["药物", "疾病和诊断"]


def key(spans):
    return [(s.start, s.end, s.label) for s in spans]


# ------------------------------------------------------------------ TagScheme


def test_tag_order_bio_is_o_then_sorted_types():
    scheme = TagScheme(["药物", "疾病和诊断", "药物"], "BIO")
    assert scheme.types == ("疾病和诊断", "药物")
    assert scheme.tags == ("O", "B-疾病和诊断", "I-疾病和诊断", "B-药物", "I-药物")
    assert scheme.tag_to_id == {t: i for i, t in enumerate(scheme.tags)}
    assert scheme.id_to_tag == dict(enumerate(scheme.tags))
    assert len(scheme) == 5


def test_tag_order_bioes_and_aliases():
    scheme = TagScheme(["B", "A"], "iobes")
    assert scheme.name == "BIOES"
    assert scheme.tags == ("O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B")
    assert TagScheme(["A"], "IOB2").name == "BIO"


def test_scheme_is_independent_of_input_order_and_round_trips_through_dict():
    a = TagScheme(["z", "a", "m"], "BIOES")
    b = TagScheme(["m", "z", "a"], "BIOES")
    assert a == b and a.tags == b.tags
    assert TagScheme.from_dict(a.to_dict()) == a


def test_from_dict_rejects_edited_tag_order():
    data = TagScheme(["a", "b"]).to_dict()
    data["tags"] = list(reversed(data["tags"]))
    with pytest.raises(ValueError, match="differ"):
        TagScheme.from_dict(data)


@pytest.mark.parametrize("bad", ["", " x", "-x", "x-", "a->b", "O", "START", "END"])
def test_invalid_type_names_raise(bad):
    with pytest.raises(ValueError, match="invalid entity type"):
        TagScheme([bad])


def test_unknown_scheme_raises():
    with pytest.raises(ValueError, match="BIOES"):
        TagScheme(["a"], "BILOU")


def test_encode_decode_and_unknown_tag():
    scheme = TagScheme(TYPES)
    assert scheme.decode(scheme.encode(["O", "B-药物", "I-药物"])) == ["O", "B-药物", "I-药物"]
    with pytest.raises(ValueError, match="valid tags: O, B-疾病和诊断"):
        scheme.encode(["B-手术"])


# ------------------------------------------------------------------ spans <-> tags


def test_spans_to_tags_bio_and_bioes_by_hand():
    spans = [Span(1, 4, "A"), Span(5, 6, "B")]
    assert spans_to_tags(spans, 7, "BIO") == ["O", "B-A", "I-A", "I-A", "O", "B-B", "O"]
    assert spans_to_tags(spans, 7, "BIOES") == ["O", "B-A", "I-A", "E-A", "O", "S-B", "O"]
    assert spans_to_tags([Span(0, 2, "A")], 2, "BIOES") == ["B-A", "E-A"]
    assert spans_to_tags([], 3, "BIO") == ["O", "O", "O"]


def test_adjacent_spans_of_the_same_type_stay_apart():
    spans = [Span(0, 2, "A"), Span(2, 3, "A")]
    for name in ("BIO", "BIOES"):
        assert key(tags_to_spans(spans_to_tags(spans, 3, name), name)) == key(spans)


def test_overlapping_spans_raise_naming_both():
    with pytest.raises(ValueError, match=r"\(0, 3, A\) and \(2, 5, B\)"):
        spans_to_tags([Span(2, 5, "B"), Span(0, 3, "A")], 6, "BIO")


@pytest.mark.parametrize("span", [Span(2, 2, "A"), Span(-1, 2, "A"), Span(3, 7, "A"), Span(4, 2, "A")])
def test_span_outside_or_empty_raises(span):
    with pytest.raises(ValueError, match="expected 0 <= start < end <= 6"):
        spans_to_tags([span], 6, "BIO")


def test_unknown_label_raises_with_known_types():
    with pytest.raises(ValueError, match="known types: 疾病和诊断, 药物"):
        spans_to_tags([Span(0, 1, "手术")], 3, TagScheme(TYPES))


@st.composite
def flat_spans(draw, max_len=40, labels=("A", "B", "C")):
    length = draw(st.integers(0, max_len))
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=12)))
    spans = []
    for a, b in zip(cuts, cuts[1:]):
        if draw(st.booleans()):
            spans.append(Span(a, b, draw(st.sampled_from(labels))))
    return length, spans


@settings(max_examples=200, deadline=None, derandomize=True)
@given(flat_spans(), st.sampled_from(["BIO", "BIOES"]))
def test_round_trip_spans_tags_spans(data, name):
    length, spans = data
    tags = spans_to_tags(spans, length, TagScheme(["A", "B", "C"], name))
    assert len(tags) == length
    assert key(tags_to_spans(tags, name)) == key(spans)


@pytest.mark.parametrize("name, tags, expected", [
    # BIO strict: a lone I-X (at the start, after O, or after another type) belongs to no entity
    ("BIO", ["I-X", "I-X"], []),
    ("BIO", ["O", "I-X", "O"], []),
    ("BIO", ["B-X", "I-Y"], [(0, 1, "X")]),
    ("BIO", ["B-X", "I-X", "I-Y", "I-Y"], [(0, 2, "X")]),
    ("BIO", ["B-X", "B-X", "I-X"], [(0, 1, "X"), (1, 3, "X")]),
    # BIOES strict: only S-X or B-X I-X* E-X
    ("BIOES", ["B-X", "I-X"], []),
    ("BIOES", ["B-X", "O"], []),
    ("BIOES", ["E-X"], []),
    ("BIOES", ["I-X", "E-X"], []),
    ("BIOES", ["B-X", "E-Y"], []),
    ("BIOES", ["S-X", "B-X", "I-X", "E-X"], [(0, 1, "X"), (1, 4, "X")]),
    ("BIOES", ["B-X", "I-X", "B-X", "E-X"], [(2, 4, "X")]),
])
def test_tags_to_spans_strict_table(name, tags, expected):
    assert key(tags_to_spans(tags, name)) == expected


@pytest.mark.parametrize("name, tags, message", [
    ("BIO", ["E-X"], "prefix the BIO scheme does not use"),
    ("BIO", ["BX"], "malformed tag"),
    ("BIOES", ["B-"], "malformed tag"),
])
def test_tags_to_spans_rejects_bad_tags(name, tags, message):
    with pytest.raises(ValueError, match=message):
        tags_to_spans(tags, name)


def _tag_sequences(prefixes):
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("X", "Y")]
    return st.lists(st.sampled_from(tags), max_size=14)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_tag_sequences("BI"))
def test_strict_bio_decoding_matches_seqeval_strict_iob2(tags):
    expected = sorted((e.start, e.end, e.tag) for e in Entities([tags], IOB2).entities[0])
    assert sorted(key(tags_to_spans(tags, "BIO"))) == expected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_tag_sequences("BIES"))
def test_strict_bioes_decoding_matches_seqeval_strict_iobes(tags):
    expected = sorted((e.start, e.end, e.tag) for e in Entities([tags], IOBES).entities[0])
    assert sorted(key(tags_to_spans(tags, "BIOES"))) == expected


# ------------------------------------------------------------------ overlaps


@pytest.mark.parametrize("policy, spans, kept, dropped", [
    ("keep_longest", [(0, 2, "A"), (1, 5, "B")], [(1, 5, "B")], 1),
    ("keep_longest", [(0, 10, "A"), (2, 4, "B"), (5, 8, "C")], [(0, 10, "A")], 2),
    ("keep_longest", [(3, 6, "A"), (1, 4, "B")], [(1, 4, "B")], 1),  # tie in length: earlier start
    ("keep_longest", [(1, 4, "B"), (1, 4, "A")], [(1, 4, "A")], 1),  # tie in both: label order
    ("keep_longest", [(0, 2, "A"), (2, 4, "A")], [(0, 2, "A"), (2, 4, "A")], 0),
    ("keep_first", [(0, 2, "A"), (1, 5, "B")], [(0, 2, "A")], 1),
    ("keep_first", [(0, 2, "A"), (0, 5, "B"), (3, 4, "C")], [(0, 5, "B")], 2),  # same start: longer
    ("keep_first", [(2, 9, "A"), (0, 3, "B"), (4, 5, "C")], [(0, 3, "B"), (4, 5, "C")], 1),
    ("keep_first", [(0, 2, "A"), (0, 2, "A")], [(0, 2, "A")], 1),  # duplicate collapsed and counted
    ("error", [(0, 2, "A"), (0, 2, "A"), (3, 4, "B")], [(0, 2, "A"), (3, 4, "B")], 1),
])
def test_resolve_overlaps_table(policy, spans, kept, dropped):
    out, n = resolve_overlaps([Span(*s) for s in spans], policy)
    assert key(out) == kept
    assert n == dropped


def test_resolve_overlaps_label_order_argument():
    spans = [Span(1, 4, "A"), Span(1, 4, "B")]
    out, _ = resolve_overlaps(spans, "keep_longest", label_order=["B", "A"])
    assert key(out) == [(1, 4, "B")]


def test_resolve_overlaps_error_names_the_pair():
    spans = [Span(0, 3, "A"), Span(8, 9, "C"), Span(2, 6, "B")]
    with pytest.raises(ValueError, match=r"\(0, 3, A\) and \(2, 6, B\)"):
        resolve_overlaps(spans, "error")


def test_resolve_overlaps_error_names_the_first_pair_in_start_order():
    with pytest.raises(ValueError, match=r"\(0, 10, A\) and \(2, 3, B\)"):
        resolve_overlaps([Span(0, 10, "A"), Span(2, 3, "B"), Span(5, 6, "C")], "error")


def test_resolve_overlaps_unknown_policy():
    with pytest.raises(ValueError, match="keep_longest, keep_first, error"):
        resolve_overlaps([], "keep_best")


def test_resolve_overlaps_keeps_code_and_score():
    out, _ = resolve_overlaps([Span(0, 3, "A", code="I10", score=0.9), Span(1, 2, "B")])
    assert out[0].code == "I10" and out[0].score == 0.9


@st.composite
def any_spans(draw):
    return [Span(a, a + n, draw(st.sampled_from("ABC")))
            for a, n in draw(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 8)), max_size=10))]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(any_spans(), st.sampled_from(["keep_longest", "keep_first"]))
def test_resolve_overlaps_properties(spans, policy):
    kept, dropped = resolve_overlaps(spans, policy)
    assert dropped == len(spans) - len(kept)
    assert set(key(kept)) <= set(key(spans))
    assert all(not a.overlaps(b) for a, b in itertools.combinations(kept, 2))
    for span in spans:  # maximal: every span left out conflicts with a kept one that beats it
        if (span.start, span.end, span.label) in set(key(kept)):
            continue
        rivals = [k for k in kept if k.overlaps(span) or key([k]) == key([span])]
        assert rivals
        if policy == "keep_longest":
            assert any(k.length >= span.length for k in rivals)
        else:
            assert any(k.start <= span.start for k in rivals)


# ------------------------------------------------------------------ CRF constraints


def _valid_by_path(seq, tags, start, trans, end):
    ids = [tags.index(t) for t in seq]
    return bool(start[ids[0]] and end[ids[-1]] and all(trans[a, b] for a, b in zip(ids, ids[1:])))


@pytest.mark.parametrize("name", ["BIO", "BIOES"])
def test_allowed_transitions_accept_exactly_the_canonical_sequences(name):
    # oracle: a tag sequence is legal iff it is the encoding of the spans it decodes to
    scheme = TagScheme(["A", "B"], name)
    start, trans, end = allowed_transitions(scheme)
    size = len(scheme)
    assert start.shape == (size,) and end.shape == (size,) and trans.shape == (size, size)
    assert start.dtype == np.bool_ and trans.dtype == np.bool_ and end.dtype == np.bool_
    for n in range(1, 5):
        for seq in itertools.product(scheme.tags, repeat=n):
            canonical = spans_to_tags(tags_to_spans(seq, name), n, name) == list(seq)
            assert _valid_by_path(seq, scheme.tags, start, trans, end) == canonical, seq


def test_allowed_transitions_bio_entries_by_hand():
    scheme = TagScheme(["A", "B"], "BIO")
    start, trans, end = allowed_transitions(scheme)
    t = scheme.tag_to_id
    assert trans[t["B-A"], t["I-A"]] and trans[t["I-A"], t["I-A"]]
    assert not trans[t["O"], t["I-A"]] and not trans[t["B-A"], t["I-B"]] and not trans[t["I-A"], t["I-B"]]
    assert trans[t["I-A"], t["B-B"]] and trans[t["O"], t["O"]]
    assert not start[t["I-A"]] and start[t["B-A"]] and end.all()


def test_allowed_transitions_bioes_entries_by_hand():
    scheme = TagScheme(["A"], "BIOES")
    start, trans, end = allowed_transitions(scheme)
    t = scheme.tag_to_id
    assert not trans[t["B-A"], t["O"]] and trans[t["B-A"], t["E-A"]] and not trans[t["E-A"], t["I-A"]]
    assert trans[t["S-A"], t["B-A"]] and not trans[t["O"], t["E-A"]]
    assert list(start) == [True, True, False, False, True]
    assert list(end) == [True, False, False, True, True]


# ------------------------------------------------------------------ transition keys


