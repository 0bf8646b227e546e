"""Head-word and site agreement between a clinical mention and an ICD name, for ICD linking.

Chinese diagnosis and operation names are right-headed: the last word says *what* it is (the morphology:
``腺癌``, ``炎``, ``结石``; the operation: ``切除术``, ``吻合术``) and everything before it says *where* and
*which* (the site and qualifiers: ``十二指肠乳头``, ``慢性``, ``急性``). A code is right for a mention when
it names the same thing at the same place, or the same thing less specifically (a parent). So
:func:`disagreement` accepts an ICD term for a mention only when

1. **morphology**: both end in the same head of :data:`DISEASE_HEADS` (diseases) or :data:`PROCEDURE_HEADS`
   (procedures), or the term's head is a broader one (:data:`BROADER`: ``腺癌`` -> ``癌`` ->
   ``恶性肿瘤``). Without a listed head the last character is the head (``疏松``, ``突出``); a final
   ``病`` / ``症`` / ``病变`` is optional on either side (``高血压病`` = ``高血压``), and the character
   before it then decides (``糖尿病足病`` is not ``糖尿病``);
2. **site and qualifiers**: the term says nothing the mention does not: every character of the term's
   part before the head occurs in the mention's (``胆管扩张`` for ``肝门部胆管扩张``: a parent;
   not ``急性胆囊炎`` for ``慢性胆囊炎``, nor ``残胃切除术`` for ``胃切除术``). Filler characters
   (``性``, ``的``, ``部``) are ignored. The mention may say more (a sub-site, chronicity, severity: the
   term is then a parent), except a negation (``非``, ``无``, ``未``, ``不``: ``慢性非萎缩性胃炎`` is not
   ``慢性萎缩性胃炎``);
3. **coordination**: a mention that coordinates sites (``胸、腰椎骨质增生``) needs each conjunct in the
   term; one that coordinates diagnoses (``胃癌及胆囊结石``: a head before the coordinator; or a tumour
   before the head the term does not name) has no single code and is refused;
4. **one site for one site**: every organ the mention names (:data:`ORGANS`) is an organ of the term or a
   part of one (``升结肠`` for ``结肠``), and two positions written together (``肝内外``, ``中上段``) are
   both in the term: ``贲门恶性肿瘤`` codes one of ``食管贲门癌``'s two sites, ``肝内胆管积气`` one half of
   ``肝内外胆管积气``;
5. **site unspecified**: a term without a site (``恶性肿瘤`` C80, ``感染`` B99: "site unspecified" codes) is
   no parent of a mention that names one, unless its code is an ICD-O morphology code (``肉瘤``
   M8800/3 for ``子宫肉瘤``: the morphology is coded, the site is left to another code);
6. **procedures only**: the mention's site may add laterality (``左``, ``右``, ``双侧``) and the disease
   operated on (``癌``: ``直肠癌根治术`` = ``直肠根治术``) but nothing else: another organ or extent is
   another operation (``胰十二指肠切除术`` is not ``十二指肠切除术``, ``全胃切除术`` not ``胃切除术``).

Whether a term is a disease or a procedure comes from its code: ICD-9-CM-3 codes start with a digit,
ICD-10 (and ICD-O morphology ``M…``) codes with a letter. Inputs are normalised keys
(:func:`medner.lexicon.link.normalise_mention`). Pure string functions; never imports torch.
"""
from __future__ import annotations

import re
from collections import Counter

__all__ = ["DISEASE_HEADS", "PROCEDURE_HEADS", "BROADER", "SAME_HEAD", "head_split", "disagreement",
           "is_procedure_code", "is_morphology_code", "ORGANS"]

