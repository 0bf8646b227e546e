"""ICD linker: the exact -> alias -> normalised -> fuzzy cascade, the head-word check, what a linked span
carries, labels, offsets and scores untouched, speed; the checked CCKS 2019 sample (real data)."""
from __future__ import annotations

import importlib.util
import json
import random
import time
from pathlib import Path

import pytest

from medner.corpus import read_corpus, write_jsonl
from medner.lexicon.entry import LexiconEntry
from medner.lexicon.heads import disagreement, head_split
from medner.lexicon.link import FUZZY_MIN_SCORE, MATCH_KINDS, IcdLinker, Link, mention_variants, normalise_mention
from medner.lexicon.store import write_lexicon
from medner.types import Record, Span

REPO = Path(__file__).resolve().parents[1]

ENTRIES = [
    LexiconEntry("结肠恶性肿瘤", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10_national"),
    LexiconEntry("结肠癌", "疾病和诊断", "C18.900", "结肠恶性肿瘤", "icd10_national"),  # an alias
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


@pytest.mark.parametrize("mention,label,code,match,score", [
    ("结肠恶性肿瘤", "疾病和诊断", "C18.900", "exact", 1.0),
    ("结肠癌", "疾病和诊断", "C18.900", "alias", 0.95),                 # a derived alias, as written
    ("2型糖尿病", "疾病和诊断", "E11.900", "exact", 1.0),             # national edition before gnuhealth
    ("２型糖尿病", "疾病和诊断", "E11.900", "normalised", 0.9),          # full-width digit
    ("2 型 糖尿病", "疾病和诊断", "E11.900", "normalised", 0.9),         # spaces
    ("（乙状）结肠癌", "疾病和诊断", "C18.900", "normalised", 0.9),      # a bracketed note
    ("结肠癌术后", "疾病和诊断", "C18.900", "normalised", 0.85),         # status tail
    ("原发性高血压3级极高危", "疾病和诊断", "I10.x05", "normalised", 0.85),
    ("乙状结肠高-中分化腺癌", "疾病和诊断", "C18.700", "normalised", 0.85),  # grade dropped, 腺癌 -> 癌 -> 恶性肿瘤
    ("右半结肠切除术", "手术", "45.7300x007", "exact", 1.0),
])
def test_match_kinds(linker: IcdLinker, mention: str, label: str, code: str, match: str, score: float) -> None:
    link = linker.best(mention, label)
    assert isinstance(link, Link)
    assert (link.code, link.match, link.score) == (code, match, score)
    assert link.method == link.match and link.match in MATCH_KINDS


def test_fuzzy_bigram_dice(linker: IcdLinker) -> None:
    link = linker.best("糖尿病周围神经病变", "疾病和诊断")
    # bigrams of 糖尿病周围神经病变: 8, of 糖尿病性周围神经病: 8; shared: 糖尿 尿病 周围 围神 神经 经病 = 6
    assert (link.code, link.match) == ("E14.400x023", "fuzzy")
    assert link.score == pytest.approx(2 * 6 / (8 + 8), abs=1e-4)
    assert link.canonical == "糖尿病性周围神经病"
    surgery = linker.best("腹腔镜下直肠根治术（经腹）", "手术")  # the bracket is dropped: the same operation
    assert surgery is not None and surgery.code == "48.6900x002" and surgery.match == "normalised"


HEAD_ENTRIES = [
    LexiconEntry("十二指肠乳头炎", "疾病和诊断", "K29.802", "十二指肠乳头炎", "icd10_national"),
    LexiconEntry("十二指肠恶性肿瘤", "疾病和诊断", "C17.000", "十二指肠恶性肿瘤", "icd10_national"),
    LexiconEntry("十二指肠切除术", "手术", "45.6203", "十二指肠切除术", "icd9cm3_national"),
    LexiconEntry("胰十二指肠切除术", "手术", "52.7x00", "胰十二指肠切除术", "icd9cm3_national"),
    LexiconEntry("急性乙型病毒性肝炎", "疾病和诊断", "B16.900", "急性乙型病毒性肝炎", "icd10_national"),
    LexiconEntry("乙型病毒性肝炎", "疾病和诊断", "B19.100", "乙型病毒性肝炎", "icd10_national"),
    LexiconEntry("恶性肿瘤", "疾病和诊断", "C80.x00", "恶性肿瘤", "icd10_national"),
    LexiconEntry("腺癌", "疾病和诊断", "M81400/3", "腺癌", "icd10_national"),
    LexiconEntry("胃恶性肿瘤", "疾病和诊断", "C16.900", "胃恶性肿瘤", "icd10_national"),
    LexiconEntry("肾囊肿", "疾病和诊断", "N28.1", "肾囊肿", "icd10_national"),
]


@pytest.fixture(scope="module")
def head_linker() -> IcdLinker:
    return IcdLinker(HEAD_ENTRIES)


def test_head_check_keeps_a_carcinoma_from_an_inflammation(head_linker: IcdLinker) -> None:
    mention = "十二指肠乳头低分化腺癌"
    guess = IcdLinker(HEAD_ENTRIES, head_check=False, min_score=0.3).best(mention, "疾病和诊断")
    assert guess.code == "K29.802"  # what bigram overlap alone picks: the inflammation
    assert disagreement(normalise_mention(mention), "十二指肠乳头炎", "K29.802") == "morphology"
    link = head_linker.best(mention, "疾病和诊断")
    # grade dropped, 腺癌 -> 癌 -> 恶性肿瘤: the duodenum's malignant neoplasm, a parent; never K29.802
    assert link is None or link.code != "K29.802"


def test_head_check_procedures_need_the_same_site(head_linker: IcdLinker) -> None:
    assert head_linker.best("胰十二指肠切除术", "手术").code == "52.7x00"
    no_exact = IcdLinker([e for e in HEAD_ENTRIES if e.code != "52.7x00"])
    assert no_exact.best("胰十二指肠切除术", "手术") is None  # not the duodenectomy
    assert IcdLinker(HEAD_ENTRIES[2:3], head_check=False).best("胰十二指肠切除术", "手术").code == "45.6203"


@pytest.mark.parametrize("mention,term,code,rule", [
    ("十二指肠乳头低分化腺癌", "十二指肠乳头炎", "K29.802", "morphology"),   # carcinoma vs inflammation
    ("慢性乙型病毒性肝炎", "急性乙型病毒性肝炎", "B16.900", "site"),     # the term says acute
    ("慢性乙型病毒性肝炎", "乙型病毒性肝炎", "B19.100", None),          # a parent: fine
    ("胰十二指肠切除术", "十二指肠切除术", "45.6203", "site"),            # another organ: another operation
    ("全胃切除术", "胃切除术", "43.9900", "extent"),                      # another extent
    ("乙状结肠癌根治术", "乙状结肠根治术", "45.7600", None),               # the disease operated on may be named
    ("双侧肾多房囊肿", "肾囊肿", "N28.1", None),                          # laterality and detail: a parent
    ("肝内外胆管积气", "肝内胆管积气", "K83.800", "coordination"),   # one of two positions
    ("食管贲门腺癌", "贲门恶性肿瘤", "C16.000", "site"),                 # another organ named
    ("升结肠腺癌", "结肠恶性肿瘤", "C18.900", None),                      # a part of the term's organ
    ("贲门印戒细胞癌", "恶性肿瘤", "C80.x00", "site"),                   # "site unspecified" for a sited tumour
    ("贲门印戒细胞癌", "印戒细胞癌", "M84900/3", None),                  # the morphology code is fine
    ("慢性非化脓性胆囊炎", "慢性化脓性胆囊炎", "K81.100", "negation"),
    ("胃癌合并胆囊结石", "胆囊结石", "K80.200", "coordination"),          # two diagnoses
    ("胃体粘膜糜烂", "胃体粘膜溃疡", "K25.900", "morphology"),
])
def test_disagreement_rules(mention: str, term: str, code: str, rule: str | None) -> None:
    assert disagreement(normalise_mention(mention), normalise_mention(term), code) == rule


def test_head_split() -> None:
    assert head_split("十二指肠乳头腺癌") == ("十二指肠乳头", "腺癌")
    assert head_split("高血压病") == ("高血", "压")            # optional 病, then the last character
    assert head_split("直肠根治术", procedure=True) == ("直肠", "根治术")
    assert head_split("脑血栓") == ("脑", "血栓形成")           # synonymous heads share one spelling


def test_fuzzy_threshold(linker: IcdLinker) -> None:
    assert FUZZY_MIN_SCORE == linker.min_score
    low = "糖尿病周围神经病变"  # Dice 0.75 with its term
    assert IcdLinker(ENTRIES, min_score=0.8).best(low, "疾病和诊断") is None
    assert IcdLinker(ENTRIES, min_score=0.7).best(low, "疾病和诊断").match == "fuzzy"


def test_linked_span_carries_code_name_match_and_link_score(linker: IcdLinker, tmp_path: Path) -> None:
    text = "诊断：结肠癌术后。"
    span = Span(3, 8, "疾病和诊断", score=0.87, source="model")
    linked = linker.link(text, span)
    expected = ("C18.900", "结肠恶性肿瘤", "normalised", 0.85)
    assert (linked.code, linked.name, linked.match, linked.link_score) == expected
    assert linked == span and linked.score == 0.87  # link fields, like score, are not part of equality
    row = linked.to_dict(text)
    assert row == {"start": 3, "end": 8, "label": "疾病和诊断", "text": "结肠癌术后", "code": "C18.900",
                   "name": "结肠恶性肿瘤", "match": "normalised", "link_score": 0.85, "score": 0.87, "source": "model"}
    path = tmp_path / "linked.jsonl"
    write_jsonl([Record("r1", text, (linked,))], path)
    back = next(iter(read_corpus(path, "jsonl"))).spans[0]
    assert (back.code, back.name, back.match, back.link_score, back.score) == ("C18.900", "结肠恶性肿瘤", "normalised",
                                                                             0.85, 0.87)
    assert json.loads(path.read_text(encoding="utf-8"))["spans"][0]["link_score"] == 0.85
    assert Span(0, 1, "x", score=0.1234567891).to_dict()["score"] == 0.123457  # rounded like everywhere


def test_no_match(linker: IcdLinker) -> None:
    assert linker.best("患者一般情况可", "疾病和诊断") is None
    assert linker.best("", "疾病和诊断") is None
    assert linker.best("阿司匹林", "药物") is None                 # label not linked
    assert linker.best("胆囊切除术", "疾病和诊断") is None          # procedures are not diseases
    strict = IcdLinker(ENTRIES, min_score=0.9)
    assert strict.best("糖尿病周围神经病变", "疾病和诊断") is None


def test_link_span_keeps_offsets_label_and_score(linker: IcdLinker) -> None:  # noqa: D103
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
    assert mention_variants("左肺上叶腺癌术后")[:2] == ["左肺上叶腺癌", "肺上叶腺癌"]
    assert "肺上叶癌" in mention_variants("左肺上叶腺癌术后")                 # morphology generalised last
    assert mention_variants("结肠癌") == ["结肠恶性肿瘤"]
    assert mention_variants("房颤")[0] == "心房颤动"                       # abbreviations written out
    assert "胃窦癌" in mention_variants("胃窦多发中分化腺癌")
    assert "房颤" not in mention_variants("房颤伴长间歇")
    assert "心房颤动" in mention_variants("房颤伴长间歇")              # a tail that names no diagnosis
    assert "胃癌" not in mention_variants("胃癌伴贲门梗阻")                 # two diagnoses: no single code


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


@pytest.mark.realdata
def test_link_precision_on_the_checked_ccks2019_sample(shared_data: Path, tmp_path: Path) -> None:
    """What is emitted by default is right >= 95% of the time on the checked CCKS 2019 sample (dev census) and
    on the links judged blind (lines 301-400)."""
    spec = importlib.util.spec_from_file_location("bench_link", REPO / "scripts" / "bench" / "bench_link.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lexicon = REPO / "lexicons" / "build" / "lexicon_zh.tsv"
    if not lexicon.is_file():
        from medner.lexicon.build import build_lexicon  # start-up time: only when no built lexicon exists

        lexicon = tmp_path / "lexicon_zh.tsv"
        build_lexicon(REPO / "configs" / "lexicon_zh.yaml", lexicon)
    linker = IcdLinker.from_lexicon(lexicon)
    records = {r.meta["line"]: r for r in read_corpus(shared_data.joinpath(*bench.CORPUS), "ccks2019")}
    result = bench.evaluate(linker, bench.read_sample(bench.SAMPLE), records, todo=False)
    dev = result["strata"]["dev"]["all"]
    assert dev["unjudged"] <= 0.02 * dev["links"], dev
    assert dev["precision"] >= 0.95, dev
    assert result["strata"]["blind_301_400"]["all"]["precision"] >= 0.95
    assert result["coverage"]["coverage"] >= 0.6
