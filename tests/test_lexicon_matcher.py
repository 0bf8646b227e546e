"""LexiconMatcher: leftmost-longest, priority, stop terms, folding with exact raw offsets, word boundaries."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medner.lexicon import LexiconEntry, LexiconMatcher, write_lexicon
from medner.lexicon.normalize import fold
from medner.types import Span


def E(term: str, label: str = "疾病和诊断", code: str | None = None, canonical: str = "", source: str = "t"):
    return LexiconEntry(term, label, code, canonical, source)


def found(matcher: LexiconMatcher, text: str) -> list[tuple[str, str]]:
    return [(text[s.start:s.end], s.label) for s in matcher.find(text)]


def test_longest_match_wins() -> None:
    m = LexiconMatcher([E("肺癌"), E("右肺上叶肺癌"), E("上叶"), E("右肺", "解剖部位")])
    assert found(m, "诊断：右肺上叶肺癌术后") == [("右肺上叶肺癌", "疾病和诊断")]


def test_leftmost_then_longest() -> None:
    m = LexiconMatcher([E("甲乙"), E("乙丙丁")])
    assert found(m, "甲乙丙丁") == [("甲乙", "疾病和诊断")]
    m = LexiconMatcher([E("甲乙丙"), E("乙丙丁戊")])
    assert found(m, "甲乙丙丁戊") == [("甲乙丙", "疾病和诊断")]
    m = LexiconMatcher([E("甲乙"), E("丙丁")])
    assert found(m, "子甲乙丙丁子") == [("甲乙", "疾病和诊断"), ("丙丁", "疾病和诊断")]
    m = LexiconMatcher([E("ab"), E("bcd")], word_boundary=False)
    assert found(m, "abcd") == [("ab", "疾病和诊断")]


def test_span_fields() -> None:
    m = LexiconMatcher([E("肺癌", code="C34.900", source="icd10_national")])
    (span,) = m.find("原发性肺癌")
    assert span == Span(3, 5, "疾病和诊断")
    assert (span.code, span.source, span.score) == ("C34.900", "icd10_national", None)


def test_label_priority_for_the_same_term() -> None:
    entries = [E("阑尾", "解剖部位"), E("阑尾", "疾病和诊断", "K38.9")]
    assert found(LexiconMatcher(entries), "阑尾") == [("阑尾", "疾病和诊断")]  # alphabetical without priority
    m = LexiconMatcher(entries, label_priority=["解剖部位", "疾病和诊断"])
    assert found(m, "阑尾") == [("阑尾", "解剖部位")]
    m = LexiconMatcher(entries, label_priority=["疾病和诊断"])
    assert found(m, "阑尾") == [("阑尾", "疾病和诊断")]


def test_official_name_beats_alias_then_first_entry() -> None:
    alias = E("肺癌", code="C34.901", canonical="肺恶性肿瘤")
    official = E("肺癌", code="C34.900")
    assert LexiconMatcher([alias, official]).find("肺癌")[0].code == "C34.900"
    assert LexiconMatcher([E("肺癌", code="A"), E("肺癌", code="B")]).find("肺癌")[0].code == "A"


def test_terms_folding_to_the_same_key() -> None:
    m = LexiconMatcher([E("ＣＴ", "影像检查", code="1"), E("ct", "影像检查", code="2")])
    assert len(m) == 1 and m.find("CT")[0].code == "1"


def test_stop_terms_and_min_length() -> None:
    entries = [E("不适"), E("腹胀"), E("痛"), E("腹胀不适")]
    m = LexiconMatcher(entries, stop_terms={"不适"})
    assert found(m, "腹胀，不适，痛") == [("腹胀", "疾病和诊断")]
    assert found(m, "腹胀不适") == [("腹胀不适", "疾病和诊断")]
    m = LexiconMatcher(entries, min_length=1)
    assert ("痛", "疾病和诊断") in found(m, "腹胀，不适，痛")
    with pytest.raises(ValueError):
        LexiconMatcher(entries, min_length=0)


def test_stop_terms_are_folded() -> None:
    m = LexiconMatcher([E("CT", "影像检查")], stop_terms={"ｃｔ"})
    assert m.find("CT示") == []


def test_labels_filter() -> None:
    m = LexiconMatcher([E("阿司匹林", "药物"), E("肺癌")], labels=["药物"])
    assert found(m, "肺癌服阿司匹林") == [("阿司匹林", "药物")]


def test_full_width_and_case_offsets_exact() -> None:
    m = LexiconMatcher([E("ct", "影像检查"), E("右肺上叶结节")])
    text = "ＣＴ示右肺上叶结节"
    spans = m.find(text)
    assert [(s.start, s.end) for s in spans] == [(0, 2), (3, 9)]
    assert text[0:2] == "ＣＴ"
    for span in spans:
        assert fold(text[span.start:span.end]) in {"ct", "右肺上叶结节"}


def test_offsets_after_length_changing_characters() -> None:
    m = LexiconMatcher([E("II型呼吸衰竭"), E("发热"), E("CT", "影像检查"), E("c型")])
    text = "体温38.5℃，发热，Ⅱ型呼吸衰竭，复查CT"
    got = found(m, text)
    assert got == [("发热", "疾病和诊断"), ("Ⅱ型呼吸衰竭", "疾病和诊断"), ("CT", "影像检查")]
    assert m.find("℃型") == []  # "c型" would need half of "℃" (-> "°c")


def test_word_boundary_for_latin_and_digit_edges() -> None:
    m = LexiconMatcher([E("CT", "影像检查"), E("2型糖尿病"), E("CTA", "影像检查"), E("T2", "x")])
    assert found(m, "行CTA检查") == [("CTA", "影像检查")]
    assert found(m, "PCT升高") == []
    assert found(m, "CT示") == [("CT", "影像检查")]
    assert found(m, "12型糖尿病") == []
    assert found(m, "患2型糖尿病") == [("2型糖尿病", "疾病和诊断")]
    off = LexiconMatcher([E("CT", "影像检查")], word_boundary=False)
    assert found(off, "PCT") == [("CT", "影像检查")]


def test_boundary_check_lets_a_shorter_match_through() -> None:
    m = LexiconMatcher([E("CT", "影像检查"), E("CT2", "x")])
    assert found(m, "CT25") == []
    m = LexiconMatcher([E("胸部CT", "影像检查"), E("胸部", "解剖部位")])
    assert found(m, "胸部CTA") == [("胸部", "解剖部位")]


def test_empty_inputs() -> None:
    assert LexiconMatcher([]).find("肺癌") == []
    assert LexiconMatcher([E("肺癌")]).find("") == []


def test_sentinel_in_text_is_harmless() -> None:
    m = LexiconMatcher([E("肺癌")])
    assert found(m, "肺\uffff肺癌，\uffff") == [("肺癌", "疾病和诊断")]


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "lex.tsv"
    write_lexicon([E("肺癌", code="C34.900"), E("CT", "影像检查")], path, version="t")
    m = LexiconMatcher.from_file(path, label_priority=["影像检查"])
    assert found(m, "ＣＴ示肺癌") == [("ＣＴ", "影像检查"), ("肺癌", "疾病和诊断")]


def oracle(terms: list[str], text: str, min_length: int) -> list[tuple[int, int]]:
    """Leftmost-longest by brute force (no folding: the alphabet below has nothing to fold)."""
    keys = {t for t in terms if len(t) >= min_length}
    out, pos = [], 0
    while pos < len(text):
        ends = [e for e in range(pos + 1, len(text) + 1) if text[pos:e] in keys]
        if ends:
            out.append((pos, max(ends)))
            pos = max(ends)
        else:
            pos += 1
    return out


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.text(alphabet="肺癌上叶结", min_size=1, max_size=4), min_size=1, max_size=12),
       st.text(alphabet="肺癌上叶结，", max_size=40), st.integers(min_value=1, max_value=3))
def test_matches_brute_force_oracle(terms: list[str], text: str, min_length: int) -> None:
    m = LexiconMatcher([E(t) for t in terms], min_length=min_length)
    spans = m.find(text)
    assert [(s.start, s.end) for s in spans] == oracle(terms, text, min_length)
    assert all(text[s.start:s.end] in terms for s in spans)


def test_match_edges_are_whole_characters_like_model_spans() -> None:
    """A combining mark or joiner after a term's last character belongs to that character (one grapheme
    cluster): the match takes it, as model spans do; text of single code points is untouched."""
    from medner.text import trim_spans

    matcher = LexiconMatcher([LexiconEntry("胃癌", "疾病和诊断"), LexiconEntry("阿司匹林", "药物")], min_length=2)
    for text in ("患者胃癌\u0301入院", "患者胃癌\u200d入院，予阿司匹林。", "胃癌入院"):
        spans = matcher.find(text)
        assert spans and spans == trim_spans(text, spans), text  # already on whole characters
        assert all(text[s.start:s.end].startswith(("胃癌", "阿司匹林")) for s in spans)
    assert [(s.start, s.end) for s in matcher.find("患者胃癌\u0301入院")] == [(2, 5)]
