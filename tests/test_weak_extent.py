"""ExtentLF: base spans widened to the extent CCKS annotates (site before, notes/stage/grade after, linked
diagnoses), only changed spans yielded, offsets exact on the raw text."""
from __future__ import annotations

import pytest

from medner.types import Record, Span
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
    ("入院诊断：\n直肠癌（中分化）IV期", ["直肠癌（中分化）IV期"]),   # a span that starts a line widens too
    ("\n胸椎骨质增生", ["胸椎骨质增生"]),
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


class Coded:
    """A base function whose spans carry a code (and the linker's fields), like an ICD lexicon function."""

    name, labels = "coded", ("疾病和诊断", "手术")

    def __init__(self, term: str, label: str, code: str) -> None:
        self.term, self.label, self.code = term, label, code

    def find_spans(self, record: Record) -> list[Span]:
        i = record.text.find(self.term)
        return [] if i < 0 else [Span(i, i + len(self.term), self.label, code=self.code, source=self.name,
                                      name=self.term, match="exact", link_score=1.0)]


@pytest.mark.parametrize("term,label,code,text,from_labels,right", [
    ("直肠癌", "疾病和诊断", "C20.x00", "诊断：直肠癌伴肝转移。", None, None),
    ("胆囊切除术", "手术", "51.2200", "胆囊切除术后恢复可。", ["手术"], "后"),   # an operation's code on a diagnosis
])
def test_widened_spans_carry_no_code_of_their_base(term, label, code, text, from_labels, right) -> None:
    sides = {} if right is None else {"right": right, "left": "", "joiners": []}
    base = [Coded(term, label, code), RegexLF("dx", "疾病和诊断", [r"肝转移"])]
    lf = ExtentLF("ext", "疾病和诊断", base, from_labels=from_labels, **sides)
    [span] = lf.find_spans(Record("t", text))
    assert span.end - span.start > len(term)
    assert (span.code, span.name, span.match, span.link_score) == (None, None, None, None)


def test_left_is_anchored_at_the_span_start_as_a_whole() -> None:
    compound = ExtentLF("compound", "解剖部位", [ANATOMY], joiners=[""], left="(?:中)?", right="(?:部)?")
    assert found(compound, "疼痛\n肩背部") == ["肩背部"]
    assert found(compound, "疼痛\n中腹") == ["中腹"] and found(compound, "疼痛\n腹部") == ["腹部"]
    salts = ExtentLF("salt", "疾病和诊断", [DISEASES], joiners=[], left="盐酸|醋酸", right="")
    assert found(salts, "盐酸，多发直肠癌") == []          # the alternation is anchored as a whole, not `醋酸$` alone
    assert found(salts, "\n醋酸直肠癌") == ["醋酸直肠癌"]
    flagged = ExtentLF("flagged", "疾病和诊断", [DISEASES], joiners=[], left="(?s)盐.酸", right="")
    assert found(flagged, "盐的酸直肠癌") == ["盐的酸直肠癌"]  # leading global flags stay at the start (re.error)