#: morphology / condition heads of diagnoses (longest match at the end of the name wins)
DISEASE_HEADS: tuple[str, ...] = (
    # neoplasms
    "恶性肿瘤", "良性肿瘤", "交界性肿瘤", "原位癌", "腺鳞癌", "鳞状细胞癌", "鳞癌", "腺癌", "囊腺癌", "印戒细胞癌",
    "小细胞癌", "细胞癌", "神经内分泌癌", "类癌", "癌肉瘤", "癌", "肉瘤", "淋巴瘤", "白血病", "骨髓瘤",
    "黑色素瘤", "间质瘤", "胶质瘤", "母细胞瘤", "腺瘤", "肌瘤", "血管瘤", "脂肪瘤", "错构瘤", "转移瘤", "动脉瘤",
    "肿瘤", "肿物", "瘤", "转移", "占位", "结节",
    # other morphology and conditions
    "炎", "结核", "感染", "脓肿", "结石", "囊肿", "息肉", "增生", "肥大", "肿大", "扩大", "梗阻", "狭窄", "闭塞",
    "出血", "穿孔", "溃疡", "糜烂", "扩张", "积液", "积气", "积水", "水肿", "梗死", "梗塞", "栓塞", "血栓形成",
    "血栓", "硬化", "钙化", "萎缩", "衰竭", "功能不全", "功能减退", "减退", "不全", "破裂", "疝", "骨折", "脱位",
    "损伤", "畸形", "静脉曲张", "曲张", "瘘", "贫血", "血症", "中毒", "综合征", "休克", "心动过速", "心动过缓",
    "传导阻滞", "阻滞", "颤动", "扑动", "早搏", "缺损", "缺乏", "减少", "增多", "升高", "降低", "不良", "心肌病",
    "坏死", "粘连", "突出", "疏松", "痴呆", "哮喘", "气肿", "不张", "纤维化", "脱垂", "反流",
)

#: operation heads of procedures
PROCEDURE_HEADS: tuple[str, ...] = (
    "根治术", "切除术", "部分切除术", "次全切除术", "全切除术", "切开术", "造口术", "造瘘术", "吻合术", "活检",
    "活组织检查", "置换术", "修补术", "成形术", "引流术", "探查术", "移植术", "置入术", "植入术", "取出术",
    "结扎术", "固定术", "重建术", "清扫术", "摘除术", "消融术", "栓塞术", "穿刺术", "缝合术", "松解术", "还纳术",
    "旁路术", "搭桥术", "分流术", "开窗术", "减压术", "扩张术", "灌注术", "封闭术", "离断术", "复位术", "关闭术",
    "剥除术", "刮除术", "切断术", "粘连松解术", "内镜下治疗", "置管术", "插管术", "支架置入术", "支架植入术",
)

#: a head and the broader heads a correct (parent) code may carry instead
BROADER: dict[str, tuple[str, ...]] = {
    **{h: ("癌", "恶性肿瘤") for h in ("腺癌", "鳞状细胞癌", "鳞癌", "腺鳞癌", "囊腺癌", "印戒细胞癌", "小细胞癌",
                                  "细胞癌", "神经内分泌癌")},
    "癌": ("恶性肿瘤",),
    **{h: ("恶性肿瘤",) for h in ("肉瘤", "癌肉瘤", "淋巴瘤", "黑色素瘤", "骨髓瘤", "转移瘤")},
    **{h: ("良性肿瘤",) for h in ("腺瘤", "肌瘤", "血管瘤", "脂肪瘤", "错构瘤")},
    "功能不全": ("不全",),
    "功能减退": ("减退",),
    "静脉曲张": ("曲张",),
    "根治术": ("切除术",),
    "部分切除术": ("切除术",),
    "次全切除术": ("切除术",),
    "全切除术": ("切除术",),
}

#: heads that name the same thing (mapped to one spelling before comparing)
SAME_HEAD: dict[str, str] = {
    "梗塞": "梗死", "血栓": "血栓形成", "造瘘术": "造口术", "植入术": "置入术", "支架植入术": "支架置入术",
    "活组织检查": "活检", "瘤": "肿瘤", "肿物": "肿瘤",
}

#: organs (and organ parts) whose naming in a mention must be matched by the term (longest first when found)
ORGANS: tuple[str, ...] = (
    "食管", "胃", "贲门", "胃底", "胃窦", "胃体", "十二指肠", "空肠", "回肠", "回盲部", "盲肠", "阑尾", "结肠",
    "升结肠", "横结肠", "降结肠", "乙状结肠", "直肠", "肛管", "肛门", "肝", "胆囊", "胆管", "胆总管", "胰", "胰腺",
    "脾", "肺", "支气管", "气管", "喉", "鼻咽", "口腔", "舌", "甲状腺", "乳腺", "肾", "肾盂", "输尿管", "膀胱",
    "尿道", "前列腺", "子宫", "宫颈", "子宫颈", "子宫内膜", "卵巢", "输卵管", "阴道", "外阴", "心", "心包", "脑",
    "淋巴结", "腹膜", "网膜", "胸膜",
)
_ORGAN = re.compile("|".join(sorted(ORGANS, key=len, reverse=True)))
#: two positions on one axis written together (``肝内外``, ``中上段``): both are named
_POSITIONS = re.compile(r"内外|外内|上下|下上|中上|上中|中下|下中|前后|后前|左右|右左")
_DISEASE = tuple(sorted(set(DISEASE_HEADS), key=len, reverse=True))
_PROCEDURE = tuple(sorted(set(PROCEDURE_HEADS), key=len, reverse=True))
_OPTIONAL = re.compile(r"(?:病变|病|症)$")
_FILLER = set("性的部")
_NEGATION = set("非无未不")
_COORDINATOR = re.compile(r"及|和|与|、|/|\+|并|合并|伴")
_LATERAL = set("左右双两侧")
_NEOPLASM = set("癌瘤")
_PROCEDURE_EXTRA = _LATERAL | {"癌"}


