"""Every corpus in ../shared/data/corpora loads with the counts documented in ../shared/data/SOURCES.md.

Numbers here come from SOURCES.md only. Skipped (with a reason) when ../shared/data is absent.
"""
from __future__ import annotations

from collections import Counter

import pytest

from medner.corpus import ReadReport, read_corpus, write_jsonl
from medner.corpus.stats import corpus_stats
from medner.errors import CorpusError

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def corpora(shared_data):
    return shared_data / "corpora"


def load(path, fmt, **kwargs):
    report = ReadReport()
    records = list(read_corpus(path, fmt, report=report, **kwargs))
    for record in records:  # offsets are sacred: every span lies inside its text
        for span in record.spans:
            assert 0 <= span.start < span.end <= len(record.text)
    return records, report


def n_spans(records) -> int:
    return sum(len(r.spans) for r in records)


@pytest.mark.parametrize("name,docs,entities,edge_whitespace", [
    ("subtask1_training_part1.txt", 400, 7342, 19),
    ("subtask1_training_part2.txt", 600, 10311, 68),
])
def test_ccks2019(corpora, name, docs, entities, edge_whitespace):
    records, report = load(corpora / "ccks2019_yidu" / name, "ccks2019")
    assert (len(records), n_spans(records), report.skipped) == (docs, entities, 0)
    assert report.whitespace_edge_spans == edge_whitespace  # counted, kept as the file has them
    assert len({r.id for r in records}) == docs


def test_ccks2017_zip(corpora, tmp_path):
    records, report = load(corpora / "ccks2017_cner" / "data_origin.zip", "ccks2017")
    assert (len(records), n_spans(records), report.skipped, report.case_mismatches) == (1198, 29866, 0, 0)
    assert Counter(s.label for r in records for s in r.spans) == {
        "身体部位": 10719, "检查和检验": 9546, "症状和体征": 7831, "治疗": 1048, "疾病和诊断": 722}
    assert {r.meta["section"] for r in records} == {"一般项目", "出院情况", "病史特点", "诊疗经过"}
    assert len({r.id for r in records}) == 1198
    # lossless through jsonl, CRLF text included
    out = tmp_path / "ccks2017.jsonl"
    write_jsonl(records, out)
    assert list(read_corpus(out, "jsonl")) == records


def test_chip_train_raise_mode_stops_at_first_malformed_span(corpora):
    with pytest.raises(CorpusError) as info:
        list(read_corpus(corpora / "chip2020_cmeee_v1" / "train_data.txt", "chip"))
    assert "train_data.txt:6052 " in str(info.value) and "expected start <= end" in str(info.value)


def test_chip_train_skip_mode(corpora):
    records, report = load(corpora / "chip2020_cmeee_v1" / "train_data.txt", "chip", on_error="skip")
    # SOURCES.md: 15,000 sentences, 61,796 entities of which 2 malformed (start > end) at lines 6052 and 6422
    assert (len(records), n_spans(records)) == (15000, 61796 - 2)
    assert (report.skipped_spans, report.skipped_records) == (2, 0)
    assert report.problems == {"start_not_before_end": 2}
    assert [e.split(" ")[0].rsplit(":", 1)[1] for e in report.examples] == ["6052", "6422"]
    assert corpus_stats(records)["overlapping_pairs"] == 3681
    assert len({s.label for r in records for s in r.spans}) == 9
    assert all("\r" not in r.text for r in records)


def test_chip_val(corpora):
    records, report = load(corpora / "chip2020_cmeee_v1" / "val_data.txt", "chip")
    assert (len(records), n_spans(records), report.skipped) == (5000, 20300, 0)


@pytest.mark.parametrize("name,sentences", [("test1_unlabeled.txt", 3000), ("test2_unlabeled.txt", 5618)])
def test_chip_unlabelled(corpora, name, sentences):
    records, _ = load(corpora / "chip2020_cmeee_v1" / name, "chip")
    assert (len(records), n_spans(records)) == (sentences, 0)


def test_cmeee_v2(corpora):
    dev, report = load(corpora / "cmeee_v2" / "CMeEE-V2_dev.json", "cmeee")
    assert (len(dev), n_spans(dev), report.skipped) == (5000, 26081, 0)
    test, _ = load(corpora / "cmeee_v2" / "CMeEE-V2_test.json", "cmeee")
    assert (len(test), n_spans(test)) == (3000, 0)
    # SOURCES.md: same texts as CHIP-2020 val, re-annotated
    val, _ = load(corpora / "chip2020_cmeee_v1" / "val_data.txt", "chip")
    assert [r.text for r in dev] == [r.text for r in val]


def test_tianchi_brat(corpora):
    records, report = load(corpora / "tianchi_tcm_leaflet" / "train", "brat")
    assert (len(records), n_spans(records), report.skipped, report.discontinuous_spans) == (1000, 17757, 0, 0)
    assert len({s.label for r in records for s in r.spans}) == 13


@pytest.mark.parametrize("split,docs", [("train", 1673), ("dev", 175), ("test", 215)])
def test_cmedqaner_json_and_bio(corpora, split, docs):
    records, report = load(corpora / "cmedqaner" / f"{split}.json", "cmedqaner", on_error="skip")
    assert len(records) == docs
    assert len({s.label for r in records for s in r.spans}) == 11
    bio, bio_report = load(corpora / "cmedqaner" / f"{split}.txt", "bio")
    assert [r.text for r in bio] == [r.text for r in records]
    assert bio_report.skipped == 0


def test_cmedqaner_train_mismatches(corpora):
    path = corpora / "cmedqaner" / "train.json"
    with pytest.raises(CorpusError, match="mention mismatch"):
        list(read_corpus(path, "cmedqaner"))
    records, report = load(path, "cmedqaner", on_error="skip")
    # SOURCES.md: 82 train mention mismatches, 67 case-only (accepted) and 15 off-by-one (errors)
    assert (report.case_mismatches, report.skipped_spans) == (67, 15)
    assert report.problems == {"mention_mismatch": 15}
