"""Labelling functions: the one contract, offsets on raw text, label mapping, prefixes, suffixes, blockers."""
from __future__ import annotations

import re

import pytest

from medner.lexicon.entry import LexiconEntry
from medner.types import Record, Span
from medner.weak.base import LabellingFunction, LexiconLF, RegexLF, leftmost_longest


def rec(text: str) -> Record:
    return Record("t", text)


ENTRIES = [
    LexiconEntry("结肠癌", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10"),
    LexiconEntry("结肠恶性肿瘤", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10"),
    LexiconEntry("右半结肠切除术", "手术", "45.7300x007", "右半结肠切除术", "icd9"),
    LexiconEntry("腹", "anatomy", None, "腹", "curated"),
    LexiconEntry("肺上叶", "anatomy", None, "肺上叶", "curated"),
    LexiconEntry("CT", "imaging_modality", None, "CT", "curated"),
]


def test_protocol_and_source_and_code() -> None:
    lf = LexiconLF("icd10", ENTRIES, label_map={"疾病和诊断": "疾病和诊断"})
    assert isinstance(lf, LabellingFunction)
    text = "诊断：结肠癌。"
    (span,) = lf.find_spans(rec(text))
    assert text[span.start:span.end] == "结肠癌"
    assert (span.label, span.code, span.source, span.score) == ("疾病和诊断", "C18.900", "icd10", None)


def test_abstains_by_yielding_nothing() -> None:
    lf = LexiconLF("icd10", ENTRIES, label_map={"疾病和诊断": "疾病和诊断"})
    assert list(lf.find_spans(rec("患者一般情况可。"))) == []
    assert list(lf.find_spans(rec(""))) == []


def test_label_map_relabels_and_filters() -> None:
    lf = LexiconLF("anatomy", ENTRIES, label_map={"anatomy": "解剖部位"}, min_length=1)
    spans = list(lf.find_spans(rec("腹痛，结肠癌")))
    assert [(s.label, s.start, s.end) for s in spans] == [("解剖部位", 0, 1)]
    assert lf.labels == ("解剖部位",)


def test_sources_filter_and_aliases_switch() -> None:
    lf = LexiconLF("p", ENTRIES, sources=["icd9"], label_map={"手术": "手术", "疾病和诊断": "疾病和诊断"})
    assert [s.label for s in lf.find_spans(rec("结肠癌行右半结肠切除术"))] == ["手术"]
    official = LexiconLF("raw", ENTRIES, label_map={"疾病和诊断": "疾病和诊断"}, include_aliases=False)
    assert list(official.find_spans(rec("结肠癌"))) == []  # 结肠癌 is an alias of 结肠恶性肿瘤
    assert len(list(official.find_spans(rec("结肠恶性肿瘤")))) == 1


def test_laterality_prefix() -> None:
    lf = LexiconLF("anatomy", ENTRIES, label_map={"anatomy": "解剖部位"}, prefixes=("左", "右", "双侧"), min_length=1)
    text = "右肺上叶见结节，双侧腹部"
    assert [text[s.start:s.end] for s in lf.find_spans(rec(text))] == ["右肺上叶", "双侧腹"]


def test_suffix_extends_span() -> None:
    lf = LexiconLF("icd10", ENTRIES, label_map={"疾病和诊断": "疾病和诊断"}, suffixes=["术后"])
    text = "结肠癌术后，结肠癌"
    spans = list(lf.find_spans(rec(text)))
    assert [text[s.start:s.end] for s in spans] == ["结肠癌术后", "结肠癌"]


def test_blockers_hide_inner_matches() -> None:
    entries = [LexiconEntry("心", "anatomy", None, "心", "c")]
    lf = LexiconLF("anatomy", entries, label_map={"anatomy": "解剖部位"}, min_length=1, block=["恶心"])
    text = "无恶心，心前区不适"
    assert [(s.start, s.end) for s in lf.find_spans(rec(text))] == [(4, 5)]
    assert lf.labels == ("解剖部位",)


def test_block_matching_blocks_entries() -> None:
    entries = [LexiconEntry("结肠肿物", "疾病和诊断", "D37.401", "结肠肿物", "icd10"),
               LexiconEntry("肿物", "疾病和诊断", None, "肿物", "icd10"),
               LexiconEntry("结肠癌", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10")]
    lf = LexiconLF("icd10", entries, label_map={"疾病和诊断": "疾病和诊断"}, prefixes=("右",),
                   block_matching="肿物$")
    text = "结肠肿物，右结肠肿物，结肠癌"
    assert [text[s.start:s.end] for s in lf.find_spans(rec(text))] == ["结肠癌"]
    assert lf.n_entries == 1
    with pytest.raises(ValueError, match="block_matching"):
        LexiconLF("icd10", entries, label_map={"疾病和诊断": "x"}, block_matching="(")


def test_not_before_drops_immunohistochemistry() -> None:
    entries = [LexiconEntry("CEA", "lab_test", None, "CEA", "c")]
    lf = LexiconLF("lab", entries, label_map={"lab_test": "实验室检验"}, not_before=r"\s*[(（]?\s*[+-]")
    text = "CEA（+），CEA 5.6ng/ml"
    assert [(s.start, s.end) for s in lf.find_spans(rec(text))] == [(7, 10)]
    with pytest.raises(ValueError, match="not_before"):
        LexiconLF("lab", entries, label_map={"lab_test": "x"}, not_before="(")


def test_folding_keeps_raw_offsets() -> None:
    lf = LexiconLF("img", ENTRIES, label_map={"imaging_modality": "影像检查"})
    text = "℃上腹部ＣＴ示"  # ℃ folds to two characters; ＣＴ is full width
    (span,) = lf.find_spans(rec(text))
    assert text[span.start:span.end] == "ＣＴ"


def test_regex_lf_named_group_and_folding() -> None:
    lf = RegexLF("r", "影像检查", [r"(?P<span>胸部ct)示"])
    text = "㎝胸部ＣＴ示结节"  # ㎝ folds to "cm"
    (span,) = lf.find_spans(rec(text))
    assert text[span.start:span.end] == "胸部ＣＴ"
    assert (span.label, span.source) == ("影像检查", "r")


def test_regex_lf_leftmost_longest_and_errors() -> None:
    lf = RegexLF("r", "X", ["abc", "ab", "bcd"])
    assert [(s.start, s.end) for s in lf.find_spans(rec("abcd"))] == [(0, 3)]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        RegexLF("bad", "X", ["("])
    with pytest.raises(ValueError, match="at least one pattern"):
        RegexLF("empty", "X", [])
    assert isinstance(RegexLF("c", "X", [re.compile("a")]), LabellingFunction)


def test_leftmost_longest() -> None:
    spans = [Span(0, 2, "A"), Span(0, 3, "B"), Span(2, 5, "C"), Span(3, 4, "D")]
    assert [(s.start, s.end, s.label) for s in leftmost_longest(spans)] == [(0, 3, "B"), (3, 4, "D")]
