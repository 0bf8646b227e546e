"""Alias rules (table-driven) and offset-safe folding."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medner.lexicon.normalize import BRACKET_NOTES, RULE_NAMES, aliases, fold, fold_with_offsets
from medner.text import normalize_with_map

KNOWN = {"恶心", "呕吐", "伤寒", "副伤寒"}

# name -> aliases expected (exactly, in order); the rule each comes from is in the second table
ALIASES = [
    ("肾(除外肾盂)恶性肿瘤", ["肾恶性肿瘤", "肾癌"]),
    ("土拉菌病[兔热病]", ["土拉菌病", "兔热病"]),
    ("多指[趾]畸形", ["多指畸形"]),
    ("肿瘤引起的贫血(C00-D48+)", ["肿瘤引起的贫血"]),
    ("良性颅内压增高[假性脑瘤][特发性颅内高压]", ["良性颅内压增高", "特发性颅内高压"]),
    ("光接触性皮炎\\[香料皮炎\\]", ["光接触性皮炎", "香料皮炎"]),
    ("激光小梁成形术[ALP]", ["激光小梁成形术"]),
    ("颈动脉血管内超声(IVUS)", ["颈动脉血管内超声"]),
    ("发声和多种运动联合抽动障碍 ［德拉图雷特综合征］", ["发声和多种运动联合抽动障碍", "德拉图雷特综合征"]),
    ("未特指的霍乱", ["霍乱"]),
    ("其他沙门菌感染", ["沙门菌感染"]),
    ("其他和未特指的梅毒", ["梅毒"]),
    ("其他部位的原位黑色素瘤", []),
    ("未特指原因的变应性接触性皮炎", []),
    ("筋膜炎 NEC", ["筋膜炎"]),
    ("双侧腭裂 NOS", ["双侧腭裂"]),
    ("破伤风，其他的", ["破伤风"]),
    ("霍乱，由于O1群霍乱弧菌，霍乱生物型所致", ["霍乱"]),
    ("脊柱骨折,水平未特指", ["脊柱骨折"]),
    ("应力骨折，不可归类在他处者", ["应力骨折"]),
    ("其他细菌性食物中毒,不可归类在他处者", ["其他细菌性食物中毒", "细菌性食物中毒"]),
    ("坏疽性阑尾炎，伴有穿孔", []),
    ("跌倒，在家", []),
    ("霍乱 A00.9", ["霍乱"]),
    ("B 族链球菌感染", ["B族链球菌感染"]),
    ("唇、口腔和咽恶性肿瘤", ["唇恶性肿瘤", "口腔恶性肿瘤", "咽恶性肿瘤", "唇癌", "口腔癌"]),
    ("肝和胆管疾病", ["肝疾病", "胆管疾病"]),
    ("肛门和肛管的恶性肿瘤", ["肛门恶性肿瘤", "肛管恶性肿瘤", "肛管癌"]),
    ("支气管和肺恶性肿瘤", ["支气管恶性肿瘤", "肺恶性肿瘤", "支气管癌", "肺癌"]),
    ("腕和手浅表损伤", ["腕浅表损伤", "手浅表损伤"]),
    ("恶心和呕吐", ["恶心", "呕吐"]),
    ("伤寒和副伤寒", ["伤寒", "副伤寒"]),
    ("嗜眠、木僵和昏迷", []),  # parts are not known terms here
    ("踝和足多处肌肉和肌腱损伤", []),
    ("浸润性导管和小叶原位癌", []),
    ("锅炉爆炸和破裂造成的损伤", []),
    ("累及身体多个部位的浅表损伤", []),
    ("伤寒并发脑膜炎", []),
    ("胃恶性肿瘤", ["胃癌"]),
    ("乳房恶性肿瘤", ["乳腺癌"]),
    ("胰恶性肿瘤", ["胰腺癌"]),
    ("骨恶性肿瘤", []),
    ("脑恶性肿瘤", []),
    ("肝继发恶性肿瘤", []),
    ("2型糖尿病", []),
    ("冠心病", []),
    ("糖尿病", []),
]


@pytest.mark.parametrize("name,expected", ALIASES)
def test_aliases(name: str, expected: list[str]) -> None:
    assert [a.term for a in aliases(name, known_terms=KNOWN)] == expected


@pytest.mark.parametrize("name", ["圆柱形支气管腺瘤[观察]", "主动脉夹层[任何部分]", "双小腿创伤性切断[任何水平]"])
def test_bracket_notes_are_not_synonyms(name: str) -> None:
    terms = [a.term for a in aliases(name)]
    assert terms and not any(t in BRACKET_NOTES for t in terms)


@pytest.mark.parametrize("name,term,rule", [
    ("肾(除外肾盂)恶性肿瘤", "肾癌", "brackets+cancer"),
    ("土拉菌病[兔热病]", "兔热病", "bracket_synonym"),
    ("未特指的霍乱", "霍乱", "qualifier"),
    ("破伤风，其他的", "破伤风", "tail"),
    ("霍乱 A00.9", "霍乱", "trailing_code"),
    ("B 族链球菌感染", "B族链球菌感染", "space"),
    ("支气管和肺恶性肿瘤", "肺癌", "coordination+cancer"),
    ("其他细菌性食物中毒,不可归类在他处者", "细菌性食物中毒", "qualifier+tail"),
])
def test_alias_rule_chain(name: str, term: str, rule: str) -> None:
    assert {a.term: a.rule for a in aliases(name, known_terms=KNOWN)}[term] == rule


def test_plain_coordination_needs_known_terms() -> None:
    assert aliases("恶心和呕吐") == []
    assert aliases("恶心和呕吐", known_terms={"恶心"}) == []


def test_rule_selection() -> None:
    assert [a.term for a in aliases("肾(除外肾盂)恶性肿瘤", rules=["brackets"])] == ["肾恶性肿瘤"]
    assert aliases("肾(除外肾盂)恶性肿瘤", rules=[]) == []
    with pytest.raises(ValueError, match="unknown alias rule"):
        aliases("x", rules=["nope"])
    assert "cancer" in RULE_NAMES


def test_fold_examples() -> None:
    assert fold("ＣＴ示右肺上叶结节") == "ct示右肺上叶结节"
    assert fold("体温38.5℃，Ⅱ型") == "体温38.5°c,ii型"
    assert fold("") == ""


def test_raw_span_through_expansions() -> None:
    text = "Ⅱ型呼吸衰竭，体温38℃，CT"
    ft = fold_with_offsets(text)
    assert ft.folded == "ii型呼吸衰竭,体温38°c,ct"
    start = ft.folded.index("ii型")
    assert ft.raw_span(start, start + 3) == (0, 2)  # "Ⅱ型"
    ct = ft.folded.index("ct")
    s, e = ft.raw_span(ct, ct + 2)
    assert text[s:e] == "CT"
    c = ft.folded.index("°c")
    assert ft.raw_span(c, c + 2) == (text.index("℃"), text.index("℃") + 1)
    assert ft.raw_span(c + 1, c + 2) is None  # only the "c" of "℃"
    assert ft.raw_span(0, 1) is None  # only the first "i" of "Ⅱ"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(list("ＡａＢb１2 　，,。℃㎝ⅡⅢ①﹙)型肺癌ΣİﬁＣＴ")), max_size=30))
def test_fold_agrees_with_medner_text(text: str) -> None:
    ft = fold_with_offsets(text)
    folded, index_map = normalize_with_map(text)
    assert ft.folded == folded
    for i in range(len(folded)):
        for j in range(i + 1, len(folded) + 1):
            span = ft.raw_span(i, j)
            aligned = (i == 0 or index_map[i - 1] != index_map[i]) and (
                j == len(folded) or index_map[j] != index_map[j - 1])
            if aligned:
                assert span == (index_map[i], index_map[j - 1] + 1)
            else:
                assert span is None
