"""Pattern labelling functions for what a word list alone cannot find: exam names built from a region and
a modality, lab tests recognised by the value that follows them, lymph-node stations, procedures named after
``行``, tumours named by their site. Each factory returns a :class:`~medner.weak.base.RegexLF`.

Patterns run on the folded text (lower case, half width), so the term lists are folded and escaped here;
alternations are sorted longest first so the regex engine prefers the longest term. The span conventions
follow the CCKS 2019 task description (``task1_description_v2.docx``): an imaging exam is the modality with
its body region (``上腹部CT``; ``心电图`` and ``造影`` count as imaging), a lab test is the test name
without its value (``白细胞`` in ``白细胞 12.3×10^9/L``), a procedure is the operation name.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from medner.lexicon.normalize import fold
from medner.weak.base import RegexLF

__all__ = [
    "GROSS_TYPES", "HISTOLOGICAL_GRADE", "LATERALITY", "LAB_UNITS", "MULTIPLICITY", "OPERATION_HEADS", "TUMOUR_HEADS",
    "VITALS", "alternation",
    "imaging_lf", "lab_value_lf", "lymph_node_lf", "operation_lf", "procedure_lf", "tumour_site_lf",
]

#: laterality and side prefixes, longest first
LATERALITY: tuple[str, ...] = ("左右两侧", "双侧", "两侧", "左侧", "右侧", "双", "两", "左", "右")

#: units (folded) that mark a laboratory value; ``cm``/``mm``/``kg``/``℃`` are absent on purpose (sizes,
#: weights and temperatures are not lab tests)
LAB_UNITS: tuple[str, ...] = (
    r"[×x*]\s*10\^?\s*\d+\s*/\s*l", r"10\^?\d+/l", r"mmol/l", r"μmol/l", r"umol/l", r"nmol/l", r"pmol/l",
    r"mg/dl", r"mg/l", r"g/l", r"g/dl", r"ng/ml", r"ng/l", r"pg/ml", r"μg/ml", r"ug/ml", r"μg/l", r"ug/l",
    r"u/l", r"iu/l", r"u/ml", r"ku/l", r"kiu/l", r"miu/ml", r"μiu/ml", r"uiu/ml", r"iu/ml", r"copies/ml",
    r"mmhg", r"kpa", r"fl", r"pg", r"sec", r"s(?![a-z])", r"秒", r"%", r"mm/h", r"mm/1h", r"/hp", r"/ul", r"/μl",
    r"/l",
)

#: vital signs and measurements that are followed by numbers but are not lab tests (folded)
VITALS: frozenset[str] = frozenset(fold(v) for v in (
    "体温", "脉搏", "呼吸", "血压", "心率", "心律", "体重", "身高", "BMI", "T", "P", "R", "BP", "HR", "SPO2",
    "大小", "直径", "长径", "短径", "范围", "面积", "体积", "厚度", "深度", "距离", "剂量", "总量", "疗程",
    "每日", "每次", "约", "共", "术后", "术中", "出血", "出血量", "尿量", "引流量", "入量", "出量", "评分",
    "KPS", "ECOG", "NRS", "VAS", "门齿", "距门齿", "距肛缘", "肛缘", "EF", "LVEF", "射血分数",
))


def alternation(terms: Iterable[str]) -> str:
    """A regex alternation of the folded, escaped ``terms``, longest first (empty terms dropped)."""
    folded = sorted({fold(t).strip() for t in terms if t and t.strip()}, key=lambda t: (-len(t), t))
    if not folded:
        raise ValueError("expected at least one term")
    return "(?:" + "|".join(re.escape(t) for t in folded) + ")"


#: look-arounds that stop a Latin term matching inside a longer Latin word (``ct`` in ``cta``)
_BEFORE, _AFTER = r"(?<![a-z0-9])", r"(?![a-z0-9])"


def imaging_lf(name: str, label: str, modalities: Iterable[str], regions: Iterable[str] = (), *,
               exams: Iterable[str] = (), laterality: Sequence[str] = LATERALITY,
               suffixes: Sequence[str] = ("平扫+增强", "平扫加增强", "平扫及增强", "增强扫描", "平扫", "增强")) -> RegexLF:
    """Imaging exams: ``[laterality][region{1,3}[部]]modality[suffix]`` and complete ``exams``.

    ``regions`` are body regions (``胸``, ``上腹``, ``头颅``, ``肝脏``); up to three may be chained (``胸腹部``,
    ``胸腹盆``, ``胸+上腹``), optionally with ``部``; a space or comma may come before the modality (``腹部，CT``,
    as CCKS 2019 texts have it). Two modalities joined by ``-`` or ``/`` are one exam (``PET/CT``). A Latin
    modality does not match inside a longer Latin word.
    ``suffixes`` (``平扫``, ``增强``) are taken into the span; a following ``检查`` / ``示`` is not.
    """
    mods = list(modalities) + list(exams)
    before, after = _BEFORE, _AFTER
    mod = alternation(mods)
    mod = rf"{mod}(?:{after}\s?[-/]\s?[，,]?{mod})?"   # two joined: PET-CT, PET/CT
    gap = r"[\s，,]?"                               # region and modality: 腹部 CT, 腹部，CT
    suffix = "(?:" + alternation(suffixes) + ")?" if suffixes else ""
    side = "(?:" + alternation(laterality) + ")?" if laterality else ""
    region_list = [r for r in regions if r]
    if region_list:
        region = alternation(region_list)
        with_region = rf"{side}(?:{region}[、及和+]?){{1,3}}部?{gap}{mod}{after}{suffix}"
        pattern = rf"(?P<span>{with_region}|{before}{mod}{after}{suffix})"
    else:
        pattern = rf"(?P<span>{before}{mod}{after}{suffix})"
    return RegexLF(name, label, [pattern])


def lab_value_lf(name: str, label: str, tests: Iterable[str] = (), *, units: Sequence[str] = LAB_UNITS,
                 exclude: Iterable[str] = VITALS, generic: bool = True) -> RegexLF:
    """Lab tests followed by a value: ``NAME[:：为] [<>≤≥]NUMBER UNIT`` or ``NAME NUMBER ↑/↓``; the span is NAME.

    NAME is one of ``tests`` (any context), or, when ``generic``, an unknown name: a Latin abbreviation
    (``ca-125``, ``neut%``) or 2-10 Chinese characters starting after punctuation, a space or a trigger word
    (``查``, ``示``, ``复查``), not in ``exclude`` (vital signs and measurements, :data:`VITALS`) and not
    holding a known test with more around it (``白细胞数``, ``监测空腹血糖``: the span would be the wrong extent).
    Qualitative results (``隐血试验阳性``, ``HBsAg(+)``) count for known ``tests`` only.
    """
    unit = "(?:" + "|".join(units) + ")"
    value = r"\s*(?:[:：=]|为|示)?\s*(?:[<>≤≥]\s*)?\d+(?:\.\d+)?\s*"
    arrow = r"(?:\s*[↑↓])"
    tail = rf"(?={value}(?:{unit}|{arrow}))"
    qualitative = r"(?=\s*(?:[:：])?\s*(?:阳性|阴性|弱阳性|强阳性|\(\s*[+-]+\s*\)|[+-]{1,3}(?![\d])|\d\+))"
    patterns: list[str] = []
    known = [t for t in tests if t]
    alt = alternation(known) if known else None
    if alt:
        patterns.append(rf"(?<![a-z0-9])(?P<span>{alt}){tail}")
        patterns.append(rf"(?<![a-z0-9])(?P<span>{alt}){qualitative}")
    if generic:
        skip = {fold(e) for e in exclude}
        stop = "查示为是的有行予及和或与在于至后前见约共"
        boundary = rf"(?:^|(?<=[\s,，。;；、:：()（）\[\]【】{stop}]))"
        latin = r"(?<![a-z0-9])[a-z][a-z0-9]{0,6}(?:[-_][a-z0-9]{1,4})?%?(?![a-z0-9])"
        chinese = rf"[\u4e00-\u9fff][^\s\d,，。;；、:：()（）\[\]【】{stop}a-z]{{1,9}}"
        generic_re = re.compile(rf"{boundary}(?P<span>{latin}|{chinese}){tail}")
        inner = re.compile(alt) if alt else None  # 白细胞数 holds 白细胞: the known test is the span, not this

        def keep(span: str) -> bool:
            if span in skip or span.isdigit():
                return False
            return inner is None or not inner.search(span) or inner.fullmatch(span) is not None

        patterns.append(_Filtered(generic_re, keep))
    if not patterns:
        raise ValueError(f"{name}: no tests given and generic=False: nothing to match")
    return RegexLF(name, label, patterns)


class _Filtered:
    """A compiled pattern whose matches are kept only when ``keep(span text)`` is true (quacks like
    ``re.Pattern`` for :class:`~medner.weak.base.RegexLF`: ``finditer`` and ``groupindex``)."""

    def __init__(self, pattern: re.Pattern[str], keep: Callable[[str], bool]) -> None:
        self.pattern = pattern
        self.keep = keep
        self.groupindex = pattern.groupindex

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        for m in self.pattern.finditer(text):
            if self.keep(m.group("span")):
                yield m


def lymph_node_lf(name: str, label: str, sites: Iterable[str] = (), *,
                  laterality: Sequence[str] = LATERALITY) -> RegexLF:
    """Lymph-node stations: ``(第7组)淋巴结``, ``（隆突上）淋巴结``, ``[laterality]SITE[旁周]淋巴结``,
    ``第8a组淋巴结``, ``II区淋巴结``; SITE is one of ``sites`` (anatomy words)."""
    station = r"第?[0-9一二三四五六七八九十]+[a-z]?[组站区]"
    bracket = rf"[(（](?:{station}|[\u4e00-\u9fff]{{1,8}}(?:[0-9]+[a-z]?[组站区])?)[)）]"
    patterns = [rf"(?P<span>{bracket}淋巴结)", rf"(?P<span>{station}淋巴结)",
                r"(?P<span>[ivx]+[ab]?区淋巴结)"]
    site_list = [s for s in sites if s]
    if site_list:
        side = "(?:" + alternation(laterality) + ")?" if laterality else ""
        patterns.append(rf"(?P<span>{side}{alternation(site_list)}(?:旁|周围|周|下|上|侧)?(?:[、及和]?){{0,1}}淋巴结)")
    return RegexLF(name, label, patterns)


def procedure_lf(name: str, label: str, *, triggers: Sequence[str] = ("施行", "行", "予以", "接受", "做"),
                 max_chars: int = 40) -> RegexLF:
    """Operations named after a trigger (``在全麻下行…术``): from after the trigger and an optional opening
    quote to a name ending in ``术`` (optionally followed by a bracketed note such as ``（DIXON）``), with
    ``+``-chained further operations. Names that start with ``术`` or ``手术``, or that hold a chemotherapy
    word (``方案``, ``周期``, ``化疗``: ``行XELOX方案术前化疗``), are not taken."""
    trig = alternation(triggers)
    body = rf"[^，,。;；:：“”\"'‘’\s]{{1,{max_chars}}}?术(?:[(（][^()（）]{{1,20}}[)）])?"
    pattern = re.compile(rf"{trig}[“\"‘]?(?P<span>(?!术|手术)(?:{body})(?:[+＋]{body})*)")
    return RegexLF(name, label, [_Filtered(pattern, lambda span: not _NOT_OPERATION.search(span))])


_NOT_OPERATION = re.compile(r"方案|周期|化疗|疗程|[一二三四五六七八九十\d]+[程次]")


#: gross (macroscopic) types of a tumour, as pathology reports write them
GROSS_TYPES: tuple[str, ...] = ("溃疡型", "隆起型", "浸润型", "溃疡浸润型", "浸润溃疡型", "弥漫浸润型", "蕈伞型", "髓质型",
                                "缩窄型", "息肉型", "隆起溃疡型", "局限溃疡型", "腔内型", "腔外型")
#: histological types of carcinoma and other tumour heads
TUMOUR_HEADS: tuple[str, ...] = (
    "腺癌", "管状腺癌", "乳头状腺癌", "乳头状癌", "绒毛状腺癌", "黏液腺癌", "粘液腺癌", "印戒细胞癌", "鳞癌",
    "鳞状细胞癌", "腺鳞癌", "小细胞癌", "大细胞癌", "未分化癌", "神经内分泌癌", "神经内分泌肿瘤", "浆液性癌",
    "浆液性腺癌", "子宫内膜样腺癌", "透明细胞癌", "肝细胞癌", "胆管细胞癌", "导管癌", "浸润性导管癌", "小叶癌",
    "癌", "恶性肿瘤", "肿瘤", "间质瘤", "转移瘤", "癌肉瘤", "肉瘤", "淋巴瘤", "腺瘤", "管状腺瘤", "绒毛状腺瘤",
    "息肉", "癌变", "转移", "ca",
)


#: how many lesions, between a site and its lesion (``结肠多发息肉``, ``两肾多发囊肿``)
MULTIPLICITY: tuple[str, ...] = ("多发性", "多发", "单发")

#: a histological grade after a tumour name (folded text): ``ii级``, ``ii-iii级``, ``，iii级``, ``1级``
HISTOLOGICAL_GRADE = r"[，,]?\s*(?:iv|i{1,3}|[1-4])(?:\s*[-~至]\s*(?:iv|i{1,3}|[1-4]))?\s*级"


def tumour_site_lf(name: str, label: str, sites: Iterable[str], *, heads: Sequence[str] = TUMOUR_HEADS,
                   gross: Sequence[str] = GROSS_TYPES,
                   grades: Sequence[str] = ("高分化", "中分化", "低分化", "中-低分化", "中低分化", "高-中分化",
                                            "中高分化", "未分化", "中至低分化", "高至中分化"),
                   suffixes: Sequence[str] = ("综合治疗后", "放化疗后", "化疗后", "放疗后", "术后复发", "术后",
                                              "根治术后", "姑息术后", "复发", "多发转移", "伴转移"),
                   laterality: Sequence[str] = LATERALITY, histological_grade: str = HISTOLOGICAL_GRADE,
                   multiplicity: Sequence[str] = MULTIPLICITY) -> RegexLF:
    """Tumours named by site, with the gross type and differentiation grade pathology reports add:
    ``[laterality]SITE{1,3}[gross][grade]HEAD[suffix]`` (``右肺上叶腺癌``, ``直肠中分化腺癌``,
    ``乙状结肠癌术后``, ``肝转移``); the site in brackets, as pathology reports write it:
    ``（SITE）[gross][grade]HEAD`` (``（直肠）溃疡型中分化管状腺癌``); and without a site, when a gross type or a
    grade says it is a diagnosis rather than a word: ``[gross][grade]carcinoma`` (``中分化腺癌``,
    ``溃疡型腺癌``; a bare ``腺癌`` is not taken). A histological grade right after the head belongs to the
    span (``管状腺癌II级``, ``腺癌，II-III级``; ``histological_grade``, a folded regex, "" for none).
    A ``multiplicity`` word may stand between site and head (``结肠多发息肉``). A head never ends where ``型``
    follows (``胃角溃疡型腺癌``: 溃疡型 is a gross type, not the lesion), and a Latin head (``ca``) never
    runs into letters or digits (``ca125`` is a lab test)."""
    side = "(?:" + alternation(laterality) + ")?" if laterality else ""
    site = alternation(sites)
    opt = lambda items: "(?:" + alternation(items) + ")?" if items else ""  # noqa: E731
    gross_, grade_, suffix_ = opt(gross), opt(grades), opt(suffixes)
    latin, chinese = [h for h in heads if h.isascii()], [h for h in heads if not h.isascii()]
    head_alternatives = ([alternation(chinese)] if chinese else []) + ([alternation(latin) + _AFTER] if latin else [])
    head = "(?:" + "|".join(head_alternatives) + ")(?!型)"
    many = opt(multiplicity)
    after = f"(?:{histological_grade})?" if histological_grade else ""
    patterns = [rf"(?P<span>{side}(?:{site}){{1,3}}{many}{gross_}{grade_}{head}(?:{after}{suffix_}))",
                rf"(?P<span>[(（]{side}(?:{site}){{1,3}}[)）]{gross_}{grade_}{head}{after})"]
    carcinomas = [h for h in heads if h.endswith("癌")]
    if carcinomas and grades:
        patterns.append(rf"(?P<span>{gross_}{alternation(grades)}{alternation(carcinomas)}{after})")
    if carcinomas and gross:
        patterns.append(rf"(?P<span>{alternation(gross)}{grade_}{alternation(carcinomas)}{after})")
    return RegexLF(name, label, patterns)


#: operation heads (what is done), longest first in the pattern
OPERATION_HEADS: tuple[str, ...] = (
    "根治术", "扩大根治术", "改良根治术", "切除术", "部分切除术", "全切术", "全切除术", "次全切除术", "大部切除术",
    "姑息切除术", "姑息性切除术", "根治性切除术", "楔形切除术", "切除", "造口术", "造瘘术", "吻合术", "修补术",
    "成形术", "置换术", "固定术", "重建术", "移植术", "摘除术", "清扫术", "探查术", "切开术", "引流术",
    "松解术", "穿刺术", "活检术", "置管术", "支架置入术", "栓塞术", "消融术", "结扎术", "减压术", "手术",
)


def operation_lf(name: str, label: str, sites: Iterable[str], *, heads: Sequence[str] = OPERATION_HEADS,
                 laterality: Sequence[str] = LATERALITY) -> RegexLF:
    """Operations named by what and where: ``[腹腔镜[辅助][下]][根治性|姑息性][laterality]SITE{1,3}[癌|肿瘤|息肉]HEAD
    [（note）]`` (``胃癌根治术``, ``腹腔镜下乙状结肠癌根治术``, ``右半结肠切除术``, ``胆囊切除术``).
    ``上`` is accepted for ``下`` after 腹腔镜 (de-identified records replace one with the other)."""
    side = "(?:" + alternation(laterality) + ")?" if laterality else ""
    approach = r"(?:(?:全|3d)?(?:腹腔镜|胸腔镜|胸腹腔镜|内镜|宫腔镜|膀胱镜|经皮|经尿道|经肛门?)(?:辅助)?[上下]?)?"
    manner = r"(?:根治性|姑息性|扩大|改良|开腹|急诊)?"
    lesion = r"(?:癌|恶性肿瘤|肿瘤|肿物|息肉|囊肿|结石|病损|病灶)?"
    note = r"(?:[(（][^()（）]{1,20}[)）])?"
    pattern = rf"(?P<span>{approach}{manner}{side}(?:{alternation(sites)}){{1,3}}{lesion}{alternation(heads)}{note})"
    return RegexLF(name, label, [pattern])
