"""How bytes become text when no encoding is given, the same way for the corpus readers, `medner predict` and the
batch annotator: a byte-order mark wins (UTF-8, UTF-16 LE/BE); else bytes that show the NUL pattern of UTF-16
without a BOM are UTF-16; else strict UTF-8; else strict GB18030 (a superset of GBK and GB2312). A given encoding
is used alone.
"""
from __future__ import annotations

import codecs
from typing import Sequence

AUTO = "auto"  # the encoding name that asks for detection


class DecodeFailure(ValueError):
    """Bytes that no candidate encoding decodes; ``tried`` lists the codecs, ``offset`` the first bad byte."""

    def __init__(self, tried: list[str], offset: int | None) -> None:
        self.tried = tried
        self.offset = offset
        where = f" (first bad byte at offset {offset})" if offset is not None else ""
        super().__init__(f"cannot decode as {', '.join(tried)}{where}")


class UTF8GivenAsGB(DecodeFailure):
    """Bytes given a GB codec that are UTF-8 (:func:`utf8_declared_gb`): decoding them would garble them."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.tried, self.offset = [encoding], None
        ValueError.__init__(self, f"UTF-8 bytes given the encoding {encoding}")


_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def sniff_bom(data: bytes) -> str | None:
    """``utf-8-sig`` or ``utf-16`` when ``data`` starts with that byte-order mark, else None."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    return None


def looks_utf16(data: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the first 4 KiB show UTF-16's NUL bytes (ASCII-heavy text), else None.

    Valid UTF-8 clinical text has no NUL bytes, so >= 20% NULs on one parity and < 2% on the other is UTF-16.
    """
    sample = data[:4096]
    sample = sample[: len(sample) // 2 * 2]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    if odd >= 0.2 * pairs and even <= 0.02 * pairs:
        return "utf-16-le"
    if even >= 0.2 * pairs and odd <= 0.02 * pairs:
        return "utf-16-be"
    return None


def detect_and_decode(data: bytes, encoding: str | None = None, *, skip: Sequence[str] = ()) -> tuple[str, str]:
    """``(text, codec)``: ``data`` decoded by the detection chain (module docstring), or by ``encoding`` only.

    A leading BOM is dropped. ``skip`` removes codecs already known to fail. Raises :class:`DecodeFailure`
    (:class:`UTF8GivenAsGB` for UTF-8 bytes given a GB ``encoding``).
    """
    if encoding is not None:
        if utf8_declared_gb(data, encoding):
            raise UTF8GivenAsGB(encoding)
        candidates = [encoding]
    else:
        bom = sniff_bom(data)
        if bom is not None:
            candidates = [bom]
        else:
            u16 = looks_utf16(data)
            candidates = ([u16] if u16 else []) + ["utf-8", "gb18030"]
    tried: list[str] = []
    first_bad = None
    for name in candidates:
        if name in skip:
            continue
        try:
            text = data.decode(name)
        except UnicodeDecodeError as exc:
            tried.append(name)
            first_bad = exc.start if first_bad is None else first_bad
            continue
        return (text[1:] if text.startswith("\ufeff") else text), name
    raise DecodeFailure(list(skip) + tried, first_bad)


_GB_CODECS = frozenset({"gb18030", "gbk", "gb2312"})


def _is_cjk(char: str) -> bool:
    """A CJK character or punctuation (ideographs, extension blocks, CJK symbols, full-width forms)."""
    code = ord(char)
    return (0x3000 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF
            or 0x20000 <= code <= 0x3FFFF)


def utf8_declared_gb(data: bytes, encoding: str) -> bool:
    """Whether bytes declared GB18030 / GBK / GB2312 are UTF-8 Chinese: they decode as strict UTF-8 (the first MiB;
    a character cut at its end allowed) into at least two CJK characters, which are at least half of the non-ASCII
    ones. UTF-8 Chinese often decodes as GB18030 without an error, every character garbled; GBK text that is valid
    UTF-8 decodes to Latin, Greek or Cyrillic letters instead (0 of the 63,507 non-ASCII terms of the project's ICD
    lexicon, encoded as GBK, pass; 4 in 100,000 random 3-character GB2312 strings)."""
    try:
        if codecs.lookup(encoding).name not in _GB_CODECS:
            return False
        sample = data[:1 << 20]
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) == len(data))
    except (LookupError, UnicodeDecodeError):
        return False
    non_ascii = [c for c in text[:65536] if ord(c) > 127]
    cjk = sum(map(_is_cjk, non_ascii))
    return cjk >= 2 and 2 * cjk >= len(non_ascii)


def detect_stream_encoding(sample: bytes, encoding: str | None) -> str:
    """One codec for a whole CSV file from its first bytes: forced, BOM, UTF-16 pattern, UTF-8, GB18030."""
    if encoding is not None:
        return encoding
    bom = sniff_bom(sample)
    if bom is not None:
        return bom
    u16 = looks_utf16(sample)
    if u16 is not None:
        return u16
    for name in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(name)().decode(sample, final=False)
            return name
        except UnicodeDecodeError:
            continue
    return "utf-8"  # undecodable rows are reported one by one
