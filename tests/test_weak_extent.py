"""ExtentLF: base spans widened to the extent CCKS annotates (site before, notes/stage/grade after, linked
diagnoses), only changed spans yielded, offsets exact on the raw text."""
from __future__ import annotations

import pytest

from medner.types import Record
from medner.weak.base import RegexLF
from medner.weak.extent import ExtentLF

DISEASES = RegexLF("dx", "疾病和诊断", [r"直肠癌|腺癌|肝转移|骨质增生|高血压|糖尿病|周围神经病变|胃窦炎|肠梗阻"])
ANATOMY = RegexLF("site", "解剖部位", [r"胸椎|升结肠|直肠|胃|肠|腹|盆腔|肩|背部"])
EXTENT = ExtentLF("extent", "疾病和诊断", [DISEASES], sites=[ANATOMY])


def found(lf, text: str) -> list[str]:
    spans = list(lf.find_spans(Record("t", text)))
    for s in spans:
        assert 0 <= s.start < s.end <= len(text) and s.source == lf.name and s.label == lf.label
    return [text[s.start:s.end] for s in spans]


@pytest.mark.parametrize("text,expected", [
    ("诊为“直肠癌伴肝转移”，于", ["直肠癌伴肝转移"]),            # linked by 伴
    ("术后病理：胸椎骨质增生。", ["胸椎骨质增生"]),                # site before
    ("病理：（升结肠）腺癌（中分化），侵及全层", ["（升结肠）腺癌（中分化）"]),   # bracketed site, note
    ("术后诊断为腺癌PT1N0M0。", ["腺癌PT1N0M0"]),                  # TNM
    ("既往原发性高血压3级极高危，", ["原发性高血压3级极高危"]),    # course, grade and risk
    ("慢性浅表性胃窦炎伴糜烂", ["慢性浅表性胃窦炎伴糜烂"]),       # two modifiers, then a finding
    ("糖尿病周围神经病变", ["糖尿病周围神经病变"]),                 # touching diagnoses merge
    ("不全性肠梗阻", ["不全性肠梗阻"]),
    ("诊为直肠癌，予化疗", []),                                     # nothing to widen: the base votes alone
    ("直肠癌。伴肝转移", []),                                       # never across a sentence end
    ("腹痛伴恶心", []),                                             # no base span, nothing
])
def test_extent(text: str, expected: list[str]) -> None:
    assert found(EXTENT, text) == expected


def test_sides_can_be_turned_off_and_adjacent_sites_merge() -> None:
    compound = ExtentLF("compound", "解剖部位", [ANATOMY], joiners=[""], left="", right="")
    assert found(compound, "肩背部疼痛，腹盆腔积液，胃肠道") == ["肩背部", "腹盆腔", "胃肠"]
    assert found(compound, "胃窦小弯侧") == []      # 胃 alone: no neighbour span


def test_needs_a_base() -> None:
    with pytest.raises(ValueError, match="at least one base"):
        ExtentLF("x", "疾病和诊断", [])


def test_widening_spans_of_other_labels_relabels_them() -> None:
    operations = RegexLF("op", "手术", [r"胆囊切除术"])
    status = ExtentLF("status_post", "疾病和诊断", [operations, ANATOMY], from_labels=["手术", "解剖部位"],
                      joiners=[], left="", right=r"(?<=术)后(?!改变)|(?<!术)术后")
    assert found(status, "胆囊切除术后，直肠术后，胆囊切除术后改变，行胆囊切除术") == ["胆囊切除术后", "直肠术后"]
    own_label_only = ExtentLF("x", "疾病和诊断", [operations, ANATOMY], joiners=[], left="", right="术?后")
    assert found(own_label_only, "胆囊切除术后，直肠术后") == []
