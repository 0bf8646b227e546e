"""corpus_stats against hand-computed values and a brute-force overlap oracle."""
from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medner.corpus import read_corpus
from medner.corpus.stats import corpus_stats, format_stats, overlapping_pairs, percentiles
from medner.types import Record, Span

DATA = Path(__file__).parent / "data" / "corpus"


def test_percentiles_nearest_rank():
    assert percentiles(list(range(10, 0, -1))) == {"p50": 5, "p90": 9, "p99": 10, "max": 10}
    assert percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}


def test_overlapping_pairs_small_cases():
    assert overlapping_pairs([Span(0, 2, "a"), Span(2, 4, "a")]) == 0  # touching is not overlapping
    assert overlapping_pairs([Span(0, 4, "a"), Span(1, 2, "b"), Span(3, 5, "c")]) == 2
    assert overlapping_pairs([Span(0, 2, "a"), Span(0, 2, "b")]) == 1  # same extent, two labels


span_strategy = st.builds(lambda s, n, l: Span(s, s + n, l), st.integers(0, 30), st.integers(1, 8),
                          st.sampled_from("abc"))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(span_strategy, max_size=12))
def test_overlapping_pairs_matches_brute_force(spans):
    brute = sum(a.overlaps(b) for a, b in itertools.combinations(spans, 2))
    assert overlapping_pairs(spans) == brute


def test_corpus_stats_hand_computed():
    records = [
        Record("a", "发热咳嗽", (Span(0, 2, "sym"), Span(2, 4, "sym"))),
        Record("b", "右下肺湿啰音", (Span(0, 3, "bod"), Span(0, 6, "sym"))),
        Record("c", ""),
    ]
    stats = corpus_stats(records)
    assert stats["records"] == 3 and stats["characters"] == 10 and stats["entities"] == 4
    assert stats["per_type"] == {"sym": 3, "bod": 1}
    assert stats["overlapping_pairs"] == 1 and stats["records_with_overlap"] == 1
    assert stats["records_without_entities"] == 1 and stats["empty_records"] == 1
    assert stats["length_percentiles"] == {"p50": 4, "p90": 6, "p99": 6, "max": 6}
    assert stats["entity_length_percentiles"] == {"p50": 2, "p90": 6, "p99": 6, "max": 6}
    table = format_stats(stats)
    assert "overlapping pairs" in table and "sym" in table and "发热" not in table


def test_chip_fixture_stats():
    stats = corpus_stats(read_corpus(DATA / "chip" / "sample.txt", "chip"))
    # 4 sentences of 22 + 21 + 14 + 10 characters; 3 + 5 + 2 + 0 spans; line 2 has three overlapping pairs
    assert (stats["records"], stats["characters"], stats["entities"]) == (4, 67, 10)
    assert stats["overlapping_pairs"] == 3
    assert stats["per_type"] == {"sym": 5, "dis": 2, "bod": 1, "dru": 1, "pro": 1}


def test_empty_corpus_stats():
    stats = corpus_stats([])
    assert stats["records"] == 0 and stats["length_percentiles"]["max"] is None
    assert "records" in format_stats(stats)


def test_duplicate_ids_are_counted_as_strings(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "text": "肺炎"}\n{"id": "1", "text": "胃癌"}\n{"id": "a", "text": "发热"}\n'
                    '{"id": "a", "text": "咳嗽"}\n{"id": "a", "text": "头痛"}\n{"id": "b", "text": "乏力"}\n',
                    encoding="utf-8")
    stats = corpus_stats(read_corpus(path, "jsonl"))
    assert stats["duplicate_ids"] == 3 and stats["ids_repeated"] == 2  # 3 records repeat 2 ids (1 and a)
    table = format_stats(stats)
    assert "duplicate ids                3  (2 id(s) repeated, first: '1', 'a')" in table and "肺炎" not in table
    unique = corpus_stats([Record("a", "x"), Record("b", "y")])
    assert unique["duplicate_ids"] == 0 and unique["ids_repeated"] == 0
    assert "duplicate ids                0" in format_stats(unique)
