"""ICD linker: the exact -> normalised -> fuzzy cascade, labels, offsets and scores untouched, speed."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from medner.lexicon.entry import LexiconEntry
from medner.lexicon.link import IcdLinker, Link, mention_variants, normalise_mention
from medner.lexicon.store import write_lexicon
from medner.types import Span

ENTRIES = [
    LexiconEntry("结肠恶性肿瘤", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10_national"),
    LexiconEntry("结肠癌", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10_national"),
    LexiconEntry("乙状结肠恶性肿瘤", "疾病和诊断", "C18.700", "乙状结肠恶性肿瘤", "icd10_national"),
    LexiconEntry("直肠恶性肿瘤", "疾病和诊断", "C20.x00", "直肠恶性肿瘤", "icd10_national"),
    LexiconEntry("原发性高血压", "疾病和诊断", "I10.x05", "原发性高血压", "icd10_national"),
    LexiconEntry("2型糖尿病", "疾病和诊断", "E11.900", "2型糖尿病", "icd10_national"),
    LexiconEntry("2型糖尿病", "疾病和诊断", "E11.9", "2型糖尿病", "gnuhealth_zh"),
    LexiconEntry("糖尿病性周围神经病", "疾病和诊断", "E14.400x023", "糖尿病性周围神经病", "icd10_national"),
    LexiconEntry("右半结肠切除术", "手术", "45.7300x007", "右半结肠切除术", "icd9cm3_national"),
    LexiconEntry("腹腔镜下直肠根治术", "手术", "48.6900x002", "腹腔镜下直肠根治术", "icd9cm3_national"),
    LexiconEntry("胆囊切除术", "手术", "51.2200", "胆囊切除术", "icd9cm3_national"),
    LexiconEntry("阿司匹林", "药物", None, "阿司匹林", "drugs"),  # no code: never linked
]


@pytest.fixture(scope="module")
def linker() -> IcdLinker:
    return IcdLinker(ENTRIES)


@pytest.mark.parametrize("mention,label,code,method,score", [
    ("结肠癌", "疾病和诊断", "C18.900", "exact", 1.0),
    ("2型糖尿病", "疾病和诊断", "E11.900", "exact", 1.0),             # national edition before gnuhealth
    ("２型糖尿病", "疾病和诊断", "E11.900", "normalised", 0.95),         # full-width digit
    ("2 型 糖尿病", "疾病和诊断", "E11.900", "normalised", 0.95),        # spaces
    ("（乙状）结肠癌", "疾病和诊断", "C18.900", "normalised", 0.95),     # a bracketed note
    ("结肠癌术后", "疾病和诊断", "C18.900", "normalised", 0.9),          # status tail
    ("原发性高血压3级极高危", "疾病和诊断", "I10.x05", "normalised", 0.9),
    ("右半结肠切除术", "手术", "45.7300x007", "exact", 1.0),
])
def test_exact_and_normalised(linker: IcdLinker, mention: str, label: str, code: str, method: str,
                              score: float) -> None:
    link = linker.best(mention, label)
    assert isinstance(link, Link)
    assert (link.code, link.method, link.score) == (code, method, score)


def test_fuzzy_bigram_dice(linker: IcdLinker) -> None:
    link = linker.best("糖尿病周围神经病变", "疾病和诊断")
    # bigrams of 糖尿病周围神经病变: 8, of 糖尿病性周围神经病: 8; shared: 糖尿 尿病 周围 围神 神经 经病 = 6
    assert (link.code, link.method) == ("E14.400x023", "fuzzy")
    assert link.score == pytest.approx(2 * 6 / (8 + 8), abs=1e-4)
    assert link.canonical == "糖尿病性周围神经病"
    surgery = linker.best("腹腔镜上直肠根治术（DIXON）", "手术")
    assert surgery is not None and surgery.code == "48.6900x002" and surgery.method == "fuzzy"


def test_no_match(linker: IcdLinker) -> None:
    assert linker.best("患者一般情况可", "疾病和诊断") is None
    assert linker.best("", "疾病和诊断") is None
    assert linker.best("阿司匹林", "药物") is None                 # label not linked
    assert linker.best("胆囊切除术", "疾病和诊断") is None          # procedures are not diseases
    strict = IcdLinker(ENTRIES, min_score=0.9)
    assert strict.best("糖尿病周围神经病变", "疾病和诊断") is None


def test_link_span_keeps_offsets_label_and_score(linker: IcdLinker) -> None:
    text = "诊断：结肠癌术后，行右半结肠切除术。"
    span = Span(3, 8, "疾病和诊断", score=0.87, source="model")
    linked = linker.link(text, span)
    assert (linked.start, linked.end, linked.label, linked.score, linked.source) == (3, 8, "疾病和诊断", 0.87, "model")
    assert linked.code == "C18.900"
    other = Span(0, 2, "解剖部位", score=0.5)
    assert linker(text, other) is other                           # other labels pass through
    coded = Span(3, 8, "疾病和诊断", code="X00")
    assert linker.link(text, coded).code == "X00"
    assert IcdLinker(ENTRIES, overwrite=True).link(text, coded).code == "C18.900"
    spans = linker.link_spans(text, [span, Span(10, 17, "手术")])
    assert [s.code for s in spans] == ["C18.900", "45.7300x007"]


def test_label_map_for_other_corpora() -> None:
    linker = IcdLinker(ENTRIES, labels=("dis",), label_map={"dis": "疾病和诊断"})
    assert linker.link("结肠癌", Span(0, 3, "dis")).code == "C18.900"
    assert linker.link("结肠癌", Span(0, 3, "疾病和诊断")).code is None


def test_variants_and_normalisation() -> None:
    assert normalise_mention("（直肠）溃疡型 腺癌，") == "溃疡型腺癌"
    assert mention_variants("左肺上叶腺癌术后") == ["左肺上叶腺癌", "肺上叶腺癌"]
    assert mention_variants("结肠癌") == []


def test_from_lexicon_and_argument_checks(tmp_path: Path) -> None:
    path = tmp_path / "lex.tsv"
    write_lexicon(ENTRIES, path, version="t-1")
    linker = IcdLinker.from_lexicon(path)
    assert linker.best("直肠恶性肿瘤", "疾病和诊断").code == "C20.x00"
    assert len(linker) == 10  # 11 coded entries; reading the file merges 2型糖尿病 E11.9 into E11.900
    with pytest.raises(ValueError, match="min_score"):
        IcdLinker(ENTRIES, min_score=0)
    with pytest.raises(ValueError, match="ngram"):
        IcdLinker(ENTRIES, ngram=0)


def test_speed_with_inverted_index() -> None:
    rnd = random.Random(0)
    chars = "恶性肿瘤结肠直肠胃肝肺食管乳腺炎病症综合征囊肿结石息肉出血感染损伤骨折慢性急性先天性继发原发"
    entries = [LexiconEntry("".join(rnd.choice(chars) for _ in range(rnd.randint(3, 12))), "疾病和诊断",
                            f"X{i:05d}", "", "synthetic") for i in range(30_000)]
    linker = IcdLinker(entries)
    mentions = ["".join(rnd.choice(chars) for _ in range(rnd.randint(3, 12))) for _ in range(300)]
    start = time.perf_counter()
    found = [linker.best(m, "疾病和诊断") for m in mentions]
    rate = len(mentions) / (time.perf_counter() - start)
    assert any(found)
    assert rate > 200, f"{rate:.0f} mentions/s"  # a linear scan of 30k terms per mention would be far slower
