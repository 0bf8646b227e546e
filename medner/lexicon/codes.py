"""ICD code validation, written against the editions in ``../shared/data/lexicons``.

ICD-10 (国家临床版 1.1, 北京临床版 v6.01, WHO/gnuhealth, 3-character list) — one code is
``[A-Z]\\d{2}`` followed by, optionally:

* a subdivision ``.d`` .. ``.ddddd`` or ``.x`` / ``.X`` / ``.xdd`` (``A00.9``, ``C79.8201``, ``Z51.89201``,
  ``A33.x00``, ``A38.X``) or the Beijing form ``xxdd`` / ``xxddd`` (``A33xx01``, ``F04xx001``);
* a clinical extension ``xddd`` / ``xdddd`` (``A00.000x001``, ``E16.8x011``);
* a Beijing site letter with an optional digit (``L57.402B``, ``L90.505A1``);
* a dagger ``†`` / ``+`` or asterisk ``*`` mark (``A01.001†``, ``A06.5+``, ``G01*``).

A dagger/asterisk pair is written ``main+asterisk*`` (``A01.003+G01*``); a morphology code is
``M\\d{5,6}/\\d`` (``M81600/3``, ``M800000/0``). The WHO form without a dot (``J155``) is accepted and
:func:`dotted_icd10` turns it into ``J15.5``.

ICD-9-CM-3 (国家临床版 1.1): ``\\d{2}`` then optionally ``.d`` .. ``.dddd`` or ``.dxdd`` and an
extension ``xddd`` / ``xdddd`` (``00.0100``, ``01.6x00``, ``00.0200x001``, ``86.700x0013``).
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["CODE_SYSTEMS", "code_pattern", "is_valid_code", "dotted_icd10", "normalise_code"]

_ICD10_ONE = r"[A-Z]\d{2}(?:\.(?:\d{1,5}|[xX]\d{0,3})|xx\d{2,3}|\d)?(?:x\d{3,4})?(?:[A-Z]\d?)?"
_ICD10 = (rf"(?:{_ICD10_ONE}[†+*]?"
          rf"|{_ICD10_ONE}†?\+{_ICD10_ONE}\*"
          r"|M\d{5,6}/\d)")
_ICD9CM3 = r"\d{2}(?:\.(?:\d{1,4}|\dx\d{2}))?(?:x\d{3,4})?"

#: name -> full-match regular expression; ``none`` accepts anything (and no code at all)
CODE_SYSTEMS: dict[str, re.Pattern[str] | None] = {
    "icd10": re.compile(_ICD10),
    "icd9cm3": re.compile(_ICD9CM3),
    "none": None,
}

_WHO_UNDOTTED = re.compile(r"([A-Z]\d{2})(\d{1,2})([†+*]?)")
_DAGGER_PAIR = re.compile(rf"({_ICD10_ONE})†({_ICD10_ONE}\*)")


def code_pattern(system: str, custom: str | None = None) -> re.Pattern[str] | None:
    """The pattern for ``system`` (a key of :data:`CODE_SYSTEMS`), or ``custom`` compiled when given.

    Raises ValueError for an unknown system or an invalid custom pattern.
    """
    if custom:
        try:
            return re.compile(custom)
        except re.error as exc:
            raise ValueError(f"invalid code pattern {custom!r}: {exc}") from None
    if system not in CODE_SYSTEMS:
        raise ValueError(f"unknown code system {system!r}; expected one of {sorted(CODE_SYSTEMS)}")
    return CODE_SYSTEMS[system]


def is_valid_code(code: str, pattern: re.Pattern[str] | None) -> bool:
    """True when ``code`` fully matches ``pattern`` (always true without a pattern)."""
    return pattern is None or pattern.fullmatch(code) is not None


def dotted_icd10(code: str) -> str:
    """``J155`` -> ``J15.5``, ``A000`` -> ``A00.0``; codes already dotted or of 3 characters are unchanged."""
    m = _WHO_UNDOTTED.fullmatch(code)
    return f"{m.group(1)}.{m.group(2)}{m.group(3)}" if m else code


def normalise_code(code: str, system: str) -> str:
    """A code as the patterns expect it: full-width characters folded (``Ａ01.0`` -> ``A01.0``), spaces dropped;
    for ICD-10 also a lower-case first letter raised (``a00.0``), a dagger/asterisk pair written as the others are
    (``A17.0†G01*`` -> ``A17.0+G01*``). The WHO undotted form (``A000``) stays: :func:`dotted_icd10` dots it where
    a source asks for that (``code_format: dotted``)."""
    code = unicodedata.normalize("NFKC", code).replace(" ", "")
    if system == "icd10" and code:
        code = code[0].upper() + code[1:]
        pair = _DAGGER_PAIR.fullmatch(code)
        if pair:
            code = f"{pair.group(1)}+{pair.group(2)}"
    return code
