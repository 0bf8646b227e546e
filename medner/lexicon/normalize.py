"""Term normalisation: aliases for official ICD names, and offset-safe folding for matching.

Aliases
=======
:func:`aliases` derives surface forms that clinical text actually uses from an official name. Rules are
applied to the name and again to each derived form (at most :data:`MAX_DEPTH` rounds); every form keeps
the original name as ``canonical`` and its code. A form shorter than 2 characters, equal to its input or
made only of qualifiers is dropped; a form still holding a comma or bracket is only an intermediate
step (rules go on from it) and is not returned. The rules, each with examples (input -> alias):

(first, always)
    ``\\[`` ``\\]`` ``\\(`` ``\\)`` (escaped brackets in 国家临床版 names such as
    ``光接触性皮炎\\[香料皮炎\\]``) become plain brackets before the rules run.
``brackets``
    Remove bracketed notes ``(…)`` ``（…）`` ``[…]`` ``【…】`` ``［…］`` ``〔…〕`` (innermost first, so nested
    ones go too):
    ``肾(除外肾盂)恶性肿瘤`` -> ``肾恶性肿瘤``; ``土拉菌病[兔热病]`` -> ``土拉菌病``;
    ``肿瘤引起的贫血(C00-D48+)`` -> ``肿瘤引起的贫血``; ``多指[趾]畸形`` -> ``多指畸形``.
``bracket_synonym``
    A trailing *square*-bracketed note is the ICD convention for a synonym; it becomes an alias itself
    when it is at least 2 characters, not a code and holds a Chinese character: ``土拉菌病[兔热病]`` ->
    ``兔热病``; ``冠脉微循环阻力指数检查[IMR检查]`` -> ``IMR检查``. Notes that are not names
    (:data:`BRACKET_NOTES`: ICD-O's ``[观察]``, ``[任何水平]``, ``[任何部分]``) are not. Bare Latin abbreviations are not
    taken (``激光小梁成形术[ALP]``: ``ALP`` is alkaline phosphatase in lab text; ``[ALL]``, ``[BCG]``).
    Round brackets are not used this way (``颈动脉血管内超声(IVUS)``), nor are mid-name notes
    (``多指[趾]畸形``).
``qualifier``
    Strip a leading ``其他和未特指的 / 其他特指的 / 其他的 / 其他 / 未特指部位的 / 未特指的 / 未特指``
    and a trailing ``NOS`` / ``NEC``: ``未特指的霍乱`` -> ``霍乱``; ``其他沙门菌感染`` -> ``沙门菌感染``;
    ``筋膜炎 NEC`` -> ``筋膜炎``. Not when the rest starts with a word that needs the qualifier
    (和 或 及 与 的 部位 原因 类型 形式 方式 特指 病因 部分 情况 水平 疾病 疾患): ``其他部位的原位黑色素瘤``
    is left alone (``部位的原位黑色素瘤`` is not a term).
    The code stays the "other/unspecified" code, so where the bare name is itself an official name that
    entry wins at build time (official names always beat aliases).
``tail``
    Strip a comma tail (``，`` or ``,``) that only qualifies or gives a cause: ``其他的``, ``其他特指的``,
    ``未特指…``, ``…未特指``, ``不可归类在他处者``, ``其他部位的``, ``其他形式的``, ``…所致``,
    ``…引起的``, ``NOS``: ``破伤风，其他的`` -> ``破伤风``;
    ``霍乱，由于O1群霍乱弧菌，霍乱生物型所致`` -> ``霍乱``; ``脊柱骨折,水平未特指`` -> ``脊柱骨折``.
    Tails that change the meaning are kept (``…，伴有坏疽``, ``…，在家``, ``…，意图不确定的``).
    A cause written *before* the head (``肿瘤引起的贫血``) is not stripped: ``贫血`` would get the code
    of anaemia in neoplastic disease.
``trailing_code``
    Strip a code written after a space at the end: ``霍乱 A00.9`` -> ``霍乱``.
``space``
    Remove spaces next to Chinese characters: ``B 族链球菌感染`` -> ``B族链球菌感染``.
``coordination``
    Split coordinated names, carefully. ``并`` is never a coordinator here (in ICD names it is part of
    ``并发`` / ``合并``: "complicated by"); ``及`` / ``与`` / ``和`` / ``、`` are. Two shapes only:

    Only ``A<c>B`` or the list form ``A、B<c>C`` (up to 4 parts, every separator but the last is ``、``)
    is split: ``踝和足多处肌肉和肌腱损伤`` ((踝和足) 多处 (肌肉和肌腱) 损伤) is not.

    * distributive: ``P1、P2和P3<head>`` where every part is 1-4 characters without function words
      (的 其 他 在 由 于 伴 未 不 除 外 累 涉 提 以 或 有 无 及 和 与 非 性 造 引 致 所) and without a disease-head
      character (病 症 炎 瘤 癌 伤), and ``<head>`` (optionally after ``的``, which is dropped) is one of
      :data:`HEADS`: each part gets the head. ``浸润性导管和小叶原位癌`` and
      ``腋部周围神经和自主神经恶性肿瘤`` are not split (adjectival ``性``; parts too long). ``唇、口腔和咽恶性肿瘤`` -> ``唇恶性肿瘤``,
      ``口腔恶性肿瘤``, ``咽恶性肿瘤``; ``肝和胆管疾病`` -> ``肝疾病``, ``胆管疾病``;
      ``肛门和肛管的恶性肿瘤`` -> ``肛门恶性肿瘤``, ``肛管恶性肿瘤``.
      ``肝和胆管疾病`` never gives ``肝``: a part alone is not a term.
    * plain: ``A和B`` where every part is at least 2 characters and is already a known term (the
      ``known_terms`` of the build, all sources): ``恶心和呕吐`` -> ``恶心``, ``呕吐``.
      Without ``known_terms`` no plain split is made.
``cancer``
    ``<organ>恶性肿瘤`` -> ``<organ>癌`` for organs whose malignant tumours are overwhelmingly carcinomas
    (epithelial organs; :data:`CARCINOMA_ORGANS`), which is how clinical text names them:
    ``胃恶性肿瘤`` -> ``胃癌``; ``支气管和肺恶性肿瘤`` -> (coordination) ``肺恶性肿瘤`` -> ``肺癌``;
    ``乳房恶性肿瘤`` -> ``乳腺癌``; ``胰恶性肿瘤`` -> ``胰腺癌``. Bone, soft tissue, brain, lymphoid,
    blood and eye tumours are sarcomas/gliomas/lymphomas/melanomas, not ``…癌``, and are not listed;
    ``继发恶性肿瘤`` (metastasis) is not rewritten.

Not done, on purpose: stripping a trailing ``病``/``症`` (``糖尿病`` -> ``糖尿``, ``冠心病`` -> ``冠心``,
``阿米巴病`` -> ``阿米巴`` (an organism), ``焦虑症`` -> ``焦虑`` (a symptom) are wrong far too often), and
``疾患`` <-> ``疾病`` swaps.

Folding
=======
Matching folds full/half width, NFKC and case per character with :func:`medner.text.normalize_with_map`
semantics. :func:`fold_with_offsets` is its fast path: ``str.translate`` for the one-to-one folds and a
sparse offset map for the few characters whose fold changes length (``℃`` ``㎝`` ``Ⅱ``), so matches found
on the folded text map back to exact raw offsets.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

from medner.text import normalize_with_map

__all__ = [
    "MAX_DEPTH",
    "BRACKET_NOTES",
    "HEADS",
    "CARCINOMA_ORGANS",
    "Alias",
    "aliases",
    "fold",
    "fold_with_offsets",
    "FoldedText",
]

MAX_DEPTH = 4

# ----------------------------------------------------------------------------------------------- rules
#: square-bracketed notes that qualify a name rather than name it (``伯基特样淋巴瘤[观察]``: ICD-O
#: "under observation"; ``主动脉夹层[任何部分]``); never aliases: ``观察`` alone would tag the verb
BRACKET_NOTES: frozenset[str] = frozenset({"观察", "任何水平", "任何部分", "任何部位"})
_OPEN, _CLOSE = "(（[【［〔", ")）]】］〕"
_NOT_BRACKET = f"[^{re.escape(_OPEN + _CLOSE)}]"
_BRACKET = re.compile(rf"\s*[{re.escape(_OPEN)}]{_NOT_BRACKET}*[{re.escape(_CLOSE)}]")
_TRAILING_SQUARE = re.compile(rf"^(?P<head>.+?)\s*[\[【［](?P<syn>{_NOT_BRACKET}+)[\]】］]$")
_ESCAPED_BRACKET = re.compile(r"\\([\[\]()])")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CODEISH = re.compile(r"^[A-Z]\d{2}|^\d{2}\.\d|^[A-Z]\d{2}[-–][A-Z]\d{2}")
_PREFIX = re.compile(r"^(?:其他和未特指的|其他和未特指|其他特指的|其他的|其他|未特指部位的|未特指的|未特指)"
                     r"(?!和|或|及|与|的|部位|原因|类型|形式|方式|特指|病因|部分|情况|水平|疾病|疾患)")
_NOS = re.compile(r"[\s,，]*\b(?:NOS|NEC)$")
_TAIL = re.compile(
    r"^(?P<head>[^，,]+?)\s*[，,]\s*(?P<tail>其他的|其他特指的|其他和未特指的|未特指.*|.*未特指的?|不可归类在他处者"
    r"|其他部位的|其他形式的|.*所致|.*引起的?|NOS|NEC)$")
_TRAILING_CODE = re.compile(r"\s+[A-Z]\d{2}(?:\.[\dxX]+)?[†+*]?$")
_CJK_SPACE = re.compile(r"(?<=[\u3400-\u9fff])\s+|\s+(?=[\u3400-\u9fff])")

#: shared heads for distributive coordination, longest first
HEADS: tuple[str, ...] = tuple(sorted((
    "恶性肿瘤", "良性肿瘤", "原位癌", "肿瘤", "疾病", "疾患", "损伤", "骨折", "脱位", "感染", "先天性畸形",
    "畸形", "开放性伤口", "浅表损伤", "挤压伤", "结核", "切除术", "修补术", "切开术", "成形术", "造影",
), key=len, reverse=True))
_FUNCTION_CHARS = set("的其他在由于伴未不除外累涉提以或有无及和与非性造引致所")
_HEAD_CHARS = set("病症炎瘤癌伤")
_COORD = re.compile(r"[、和及与]")

#: organ -> the word clinical text puts before 癌 (epithelial organs only)
CARCINOMA_ORGANS: dict[str, str] = {
    **{o: o for o in (
        "胃", "肺", "肝", "食管", "结肠", "直肠", "乳腺", "宫颈", "子宫颈", "胰腺", "膀胱", "前列腺", "甲状腺",
        "鼻咽", "喉", "肾", "肾盂", "输尿管", "卵巢", "子宫内膜", "胆囊", "胆管", "十二指肠", "贲门", "舌",
        "口腔", "唇", "牙龈", "腮腺", "阴茎", "外阴", "阴道", "肛管", "支气管", "下咽", "口咽", "胃窦",
        "乙状结肠", "升结肠", "降结肠", "横结肠", "盲肠", "壶腹", "尿道", "子宫体", "肝内胆管")},
    "乳房": "乳腺",
    "胰": "胰腺",
}
_CANCER = re.compile(r"^(?P<organ>.+?)的?恶性肿瘤$")


@dataclass(frozen=True)
class Alias:
    """A derived surface form and the chain of rules that produced it (``"brackets+cancer"``)."""

    term: str
    rule: str


def _strip_brackets(name: str) -> list[str]:
    out = name
    while True:
        new = _BRACKET.sub("", out)
        if new == out:
            break
        out = new
    return [out.strip()]


def _bracket_synonym(name: str) -> list[str]:
    m = _TRAILING_SQUARE.match(name)
    if not m:
        return []
    syn = m.group("syn").strip()
    if len(syn) < 2 or _CODEISH.match(syn) or not _CJK.search(syn) or syn in BRACKET_NOTES:
        return []
    return [syn]


def _strip_qualifier(name: str) -> list[str]:
    out = _NOS.sub("", _PREFIX.sub("", name))
    return [out.strip()]


def _strip_tail(name: str) -> list[str]:
    m = _TAIL.match(name)
    return [m.group("head").strip()] if m else []


def _strip_trailing_code(name: str) -> list[str]:
    return [_TRAILING_CODE.sub("", name)]


def _strip_space(name: str) -> list[str]:
    if _NOS.search(name) or _TRAILING_CODE.search(name):
        return []  # "腭裂 NOS", "霍乱 A00.9": other rules strip the tail; "腭裂NOS" is no better
    return [_CJK_SPACE.sub("", name)]


def _plain_part(part: str) -> bool:
    return 1 <= len(part) <= 4 and not (set(part) & (_FUNCTION_CHARS | _HEAD_CHARS))


def _coordination(name: str, known_terms: Collection[str] | None) -> list[str]:
    if not _COORD.search(name) or re.search(r"[\s，,()（）\[\]]", name):
        return []
    separators = _COORD.findall(name)
    if len(separators) > 3 or any(sep != "、" for sep in separators[:-1]):
        return []  # only "A和B" or the list form "A、B和C": "踝和足多处肌肉和肌腱损伤" is not split
    parts = _COORD.split(name)
    if any(not p for p in parts):
        return []
    last = parts[-1]
    for head in HEADS:
        if last.endswith(head):
            stem = last[: -len(head)]
            if stem.endswith("的"):
                stem = stem[:-1]
            stems = parts[:-1] + [stem]
            if all(_plain_part(s) for s in stems):
                return [s + head for s in stems]
            break
    if known_terms and all(len(p) >= 2 and p in known_terms for p in parts):
        return list(parts)
    return []


def _cancer(name: str) -> list[str]:
    m = _CANCER.match(name)
    if not m:
        return []
    organ = CARCINOMA_ORGANS.get(m.group("organ"))
    return [organ + "癌"] if organ else []


_RULES = (
    ("brackets", _strip_brackets),
    ("bracket_synonym", _bracket_synonym),
    ("qualifier", _strip_qualifier),
    ("tail", _strip_tail),
    ("trailing_code", _strip_trailing_code),
    ("space", _strip_space),
    ("coordination", None),  # needs known_terms
    ("cancer", _cancer),
)
RULE_NAMES: tuple[str, ...] = tuple(name for name, _ in _RULES)
_UNFINISHED = re.compile(rf"[，,{re.escape(_OPEN + _CLOSE)}]")
_QUALIFIER_ONLY = re.compile(r"^(?:其他|其他的|未特指|未特指的|NOS|疾病|疾患|病)$")


def aliases(name: str, known_terms: Collection[str] | None = None,
            rules: Iterable[str] | None = None) -> list[Alias]:
    """Derived forms of ``name`` (not including ``name``), in a stable order, each once.

    ``known_terms`` enables the plain coordination split; ``rules`` restricts the rule set (default all,
    see :data:`RULE_NAMES`). Unknown rule names raise ValueError.
    """
    active = set(RULE_NAMES if rules is None else rules)
    unknown = active - set(RULE_NAMES)
    if unknown:
        raise ValueError(f"unknown alias rule(s) {sorted(unknown)}; known: {list(RULE_NAMES)}")
    seen = {name}
    out: list[Alias] = []
    start = _ESCAPED_BRACKET.sub(r"\1", name)  # the unescape step: always first, never returned alone
    seen.add(start)
    frontier = [Alias(start, "")]
    for _ in range(MAX_DEPTH):
        nxt: list[Alias] = []
        for current in frontier:
            for rule, fn in _RULES:
                if rule not in active:
                    continue
                forms = _coordination(current.term, known_terms) if fn is None else fn(current.term)
                for form in forms:
                    form = form.strip()
                    if len(form) < 2 or form in seen or _QUALIFIER_ONLY.match(form):
                        continue
                    seen.add(form)
                    alias = Alias(form, f"{current.rule}+{rule}" if current.rule else rule)
                    nxt.append(alias)
                    if not _UNFINISHED.search(form):  # still has a comma or bracket: only a step
                        out.append(alias)
        if not nxt:
            break
        frontier = nxt
    return out


# ---------------------------------------------------------------------------------------------- folding
@lru_cache(maxsize=1)
def _fold_tables() -> tuple[dict[int, str], dict[str, str], re.Pattern[str], bool]:
    """(translate table for every folded character, the length-changing folds, a regex finding them,
    whether some fold is empty), derived from :func:`medner.text.normalize_with_map` over every code
    point below U+30000 (built once per process, well under a second)."""
    chars = [chr(c) for c in range(0x30000) if not 0xD800 <= c < 0xE000]
    folded, index_map = normalize_with_map("".join(chars))
    pieces: list[list[str]] = [[] for _ in chars]
    for j, i in enumerate(index_map):
        pieces[i].append(folded[j])
    table: dict[int, str] = {}
    expand: dict[str, str] = {}
    for i, ch in enumerate(chars):
        f = "".join(pieces[i])
        if f == ch:
            continue
        table[ord(ch)] = f
        if len(f) != 1:
            expand[ch] = f
    pattern = re.compile("[" + "".join(re.escape(c) for c in sorted(expand)) + "]")
    return table, expand, pattern, any(not f for f in expand.values())


@dataclass(frozen=True)
class FoldedText:
    """Folded text plus a sparse map back to the raw text.

    ``breaks`` holds, for each raw character whose fold is not one character long, a tuple
    ``(folded_start, folded_end, raw_index)``; ``shifts[k]`` is ``folded - raw`` offset after break ``k``.
    """

    raw: str
    folded: str
    breaks: tuple[tuple[int, int, int], ...] = ()
    shifts: tuple[int, ...] = ()
    _starts: tuple[int, ...] = ()

    def raw_span(self, start: int, end: int) -> tuple[int, int] | None:
        """Raw ``(start, end)`` of folded ``[start, end)``, or None when either edge falls inside the fold
        of one raw character (e.g. only the ``c`` of ``℃`` -> ``°c``)."""
        if not self.breaks:
            return start, end
        s = self._raw_index(start, edge="start")
        e = self._raw_index(end - 1, edge="end")
        if s is None or e is None:
            return None
        return s, e + 1

    def _raw_index(self, pos: int, edge: str) -> int | None:
        k = bisect.bisect_right(self._starts, pos) - 1
        if k < 0:
            return pos
        fstart, fend, raw = self.breaks[k]
        if pos < fend:  # inside the fold of one raw character
            if (edge == "start" and pos == fstart) or (edge == "end" and pos == fend - 1):
                return raw
            return None
        return pos - self.shifts[k]


def fold(text: str) -> str:
    """Folded form of ``text`` (same as ``medner.text.normalize_with_map(text)[0]``)."""
    return fold_with_offsets(text).folded


def fold_with_offsets(text: str) -> FoldedText:
    """Fold ``text`` and keep what is needed to map folded offsets back to raw ones (see :class:`FoldedText`).

    One ``str.translate`` pass does the folding; only when the length changed (a ``℃``, ``㎝``, ``Ⅱ`` ...)
    is the text scanned again for the positions of the length-changing characters.
    """
    table, expand, pattern, has_empty = _fold_tables()
    folded = text.translate(table)
    if len(folded) == len(text) and not has_empty:
        return FoldedText(text, folded)
    breaks: list[tuple[int, int, int]] = []
    shifts: list[int] = []
    shift = 0
    for m in pattern.finditer(text):
        r = m.start()
        size = len(expand[m.group()])
        fstart = r + shift
        shift += size - 1
        breaks.append((fstart, fstart + size, r))
        shifts.append(shift)
    if not breaks:
        return FoldedText(text, folded)
    return FoldedText(text, folded, tuple(breaks), tuple(shifts), tuple(b[0] for b in breaks))
