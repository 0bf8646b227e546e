"""Pattern labelling functions: a table of texts and the mentions each rule must (and must not) find."""
from __future__ import annotations

import pytest

from medner.types import Record
from medner.weak import rules

REGIONS = ["胸", "腹", "上腹", "头颅", "心脏", "肝", "盆腔", "肺上叶", "结肠", "直肠", "乙状结肠", "胃", "幽门",
           "胆囊", "半结肠", "肠系膜"]


def found(lf, text: str) -> list[str]:
    spans = list(lf.find_spans(Record("t", text)))
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)
        assert s.source == lf.name
    return [text[s.start:s.end] for s in spans]


IMAGING = rules.imaging_lf("imaging", "影像检查", ["CT", "MRI", "彩超", "B超", "PET", "PET-CT", "CTA"], REGIONS,
                           exams=["胸片", "心电图", "冠脉造影"])


@pytest.mark.parametrize("text,expected", [
    ("上腹部CT示肝内占位", ["上腹部CT"]),
    ("胸腹部CT平扫+增强：未见异常", ["胸腹部CT平扫+增强"]),
    ("头颅MRI检查示腔隙灶", ["头颅MRI"]),
    ("心脏彩超：EF 60%", ["心脏彩超"]),
    ("复查PET-CT提示", ["PET-CT"]),
    ("行冠脉造影，胸片正常，心电图示窦律", ["冠脉造影", "胸片", "心电图"]),
    ("左侧胸部ＣＴ", ["左侧胸部ＣＴ"]),
    ("头颈部CTA示", ["CTA"]),                        # 头颈 is no region here: the modality alone
    ("复查PET/CT提示", ["PET/CT"]),                  # two modalities joined are one exam
    ("腹部，CT示：", ["腹部，CT"]),                   # a comma between region and modality (CCKS text)
    ("胸+上腹CT", ["胸+上腹CT"]),
    ("PCT 0.5ng/ml，CT值", ["CT"]),                 # CT inside PCT is not an exam
    ("患者一般情况可", []),
])
def test_imaging(text: str, expected: list[str]) -> None:
    assert found(IMAGING, text) == expected


LAB = rules.lab_value_lf("lab", "实验室检验", ["白细胞", "CEA", "CA199", "血红蛋白", "隐血试验", "HBsAg"])


@pytest.mark.parametrize("text,expected", [
    ("白细胞 12.3×10^9/L，血红蛋白 98g/L↓", ["白细胞", "血红蛋白"]),
    ("CEA 5.6ng/ml，CA199：37.2U/ml", ["CEA", "CA199"]),
    ("急诊查：谷草转氨酶 27.7 U/L、肌酸激酶 88U/L", ["谷草转氨酶", "肌酸激酶"]),   # unknown names, generic
    ("查血常规示中性粒细胞百分比 87.0%↑", ["中性粒细胞百分比"]),
    ("隐血试验阳性，HBsAg(+)", ["隐血试验", "HBsAg"]),
    ("体温 36.5℃，脉搏 80次/分，血压 120/80mmHg", []),                           # vital signs
    ("肿块大小约3.0cm×2.0cm", []),                                                # sizes are not lab values
    ("复查白细胞数 3.2×10^9/L，监测血红蛋白浓度 98g/L", []),  # a known test inside a longer name: not proposed
])
def test_lab_values(text: str, expected: list[str]) -> None:
    assert found(LAB, text) == expected


def test_lab_values_known_only() -> None:
    lf = rules.lab_value_lf("lab", "实验室检验", ["CEA"], generic=False)
    assert found(lf, "CEA 5ng/ml，肌酸激酶 88U/L") == ["CEA"]
    with pytest.raises(ValueError, match="nothing to match"):
        rules.lab_value_lf("lab", "实验室检验", [], generic=False)


LYMPH = rules.lymph_node_lf("lymph", "解剖部位", ["幽门", "肠系膜", "腹股沟", "锁骨上"])


@pytest.mark.parametrize("text,expected", [
    ("（第7组）淋巴结0/3个，(第12A组)淋巴结1/2", ["（第7组）淋巴结", "(第12A组)淋巴结"]),
    ("幽门上淋巴结1/8个，右侧腹股沟淋巴结肿大", ["幽门上淋巴结", "右侧腹股沟淋巴结"]),
    ("（隆突下）淋巴结", ["（隆突下）淋巴结"]),
    ("淋巴结41枚", []),
])
def test_lymph_nodes(text: str, expected: list[str]) -> None:
    assert found(LYMPH, text) == expected


