"""Character spans <-> sub-word token tags (medner.model.alignment)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from medner.labels import TagScheme
from medner.model.alignment import encode_text, label_bearing, spans_to_token_tags, token_tags_to_spans
from medner.types import Span
from tiny_model import build_tokenizer

TEXTS = ["患者因直肠癌于我院行直肠癌根治术，术后予奥沙利铂化疗。", "CT示右肺上叶结节 3.5*2CM，复查血常规。"]
SCHEME = TagScheme(["疾病和诊断", "手术", "药物", "解剖部位"], "BIO")


@pytest.fixture(scope="module")
def char_tokenizer():
    return build_tokenizer(TEXTS, n_pieces=0)  # one token per character


@pytest.fixture(scope="module")
def piece_tokenizer():
    return build_tokenizer(TEXTS, n_pieces=30)  # frequent bigrams become single tokens


def test_label_bearing_skips_specials_and_bare_metaspace():
    # <s>, bare "▁" sharing offsets with the next token, a normal token, </s>
    offsets = [(0, 0), (0, 1), (0, 1), (1, 3), (3, 4), (0, 0)]
    assert label_bearing(offsets) == [2, 3, 4]


def test_every_character_is_covered_once(piece_tokenizer):
    text = "，患者 因直肠癌\n于我院"
    enc = encode_text(piece_tokenizer, text)
    covered = [i for s, e in enc.offsets for i in range(s, e)]
    assert covered == sorted(set(covered))
    assert set(covered) == {i for i, ch in enumerate(text) if not ch.isspace()} | set(covered)
    assert all(text[s:e] for s, e in enc.offsets)


def test_round_trip_on_character_tokens(char_tokenizer):
    text = TEXTS[0]
    spans = [Span(3, 6, "疾病和诊断"), Span(10, 16, "手术"), Span(21, 25, "药物")]
    enc = encode_text(char_tokenizer, text)
    tags, misaligned = spans_to_token_tags(spans, enc.offsets, SCHEME)
    assert misaligned == 0
    assert token_tags_to_spans(tags, enc.offsets, SCHEME) == spans


def test_misaligned_boundaries_are_counted_and_snap_to_tokens(piece_tokenizer):
    text = TEXTS[0]
    enc = encode_text(piece_tokenizer, text)
    starts = {s for s, _ in enc.offsets}
    # a span starting in the middle of a multi-character token
    inner = next(s + 1 for s, e in enc.offsets if e - s > 1)
    span = Span(inner, min(len(text), inner + 3), "疾病和诊断")
    tags, misaligned = spans_to_token_tags([span], enc.offsets, SCHEME)
    decoded = token_tags_to_spans(tags, enc.offsets, SCHEME)
    assert inner not in starts
    assert misaligned == 1
    for s in decoded:  # offsets stay exact on the raw text
        assert s.start in starts and 0 <= s.start < s.end <= len(text)


def test_scores_average_over_tokens(char_tokenizer):
    enc = encode_text(char_tokenizer, "直肠癌")
    tags = ["B-疾病和诊断", "I-疾病和诊断", "I-疾病和诊断"]
    [span] = token_tags_to_spans(tags, enc.offsets, SCHEME, scores=[0.9, 0.6, 0.3])
    assert span.score == pytest.approx(0.6)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_spans_survive_when_aligned(data):
    tokenizer = build_tokenizer(TEXTS, n_pieces=20)
    alphabet = "".join(sorted(set("".join(TEXTS)) - {" "}))
    text = data.draw(st.text(alphabet=alphabet, min_size=1, max_size=40))
    enc = encode_text(tokenizer, text)
    rng = random.Random(data.draw(st.integers(0, 10**6)))
    # pick non-overlapping spans on token boundaries
    spans, k = [], 0
    while k < len(enc.offsets):
        if rng.random() < 0.3:
            n = rng.randint(1, 3)
            last = min(len(enc.offsets), k + n) - 1
            spans.append(Span(enc.offsets[k][0], enc.offsets[last][1], rng.choice(SCHEME.types)))
            k = last + 2
        else:
            k += 1
    tags, misaligned = spans_to_token_tags(spans, enc.offsets, SCHEME)
    assert misaligned == 0
    assert token_tags_to_spans(tags, enc.offsets, SCHEME) == spans


def test_offsets_never_include_surrounding_spaces(piece_tokenizer):
    text = "复查 CT 示 结节  ab12 "
    enc = encode_text(piece_tokenizer, text)
    assert enc.offsets and all(not text[s].isspace() and not text[e - 1].isspace() for s, e in enc.offsets)


def test_isolated_punctuation_puts_boundaries_on_token_edges(tmp_path):
    """A piece that merges "）" with "，" hides the end of "（DIXON）"; isolated punctuation exposes it,
    leaves other pieces whole, survives save/load, and is applied once."""
    from medner.encoders.loading import load_tokenizer
    from medner.encoders.punctuation import isolate_punctuation

    text = "行直肠癌根治术（DIXON），术后 CT示结节。"
    span = Span(1, text.index("，"), "手术")  # 直肠癌根治术（DIXON）
    tokenizer = build_tokenizer([text] + ["），", "根治"] * 5, n_pieces=2)  # pieces: "），" and "根治"
    before = encode_text(tokenizer, text)
    assert spans_to_token_tags([span], before.offsets, SCHEME)[1] == 1  # "）," is one token
    assert isolate_punctuation(tokenizer) is True
    after = encode_text(tokenizer, text)
    tags, misaligned = spans_to_token_tags([span], after.offsets, SCHEME)
    assert misaligned == 0
    assert [text[s.start:s.end] for s in token_tags_to_spans(tags, after.offsets, SCHEME)] == ["直肠癌根治术（DIXON）"]
    pieces = [text[s:e] for s, e in after.offsets]
    assert "根治" in pieces  # words are still cut as before, only at punctuation too
    assert all(len(p) == 1 for p in pieces if any(not c.isalnum() for c in p))
    tokenizer.save_pretrained(str(tmp_path))
    reloaded = load_tokenizer(tmp_path)
    assert encode_text(reloaded, text) == after
    assert isolate_punctuation(reloaded) is False


def test_windows_split_again_for_the_token_limit_are_counted(char_tokenizer):
    from medner.config import WindowConfig
    from medner.model.windows import FeatureStats, iter_windows
    from medner.types import Record

    record = Record("r", TEXTS[0], (Span(3, 6, "疾病和诊断"),))
    wide, narrow = FeatureStats(), FeatureStats()
    list(iter_windows([record], char_tokenizer, WindowConfig(max_chars=40, overlap=4), SCHEME, stats=wide))
    rows = list(iter_windows([record], char_tokenizer, WindowConfig(max_chars=40, overlap=4, max_tokens=16), SCHEME,
                             stats=narrow))
    assert wide.resplit_windows == 0 and wide.windows == 1
    assert all(len(row["input_ids"]) <= 16 for row in rows)
    # the window of 27 characters (29 tokens with <s> and </s>) is split again into 3 of at most 13 characters
    assert narrow.resplit_windows == 1 and narrow.windows == 3