def is_procedure_code(code: str | None) -> bool:
    """True for an ICD-9-CM-3 procedure code (starts with a digit)."""
    return bool(code) and code[0].isdigit()


def head_split(key: str, procedure: bool = False) -> tuple[str, str]:
    """``(site, head)`` of a normalised key: the longest listed head at its end, else its last character
    (after an optional final ``病`` / ``症`` / ``病变``); the head is mapped through :data:`SAME_HEAD`."""
    for head in _PROCEDURE if procedure else _DISEASE:
        if key.endswith(head) and len(key) >= len(head):
            return key[: -len(head)], SAME_HEAD.get(head, head)
    if not procedure:
        bare = _OPTIONAL.sub("", key)
        if bare != key and bare:
            return head_split(bare, procedure)
    return key[:-1], key[-1:]


def _heads_agree(mention_head: str, term_head: str) -> bool:
    return mention_head == term_head or term_head in BROADER.get(mention_head, ())


def _chars(site: str) -> Counter:
    return Counter(ch for ch in site if ch not in _FILLER)


def is_morphology_code(code: str | None) -> bool:
    """True for an ICD-O morphology code (``M81400/3``): it names a morphology at no particular site."""
    return bool(code) and code[0] == "M" and "/" in code


def disagreement(mention: str, term: str, code: str | None = None) -> str | None:
    """None when ``term`` (with ``code``) is a right code name for ``mention`` by the rules of the module
    docstring, else the rule that fails (``"morphology"``, ``"site"``, ``"negation"``, ``"coordination"``,
    ``"extent"``)."""
    if mention == term:
        return None
    procedure = is_procedure_code(code)
    heads = _PROCEDURE if procedure else _DISEASE
    m_site, m_head = head_split(mention, procedure)
    t_site, t_head = head_split(term, procedure)
    if not _heads_agree(m_head, t_head):
        return "morphology"
    if _COORDINATOR.search(m_site) and not _COORDINATOR.search(t_site):
        conjuncts = _COORDINATOR.split(m_site)
        if any(c.endswith(heads) for c in conjuncts[:-1] if c):
            return "coordination"  # two diagnoses (or operations), one code
        for conjunct in conjuncts:
            bare = "".join(ch for ch in conjunct if ch not in _LATERAL)
            if bare and bare[:2] not in t_site:
                return "coordination"  # a coordinated site the term does not name
        m_site = _COORDINATOR.sub("", m_site)
    for pair in _POSITIONS.findall(m_site):
        if pair not in t_site and pair[::-1] not in t_site:
            return "coordination"  # "肝内外胆管": the term names one of the two positions
    m_chars, t_chars = _chars(m_site), _chars(t_site)
    if t_chars - m_chars:
        return "site"
    if not is_morphology_code(code):
        t_organs = _ORGAN.findall(t_site)
        for organ in _ORGAN.findall(m_site):
            if not any(t in organ for t in t_organs):
                return "site"  # "食管贲门癌" is not "贲门癌"; "升结肠" may be "结肠" (a part of it)
    extra = m_chars - t_chars
    if any(ch in _NEGATION for ch in extra):
        return "negation"
    if procedure and any(ch not in _PROCEDURE_EXTRA for ch in extra):
        return "extent"
    if not procedure and any(ch in _NEOPLASM for ch in extra):
        return "coordination"  # "腺癌淋巴结转移癌": a second tumour before the head
    if not t_chars and any(ch not in _LATERAL for ch in extra) and not is_morphology_code(code):
        return "site"  # "site unspecified" codes (C80 恶性肿瘤, B99 感染) are no parent of a sited mention
    return None