PROC = rules.procedure_lf("proc", "手术")


@pytest.mark.parametrize("text,expected", [
    ("于2013-12-10在全麻下行根治性左半结肠切除术，术后", ["根治性左半结肠切除术"]),
    ("在全麻上行“腹腔镜上直肠癌根治术（DIXON）+末端回肠造口术”，手术顺利",
     ["腹腔镜上直肠癌根治术（DIXON）+末端回肠造口术"]),
    ("行手术治疗", []),
    ("行术前准备", []),
    ("行化疗2周期", []),
])
def test_procedure_trigger(text: str, expected: list[str]) -> None:
    assert found(PROC, text) == expected


OPER = rules.operation_lf("oper", "手术", REGIONS)


@pytest.mark.parametrize("text,expected", [
    ("既往胃癌根治术后", ["胃癌根治术"]),
    ("2015年腹腔镜下乙状结肠癌根治术（DIXON）", ["腹腔镜下乙状结肠癌根治术（DIXON）"]),
    ("姑息性右半结肠切除术", ["姑息性右半结肠切除术"]),
    ("胆囊结石", []),
])
def test_operation(text: str, expected: list[str]) -> None:
    assert found(OPER, text) == expected


TUMOUR = rules.tumour_site_lf("tumour", "疾病和诊断", REGIONS)


@pytest.mark.parametrize("text,expected", [
    ("诊断：右肺上叶腺癌", ["右肺上叶腺癌"]),
    ("直肠中分化腺癌，乙状结肠癌术后", ["直肠中分化腺癌", "乙状结肠癌术后"]),
    ("病理：低分化腺癌", ["低分化腺癌"]),
    ("（直肠）溃疡型中分化管状腺癌，浸润全层", ["（直肠）溃疡型中分化管状腺癌"]),
    ("溃疡型腺癌", ["溃疡型腺癌"]),
    ("活检：腺癌", []),                               # a bare histological type is no diagnosis of a site
    ("考虑肝转移", ["肝转移"]),
    ("胃镜检查", []),
    ("直肠溃疡型管状腺癌II级，浸润", ["直肠溃疡型管状腺癌II级"]),   # the histological grade belongs to it
    ("（直肠）管状腺癌，II-III级。", ["（直肠）管状腺癌，II-III级"]),
    ("中分化腺癌 3级", ["中分化腺癌 3级"]),
    ("直肠癌，级别不详", ["直肠癌"]),
])
def test_tumour_site(text: str, expected: list[str]) -> None:
    assert found(TUMOUR, text) == expected


LESION = rules.tumour_site_lf("lesion", "疾病和诊断", REGIONS, heads=["囊肿", "溃疡", "结石"])


@pytest.mark.parametrize("lf,text,expected", [
    (TUMOUR, "结肠多发息肉，直肠单发息肉", ["结肠多发息肉", "直肠单发息肉"]),   # multiplicity between site and head
    (TUMOUR, "胃CA侵出浆膜", ["胃CA"]),                                        # a Latin head
    (TUMOUR, "胃ca199升高", []),                                                # ... not inside a Latin word
    (TUMOUR, "结肠占位", []),                                                   # 占位 is a finding, not a tumour
    (LESION, "两侧肝多发囊肿，胃溃疡", ["两侧肝多发囊肿", "胃溃疡"]),           # other heads from the caller
    (LESION, "胃溃疡型腺癌", []),                                               # 溃疡型: a gross type, no lesion
    (LESION, "直肠中分化腺癌", []),                                             # no carcinoma head: no grade rule
])
def test_tumour_site_heads(lf, text: str, expected: list[str]) -> None:
    assert found(lf, text) == expected


def test_alternation_longest_first_and_escaped() -> None:
    pattern = rules.alternation(["CT", "PET-CT", "C+T", ""])
    assert pattern.index("pet\\-ct") < pattern.index("ct)")
    assert "c\\+t" in pattern
    with pytest.raises(ValueError):
        rules.alternation(["", " "])
