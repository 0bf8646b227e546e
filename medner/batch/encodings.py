"""Encodings of batch inputs: the detection chain of :mod:`medner.decoding` (shared with the corpus readers),
with ``encoding`` forcing one codec. JSONL lines and ``.txt`` records are detected one by one; CSV files as a
whole (from their first MiB), with undecodable rows retried one by one.
"""
from __future__ import annotations

import codecs

from medner.batch.items import SURROGATE, Item, Source, fail
from medner.decoding import DecodeFailure, UTF8GivenAsGB, detect_and_decode, utf8_declared_gb


#: the error handler that reads an undecodable stretch of a UTF-16/32 stream as one lone surrogate (:data:`MARK`,
#: which strict decoding never yields): the stream reads on and only the line or row holding it fails
#: (``surrogateescape`` cannot stand for the NUL bytes of a bad UTF-16 code unit)
MARK_ERRORS = "medner.mark_undecodable"
MARK = "\udcff"
codecs.register_error(MARK_ERRORS, lambda exc: (MARK, exc.end))


def text_errors(codec: str) -> str:
    """The error handler for reading a stream in ``codec`` with undecodable stretches marked, not raised."""
    return MARK_ERRORS if codecs.lookup(codec).name.startswith(("utf-16", "utf-32")) else "surrogateescape"


def wrong_encoding(source: Source, encoding: str, record_id: str | None = None) -> Item:
    """The failure for UTF-8 bytes given ``--encoding`` of a GB codec (decoded, every character would be garbled)."""
    return fail(source, "wrong_encoding", f"UTF-8 bytes, not {encoding}: read as {encoding} every Chinese "
                                           "character would be garbled; leave --encoding out (detected) or pass "
                                           "--encoding utf-8", record_id)


def decode_failure(source: Source, exc: DecodeFailure, record_id: str | None = None) -> Item:
    if isinstance(exc, UTF8GivenAsGB):
        return wrong_encoding(source, exc.encoding, record_id)
    where = f"; first bad byte at offset {exc.offset}" if exc.offset is not None else ""
    return fail(source, "undecodable", f"not decodable as {', '.join(exc.tried)}{where}; "
                                        f"pass --encoding if the codec is another", record_id)


def redecode(value: str, codec: str) -> tuple[str, str]:
    """A CSV field read with ``surrogateescape`` decoded again by the chain, with replacement as last resort."""
    if not SURROGATE.search(value):
        return value, codec
    raw = value.encode(codec, "surrogateescape")
    try:
        return detect_and_decode(raw, skip=(codec,))
    except DecodeFailure:
        return raw.decode(codec, "replace"), codec


def utf8_row_in_gb_file(value: str, codec: str, forced: str | None) -> tuple[str, str]:
    """A CSV field of a file detected as GB18030 whose bytes are UTF-8 (a UTF-8 row among GBK ones: it decodes as
    GB18030 without an error, every character garbled) decoded again as UTF-8; other fields unchanged. The bytes
    are the field encoded back to GB18030 (lossless); :func:`medner.decoding.utf8_declared_gb` decides."""
    if forced is not None or codec != "gb18030" or value.isascii() or SURROGATE.search(value):
        return value, codec
    raw = value.encode("gb18030")
    return (raw.decode("utf-8"), "utf-8") if utf8_declared_gb(raw, codec) else (value, codec)


def redecode_strict(value: str, codec: str, forced: str | None) -> tuple[str, str]:
    try:
        raw = value.encode(codec, "surrogateescape")
    except UnicodeEncodeError:
        raise DecodeFailure([codec], None) from None
    if forced is not None:
        raise DecodeFailure([forced], None)
    return detect_and_decode(raw, skip=(codec,))
