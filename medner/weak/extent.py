"""A labelling function that widens other functions' spans to the extent an annotation scheme marks.

Official names find the head of a diagnosis (``直肠癌``, ``骨质增生``); CCKS 2019 annotates the whole
diagnosis around it: the site before it (``胸椎骨质增生``, ``（升结肠）粘液性腺癌``), the notes, stage and
grade after it (``腺癌（中分化）``, ``腺癌PT1N0M0``, ``宫颈癌IB1期``), and diagnoses linked by ``伴``/``并``
(``直肠癌伴肝转移``, ``胃癌术后肝转移``). :class:`ExtentLF` runs its ``base`` functions, keeps their spans of
its label, and proposes only the spans it widened; under majority voting with ``nested: true`` the widened
span collects the votes of the base spans inside it, so it wins over them where the rules apply and
nothing changes where they do not.

Patterns run on the raw text (case-insensitive; both bracket widths are written out), so offsets need no
mapping. Neither imports torch.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from medner.types import Record, Span
from medner.weak.base import LabellingFunction, leftmost_longest

__all__ = ["ExtentLF", "DIAGNOSIS_JOINERS", "DIAGNOSIS_LEFT", "DIAGNOSIS_RIGHT"]

#: words that link two diagnoses into one annotated diagnosis (``直肠癌伴肝转移``, ``胃癌术后肝转移``); the
#: empty joiner merges diagnoses that touch (``直肠腺癌肝转移``, ``糖尿病周围神经病变``)
DIAGNOSIS_JOINERS: tuple[str, ...] = ("伴有", "伴", "并发", "合并", "并", "术后", "综合治疗后", "化疗后", "")

#: what may stand between a site and the diagnosis after it, and before a diagnosis (ends at the span start):
#: a bracketed site (``（直肠）``), up to two words of course or severity (``慢性浅表性``, ``不全性``) or
#: multiplicity (``多发``)
DIAGNOSIS_LEFT = (r"(?:[(（][^()（）\s，,。；;：:]{1,12}[)）])?"
                  r"(?:急性|慢性|亚急性|不全性?|不完全性|完全性|浅表性?|多发性?|继发性|原发性|陈旧性|轻度|中度|重度|小"
                  r"|高级别|低级别|(?:iv|i{1,3}|[1-4])度){0,2}$")

#: what follows a diagnosis and belongs to it (starts at the span end): a short bracketed note
#: (``（中分化）``, ``（2级）``, ``（MILES）``) with a gross type after a comma, a TNM stage, a clinical stage
#: (``IV期``, ``IB1期``), a histological grade (``II级``), then ``术后`` / ``复发``
DIAGNOSIS_RIGHT = (r"(?:[(（][^()（）。；;]{1,15}[)）])?(?:[，,]\s?[\u4e00-\u9fff]{1,5}型)?"
                   r"(?:\s?(?:y?p|c)?t[0-4x](?:is|[a-d])?n[0-3x][a-c]?m[01x][a-c]?)?"
                   r"(?:\s?(?:iv|i{1,3}|[1-4])[a-c]?[1-3]?期)?"
                   r"(?:\s?(?:iv|i{1,3}|[1-4])(?:\s?[-~]\s?(?:iv|i{1,3}|[1-4]))?级)?"
                   r"(?:\s?(?:极|很)?高危|\s?[中低]危)?"
                   r"(?:急性加重期|稳定期|活动期|缓解期)?"
                   r"(?:伴(?:糜烂|出血|穿孔|梗阻))?"
                   r"(?:术后复发|术后|复发)?")

#: how many characters before a span the ``left`` pattern may cover
LEFT_REACH = 16


_INLINE_FLAGS = re.compile(r"((?:\(\?[aiLmsux]+\))*)(.*)", re.DOTALL)  # leading global flags, the rest


class ExtentLF:
    """Spans of ``base`` functions (label ``label`` only) widened by the rules of an annotation scheme.

    Left: a span of a ``sites`` function (anatomy) that ends where the diagnosis starts, or is separated
    from it by what ``left`` allows, joins it (repeatedly: ``肝内`` + ``胆管结石``); so does what ``left``
    matches alone. Right: what ``right`` matches at the end joins it; a ``joiner`` followed at once by
    another base span merges the two, and the right rule applies again. ``left`` (anchored at the span
    start) and ``right`` (anchored at its end) are regexes; "" turns a side off. Only spans that changed
    are yielded (the base functions vote for the rest themselves); a span never crosses ``stop`` characters.
    ``from_labels``: the labels of the base spans it widens (default: its own ``label``); a widened span of
    another label relabels what it covers (``胆囊切除术`` 手术 + ``后`` -> ``胆囊切除术后`` 疾病和诊断).
    Widened spans carry no code (nor the linker's fields): the base span's code names a narrower concept.
    """

    def __init__(self, name: str, label: str, base: Sequence[LabellingFunction], *,
                 sites: Sequence[LabellingFunction] = (), joiners: Sequence[str] = DIAGNOSIS_JOINERS,
                 left: str = DIAGNOSIS_LEFT, right: str = DIAGNOSIS_RIGHT, stop: str = "。；;\n",
                 from_labels: Sequence[str] | None = None) -> None:
        if not base:
            raise ValueError(f"{name}: expected at least one base function")
        self.name, self.label = name, label
        self.from_labels = frozenset(from_labels or (label,))
        self.labels: tuple[str, ...] = (label,)
        self.base, self.sites = tuple(base), tuple(sites)
        # anchored, as a whole, at the end of the text searched (the span start): `$` would also match before a
        # final newline, so a span that starts a line would be widened by one character, the newline
        flags, body = _INLINE_FLAGS.match(left or "").group(1, 2)  # `(?s)` must stay at the very start
        self.left = self._compile("left", f"{flags}(?:{body})\\Z" if left else left)
        self.right = self._compile("right", right)
        self.joiners = tuple(sorted(joiners, key=len, reverse=True))  # the empty joiner, if any, last
        self.stop = set(stop)

    def _compile(self, side: str, pattern: str) -> re.Pattern[str] | None:
        try:
            return re.compile(pattern, re.IGNORECASE) if pattern else None
        except re.error as exc:
            raise ValueError(f"{self.name}: `{side}` is not a valid regular expression: {exc}") from None

    def _spans(self, functions: Iterable[LabellingFunction], record: Record,
               labels: frozenset[str] | None) -> list[Span]:
        found = [s for lf in functions for s in lf.find_spans(record) if labels is None or s.label in labels]
        return leftmost_longest(found)

    def find_spans(self, record: Record) -> list[Span]:
        text = record.text
        base = self._spans(self.base, record, self.from_labels)
        if not base:
            return []
        site_end = {s.end: s.start for s in self._spans(self.sites, record, None)} if self.sites else {}
        starts = {s.start: s for s in base}
        out: list[Span] = []
        i = 0
        while i < len(base):
            span = base[i]
            start, end = self._extend_left(text, span.start, site_end), span.end
            i += 1
            while True:
                end = self._extend_right(text, end)
                joined = self._join(text, end, starts)
                if joined is None:
                    break
                end = joined.end
                while i < len(base) and base[i].start < end:
                    i += 1
            if (start, end) != (span.start, span.end) and not self.stop & set(text[start:end]):
                # no code: the base span's names another concept (胆囊切除术 51.22 in 胆囊切除术后, 直肠癌 C20
                # in 直肠癌伴肝转移); the weak config's `link:` codes the widened span
                out.append(Span(start, end, self.label, source=self.name))
        return leftmost_longest(out)

    def _extend_left(self, text: str, start: int, site_end: dict[int, int]) -> int:
        while True:
            m = self.left.search(text, max(0, start - LEFT_REACH), start) if self.left else None
            gap_start = m.start() if m and m.end() == start else start
            if gap_start not in site_end:
                return gap_start
            start = site_end[gap_start]

    def _extend_right(self, text: str, end: int) -> int:
        m = self.right.match(text, end) if self.right else None
        return m.end() if m else end

    def _join(self, text: str, end: int, starts: dict[int, Span]) -> Span | None:
        for joiner in self.joiners:
            if text.startswith(joiner, end) and end + len(joiner) in starts:
                return starts[end + len(joiner)]
        return None

    def __repr__(self) -> str:
        return f"ExtentLF({self.name!r}, {self.label!r}, base={[lf.name for lf in self.base]})"
