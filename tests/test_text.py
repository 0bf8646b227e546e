"""Windowing of long records, merging of window predictions, offset-safe normalisation."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medner.text import (
    BOUNDARY_CHARS,
    Window,
    cluster_bounds,
    merge_window_predictions,
    normalize_with_map,
    one_code_point_characters,
    spans_crossing,
    split_windows,
    to_raw_span,
    window_spans,
)
from medner.types import Span
from shared_data import shared_data_path as shared_data


def key(spans):
    return [(s.start, s.end, s.label) for s in spans]


# ------------------------------------------------------------------ split_windows


def test_short_and_empty_texts():
    assert split_windows("头痛三天。", 10, 2) == [Window(0, 5)]
    assert split_windows("头痛三天。", 5, 2) == [Window(0, 5)]
    assert split_windows("", 10, 2) == [Window(0, 0)]


@pytest.mark.parametrize("max_len, overlap", [(5, 5), (5, 6), (0, 0), (5, -1), (5.0, 1), (5, None)])
def test_invalid_parameters_raise(max_len, overlap):
    with pytest.raises(ValueError, match="max_len > overlap >= 0"):
        split_windows("a" * 20, max_len, overlap)


def test_windows_prefer_a_boundary_by_hand():
    text = "a" * 10 + "。" + "b" * 20  # 31 chars, boundary after index 10
    # window 1: hard end 14, boundary cut 11 lies within the last 14 // 4 = 3 chars -> [0, 11)
    # window 2: starts 11 - 2 = 9 (no boundary within 2 // 2 = 1 char before), no boundary -> [9, 23)
    # window 3: starts 23 - 2 = 21 and reaches the end
    assert split_windows(text, 14, 2) == [Window(0, 11), Window(9, 23), Window(21, 31)]


def test_next_window_starts_after_a_boundary_when_close():
    text = "a" * 7 + "\n" + "b" * 20  # newline at index 7 -> cut 8
    windows = split_windows(text, 10, 2)
    # first window [0, 10): no boundary in (8 > 10 - 2 = 8 .. 10] except cut 8 -> [0, 8)
    assert windows[0] == Window(0, 8)
    # next start: 8 - 2 = 6; searching back 1 char finds no boundary -> 6
    assert windows[1].start == 6


def test_custom_boundary_chars_and_none():
    text = "ab,cd,ef,gh,ij,kl"
    assert split_windows(text, 8, 1, boundary_chars=",")[0] == Window(0, 6)
    assert split_windows(text, 8, 1, boundary_chars="")[0] == Window(0, 8)


def test_progress_with_overlap_just_below_max_len():
    text = "。" * 50
    windows = split_windows(text, 3, 2)
    assert windows[0].start == 0 and windows[-1].end == 50
    assert all(b.start > a.start for a, b in zip(windows, windows[1:]))


TEXT_CHARS = st.sampled_from(list("甲乙丙丁ab") + list(BOUNDARY_CHARS))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(TEXT_CHARS, max_size=120), st.integers(1, 30), st.data())
def test_window_invariants(text, max_len, data):
    overlap = data.draw(st.integers(0, max_len - 1))
    windows = split_windows(text, max_len, overlap)
    assert windows[0].start == 0 and windows[-1].end == len(text)
    assert all(0 <= w.length <= max_len for w in windows)
    for a, b in zip(windows, windows[1:]):
        assert a.start < b.start <= a.end  # progress and no gap
        assert a.end - b.start >= overlap
        # a non-final window ends at a boundary or at its full length
        assert a.length == max_len or text[a.end - 1] in BOUNDARY_CHARS


# ------------------------------------------------------------------ window_spans / merge


def test_window_spans_and_crossing():
    spans = [Span(0, 2, "A"), Span(4, 7, "B"), Span(8, 12, "C"), Span(12, 14, "D")]
    window = Window(3, 12)
    assert key(window_spans(spans, window)) == [(1, 4, "B"), (5, 9, "C")]
    assert key(spans_crossing(spans, window)) == []
    window = Window(5, 13)
    assert key(window_spans(spans, window)) == [(3, 7, "C")]
    assert key(spans_crossing(spans, window)) == [(4, 7, "B"), (12, 14, "D")]


def test_merge_prefers_the_window_with_more_context():
    windows = [Window(0, 10), Window(6, 16)]
    per_window = [
        [Span(7, 10, "A", score=0.4)],  # record (7, 10): touches the cut at 10, margin 0
        [Span(1, 6, "A", score=0.9, code="I10")],  # record (7, 12): margin 1 from the cut at 6
    ]
    merged = merge_window_predictions(windows, per_window)
    assert key(merged) == [(7, 12, "A")]
    assert merged[0].score == 0.9 and merged[0].code == "I10"


def test_merge_removes_duplicates_and_keeps_disjoint_edge_predictions():
    windows = [Window(0, 10), Window(6, 16)]
    per_window = [[Span(0, 2, "A"), Span(7, 9, "B", score=0.1)], [Span(1, 3, "B", score=0.2), Span(8, 10, "C")]]
    merged = merge_window_predictions(windows, per_window)
    assert key(merged) == [(0, 2, "A"), (7, 9, "B"), (14, 16, "C")]
    # (7, 9): margin 1 in both windows -> tie broken by window order
    assert merged[1].score == 0.1


def test_merge_type_conflict_goes_to_the_centre():
    windows = [Window(0, 10), Window(5, 15), Window(10, 20)]
    # record span (8, 9): margin 1 in window 0 (cut at 10), margin 3 in window 1 (cuts at 5 and 15)
    per_window = [[Span(8, 9, "A")], [Span(3, 4, "B")], []]
    assert key(merge_window_predictions(windows, per_window)) == [(8, 9, "B")]
    # record span (6, 8): window 0 sees it 2 from its cut at 10 (the record start is no cut), window 1 only 1
    per_window = [[Span(6, 8, "A")], [Span(1, 3, "B")], []]
    assert key(merge_window_predictions(windows, per_window)) == [(6, 8, "A")]


def test_merge_validates_input():
    with pytest.raises(ValueError, match="2 windows but 1 lists"):
        merge_window_predictions([Window(0, 5), Window(3, 8)], [[]])
    with pytest.raises(ValueError, match=r"window 1 \[3, 8\) is empty or outside it"):
        merge_window_predictions([Window(0, 5), Window(3, 8)], [[], [Span(4, 6, "A")]])
    assert merge_window_predictions([], []) == []


@st.composite
def text_and_spans(draw, max_span):
    text = draw(st.text(TEXT_CHARS, min_size=0, max_size=150))
    spans, pos = [], 0
    while pos < len(text):
        pos += draw(st.integers(0, 6))
        length = draw(st.integers(1, max_span))
        if pos + length > len(text):
            break
        spans.append(Span(pos, pos + length, draw(st.sampled_from("XYZ")), score=pos / 1000))
        pos += length
    return text, spans


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(2, 40), st.data())
def test_split_then_merge_gold_returns_gold(max_len, draw):
    """Precondition: every span is at most ``overlap + 1`` characters long -> it lies whole in some window."""
    overlap = draw.draw(st.integers(0, max_len - 1))
    text, spans = draw.draw(text_and_spans(max_span=overlap + 1))
    windows = split_windows(text, max_len, overlap)
    merged = merge_window_predictions(windows, [window_spans(spans, w) for w in windows])
    assert key(merged) == key(spans)
    assert [s.score for s in merged] == [s.score for s in spans]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text_and_spans(max_span=30), st.integers(2, 20), st.data())
def test_split_then_merge_loses_only_spans_no_window_holds(data, max_len, draw):
    """Without the precondition, spans that no window holds whole are lost; nothing else changes."""
    text, spans = data
    overlap = draw.draw(st.integers(0, max_len - 1))
    windows = split_windows(text, max_len, overlap)
    merged = merge_window_predictions(windows, [window_spans(spans, w) for w in windows])
    held = [s for s in spans if any(w.contains(s) for w in windows)]
    assert key(merged) == key(held)
    assert all(s.length > overlap + 1 for s in spans if s not in held)


def test_span_longer_than_any_window_is_lost_and_counted():
    text = "x" * 20
    windows = split_windows(text, 10, 2)
    assert windows == [Window(0, 10), Window(8, 18), Window(16, 20)]
    long = Span(5, 15, "A")
    assert [window_spans([long], w) for w in windows] == [[], [], []]
    assert [len(spans_crossing([long], w)) for w in windows] == [1, 1, 0]
    assert merge_window_predictions(windows, [[], [], []]) == []


# ------------------------------------------------------------------ normalisation


RAW = "体温３８.５℃，服药１０㎎，ⅡＡＢ级"


def test_normalize_folds_width_case_and_compatibility_characters():
    normalized, index_map = normalize_with_map(RAW)
    assert normalized == "体温38.5°c,服药10mg,iiab级"
    assert len(index_map) == len(normalized)
    assert index_map == sorted(index_map)


@pytest.mark.parametrize("needle, raw", [
    ("38.5", "３８.５"), ("°c", "℃"), ("c", "℃"), ("10mg", "１０㎎"), ("mg", "㎎"), ("g", "㎎"),
    ("ii", "Ⅱ"), ("iiab", "ⅡＡＢ"), ("ab级", "ＡＢ级"), ("体温", "体温"),
])
def test_matches_map_back_to_exact_raw_offsets(needle, raw):
    normalized, index_map = normalize_with_map(RAW)
    nstart = normalized.index(needle)
    start, end = to_raw_span(nstart, nstart + len(needle), index_map)
    assert RAW[start:end] == raw


def test_without_nfkc_only_width_and_case_fold_and_length_is_kept():
    text = "ＣＴ示Ａ型，ⅡＸ℃"
    normalized, index_map = normalize_with_map(text, nfkc=False)
    assert normalized == "ct示a型,ⅱx℃"
    assert index_map == list(range(len(text)))


def test_ideographic_space_becomes_space():
    assert normalize_with_map("头\u3000痛")[0] == "头 痛"


@pytest.mark.parametrize("nstart, nend", [(0, 0), (-1, 2), (3, 2), (0, 99)])
def test_to_raw_span_rejects_bad_ranges(nstart, nend):
    _, index_map = normalize_with_map(RAW)
    with pytest.raises(ValueError, match="expected 0 <= nstart < nend"):
        to_raw_span(nstart, nend, index_map)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=40), st.data())
def test_any_normalised_substring_maps_to_the_raw_chars_that_produced_it(text, data):
    normalized, index_map = normalize_with_map(text)
    assert len(index_map) == len(normalized)
    assume(normalized)
    nstart = data.draw(st.integers(0, len(normalized) - 1))
    nend = data.draw(st.integers(nstart + 1, len(normalized)))
    start, end = to_raw_span(nstart, nend, index_map)
    assert 0 <= start < end <= len(text)
    # re-normalising the raw slice reproduces a string that contains the normalised match
    assert normalized[nstart:nend] in normalize_with_map(text[start:end])[0]


# ------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_ccks2019_windows_reproduce_gold_spans():
    from medner.corpus import read_corpus

    path = shared_data() / "corpora" / "ccks2019_yidu" / "subtask1_training_part1.txt"
    max_len, overlap = 128, 32
    for record in read_corpus(path, format="ccks2019"):
        windows = split_windows(record.text, max_len, overlap)
        merged = merge_window_predictions(windows, [window_spans(record.spans, w) for w in windows])
        held = [s for s in record.spans if any(w.contains(s) for w in windows)]
        assert key(merged) == key(sorted(held, key=lambda s: (s.start, s.end)))
        # a span can be lost only if it is longer than overlap + 1 (it must straddle a whole overlap region)
        assert all(s.length > overlap + 1 for s in record.spans if s not in held)
        normalized, index_map = normalize_with_map(record.text)
        for span in record.spans[:5]:  # a mention normalised alone is found in the normalised record
            needle = normalize_with_map(span.mention(record.text))[0]
            nstart = normalized.find(needle)
            assert nstart >= 0
            start, end = to_raw_span(nstart, nstart + len(needle), index_map)
            assert normalize_with_map(record.text[start:end])[0] == needle


# ------------------------------------------------------------------ span edges: trim_spans

MAN, WOMAN, FLAG = "\U0001F468", "\U0001F469", "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"


@pytest.mark.parametrize("text, start, end, expected", [
    ("发热\x00", 0, 3, (0, 2)),  # ends on a NUL
    (" 发热 ", 0, 4, (1, 3)),  # whitespace both sides
    ("\u3000发热\u00a0", 0, 4, (1, 3)),  # ideographic and no-break spaces (Zs)
    ("\u200b发热\ufeff", 0, 4, (1, 3)),  # zero-width space, byte-order mark (Cf)
    ("\r\n发热\r\n", 0, 6, (2, 4)),
    ("e\u0301x", 0, 1, (0, 2)),  # ends between a letter and its combining accent: the accent comes along
    ("xe\u0301", 0, 2, (0, 3)),
    ("e\u0301x", 1, 3, (2, 3)),  # starts on the accent of a letter outside: the accent stays out
    (f"{MAN}\u200d{WOMAN} x", 0, 1, (0, 3)),  # a ZWJ sequence is one character to a reader
    ("\u263a\ufe0f", 0, 1, (0, 2)),  # variation selector
    (f"a{FLAG}", 0, 2, (0, 8)),  # emoji tag sequence: its tag characters (Cf) belong to it
    ("\u1100\u1161", 0, 1, (0, 2)),  # Hangul jamo L + V
    ("\u06001", 0, 2, (0, 2)),  # an Arabic number sign (Cf) before its digit: one visible character
    ("发热", 0, 2, (0, 2)),
])
def test_trim_by_hand(text, start, end, expected):
    from medner.text import trim_spans

    (span,) = trim_spans(text, [Span(start, end, "X", code="C1", score=0.5, source="m")])
    assert (span.start, span.end) == expected
    assert (span.label, span.code, span.score, span.source) == ("X", "C1", 0.5, "m")


@pytest.mark.parametrize("text, start, end", [("发\x00 \t热", 1, 4), ("\ufeff", 0, 1), ("a\u0301", 1, 2),
                                               ("\r\n", 0, 2), (" \u0301 ", 0, 3), (" \U0001F3FB", 0, 2)])
def test_a_span_of_nothing_visible_is_dropped(text, start, end):
    from medner.text import trim_spans

    assert trim_spans(text, [Span(start, end, "X")]) == []


TRIM_CHARS = ["a", "e", "发", "热", "1", " ", "\t", "\n", "\r", "\x00", "\x7f", "\u3000", "\u00a0", "\u2028",
              "\u200b", "\u200c", "\u200d", "\ufeff", "\u0600", "\u0301", "\u20dd", "\u0903", "\ufe0f", MAN, WOMAN,
              "\U0001F3FB", "\U0001F1E8", "\U0001F1F3", "\u1100", "\u1161", "\U000E0067", "\U000E007F"]


@st.composite
def text_with_spans(draw):
    text = "".join(draw(st.lists(st.sampled_from(TRIM_CHARS), max_size=30)))
    assume(text)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=8))))
    spans = [Span(a, b, "X", score=0.9) for a, b in zip(cuts, cuts[1:])]  # disjoint, adjacent spans
    return text, spans


@settings(max_examples=500, deadline=None, derandomize=True)
@given(text_with_spans())
def test_trimmed_spans_start_and_end_on_visible_whole_characters(data):
    import unicodedata

    import regex

    from medner.text import trim_spans

    text, spans = data
    bounds = {m.start() for m in regex.finditer(r"\X", text)} | {len(text)}
    clusters = {m.start(): m.group() for m in regex.finditer(r"\X", text)}
    def invisible(cluster: str) -> bool:
        base, category = cluster[0], unicodedata.category(cluster[0])
        if base.isspace() or category == "Cc" or (category == "Cf" and base != "\u0600"):  # U+0600 comes before digits
            return True
        return all(c.isspace() or unicodedata.category(c)[0] in "CMZ" for c in cluster)

    out = trim_spans(text, spans)
    assert all(a.end <= b.start for a, b in zip(out, out[1:]))  # still disjoint, still in order
    assert trim_spans(text, out) == out  # idempotent
    for span in out:
        assert 0 <= span.start < span.end <= len(text) and span.score == 0.9
        assert span.start in bounds and span.end in bounds  # no cluster split
        assert not invisible(clusters[span.start])
        last = max(b for b in clusters if b < span.end)
        assert not invisible(clusters[last])
        assert not text[span.start].isspace() and unicodedata.category(text[span.start]) != "Cc"
        assert unicodedata.category(text[span.start]) != "Cf" or text[span.start] == "\u0600"
        assert not text[span.end - 1].isspace() and unicodedata.category(text[span.end - 1]) != "Cc"
    for span in spans:  # each output comes from one input, inside it but for the rest of its last character
        kept = [o for o in out if span.start <= o.start < span.end]
        assert len(kept) <= 1
        if kept:
            next_bound = min(b for b in bounds if b >= span.end)
            assert kept[0].end <= next_bound
        else:  # dropped: nothing visible starts inside it
            assert all(invisible(c) for b, c in clusters.items() if span.start <= b < span.end)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("胃癌a1 \n\r\t，") + ["\u0301", "\u200d", "\ufe0f", "\U0001F468",
                                                                    "\U0001F1E8", "\u1100", "\u1161", "\u0600"]),
               max_size=12))
def test_the_quick_check_never_misses_a_cluster_of_several_code_points(text):
    if one_code_point_characters(text):  # it may say no where a lone CR is still a cluster of its own
        assert len(cluster_bounds(text)) == len(text) + 1


def test_the_quick_check_passes_plain_clinical_text_and_stops_at_a_combining_mark():
    assert one_code_point_characters("患者因胃癌入院，予阿司匹林。\n") and not one_code_point_characters("胃癌\u0301")
