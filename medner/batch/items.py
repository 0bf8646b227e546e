"""What the batch input stream is made of: read options, the :class:`Item` (a record to annotate, or a failure
with a ``reason`` from :data:`REASONS`), where it came from (:class:`Source`), and read statistics.

Failures never stop the stream; they become items with a ``reason`` that the runner writes to ``errors.jsonl``.
Record text never appears in a reason or detail.
"""
from __future__ import annotations

import codecs
from collections import Counter
from dataclasses import asdict, dataclass, field

from medner.corpus.validate import SURROGATE
from medner.errors import ConfigError

TEXT_KINDS = ("txt", "jsonl", "csv", "parquet")

INPUT_FORMATS = ("auto",) + TEXT_KINDS

MiB = 1 << 20


GiB = 1 << 30


REASONS = {
    "undecodable": "bytes that decode in none of the encodings tried",
    "wrong_encoding": "UTF-8 bytes given --encoding of a GB codec (decoded so, every character would be garbled)",
    "empty": "empty or whitespace-only text",
    "too_long": "text over max_record_chars",
    "bad_json": "a JSONL line that is not a JSON object",
    "missing_text": "no text field/column, or a null text",
    "bad_field": "an id or text value of the wrong type",
    "bad_row": "a CSV row that cannot be parsed or lacks the text column",
    "unsafe_path": "archive member with an absolute path or a `..` component",
    "link": "archive member that is a symbolic or hard link",
    "special_file": "a FIFO, socket, device or other non-regular file or archive member (links are followed)",
    "duplicate_file": "a file already read under another name (a hard or symbolic link to it); read once",
    "inside_output": "an input file that resolves (through a link) into the output folder",
    "encrypted": "encrypted archive member",
    "nested_archive": "archive inside an archive",
    "member_too_large": "archive member over max_member_bytes",
    "ratio_exceeded": "compression ratio over max_ratio (decompression bomb)",
    "total_exceeded": "archive content over max_total_bytes",
    "corrupt": "a file, folder or archive that cannot be read (truncated, bad CRC, not that format, no access)",
    "model_error": "the model failed on this record (the exception type is given)",
}


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits for reading archives; sizes in bytes of decompressed data."""

    max_member_bytes: int = 256 * MiB
    max_total_bytes: int = 16 * GiB  # per archive
    max_ratio: float = 200.0  # decompressed / compressed
    ratio_min_bytes: int = 1 * MiB  # the ratio is checked only for members (tar: archive prefixes) above this

    def __post_init__(self) -> None:
        for name in ("max_member_bytes", "max_total_bytes", "ratio_min_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"`{name}` must be >= 0, got {getattr(self, name)}", field=name,
                                  fix="give a size of 0 or more")
        if not self.max_ratio >= 1:  # NaN too: it would switch the decompression-bomb check off
            raise ConfigError(f"`max_ratio` must be >= 1, got {self.max_ratio}", field="max_ratio",
                              fix="use a ratio such as 100 (decompressed bytes per compressed byte)")


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are read. ``encoding`` None = detect; ``max_record_chars`` bounds one record's text."""

    id_field: str = "id"
    text_field: str = "text"
    encoding: str | None = None
    input_format: str = "auto"
    max_record_chars: int = 1_000_000
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"unknown input format {self.input_format!r}", field="input_format",
                              fix=f"use one of {', '.join(INPUT_FORMATS)}")
        if self.max_record_chars < 1:
            raise ConfigError(f"`max_record_chars` must be >= 1, got {self.max_record_chars}",
                              field="max_record_chars")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(f"unknown encoding {self.encoding!r}", field="encoding",
                                  fix="use a Python codec name such as utf-8, gb18030 or utf-16") from None

    @property
    def max_record_bytes(self) -> int:
        """Bytes above which a text cannot fit ``max_record_chars`` in any supported encoding."""
        return 4 * self.max_record_chars + 4

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """Where an item came from: input ``path``, archive ``member``, JSONL ``line`` or CSV/Parquet ``row`` (1-based).

    ``copy`` (2, 3, ...) is set only on an item whose key an earlier item of the stream already has (the same
    member name twice in an archive, say): see :mod:`medner.batch.unique`.
    """

    path: str
    member: str | None = None
    line: int | None = None
    row: int | None = None
    copy: int | None = None

    @property
    def key(self) -> str:
        """Stable identity, e.g. ``data/a.zip!notes/b.jsonl:17``, ``data/c.parquet#3``, ``data/d.zip!x.txt~2``."""
        key = self.path if self.member is None else f"{self.path}!{self.member}"
        if self.line is not None:
            key += f":{self.line}"
        if self.row is not None:
            key += f"#{self.row}"
        if self.copy is not None:
            key += f"~{self.copy}"
        return key

    @property
    def where(self) -> str:
        """A location for messages (same as :attr:`key`)."""
        return self.key

    def to_dict(self) -> dict:
        return {"path": self.path, "member": self.member, "line": self.line, "row": self.row}


@dataclass(frozen=True)
class Item:
    """One position of the input stream: a record (``text``) or a failure (``reason`` + ``detail``)."""

    source: Source
    id: str
    text: str | None = None
    reason: str | None = None
    detail: str | None = None
    encoding: str | None = None

    @property
    def key(self) -> str:
        return self.source.key

    @property
    def ok(self) -> bool:
        return self.reason is None


EXAMPLES = 10


@dataclass
class ReadStats:
    """What the reader saw besides items: skipped files (unsupported suffix), encodings used, record ids that
    repeat and keys made unique (:mod:`medner.batch.unique`); examples are keys, never text."""

    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    encodings: Counter = field(default_factory=Counter)
    duplicate_ids: int = 0
    duplicate_id_examples: list[str] = field(default_factory=list)
    copies: int = 0
    copy_examples: list[str] = field(default_factory=list)

    def skip(self, where: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < EXAMPLES:
            self.skipped_examples.append(where)

    def duplicate_id(self, key: str) -> None:
        self.duplicate_ids += 1
        if len(self.duplicate_id_examples) < EXAMPLES:
            self.duplicate_id_examples.append(key)

    def copy(self, key: str) -> None:
        self.copies += 1
        if len(self.copy_examples) < EXAMPLES:
            self.copy_examples.append(key)

    def to_dict(self) -> dict:
        return {"skipped_files": self.skipped, "skipped_examples": list(self.skipped_examples),
                "encodings": dict(sorted(self.encodings.items())),
                "duplicate_ids": self.duplicate_ids, "duplicate_id_examples": list(self.duplicate_id_examples),
                "repeated_keys": self.copies, "repeated_key_examples": list(self.copy_examples)}


def printable(name: str) -> str:
    """A file or member name as valid Unicode: bytes that were not UTF-8 (surrogate escapes) become ``\\xNN``."""
    if not SURROGATE.search(name):
        return name
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return name.encode("utf-8", "backslashreplace").decode("ascii")


def fail(source: Source, reason: str, detail: str, record_id: str | None = None) -> Item:
    assert reason in REASONS, reason
    return Item(source, record_id if record_id is not None else source.key, None, reason, detail)



def check_text(source: Source, record_id: str, text: str, encoding: str | None, options: ReadOptions) -> Item:
    """The record item, or a failure for empty, over-long or lone-surrogate text."""
    if not text.strip():
        return fail(source, "empty", "the text is empty or whitespace only", record_id)
    if len(text) > options.max_record_chars:
        return fail(source, "too_long", f"{len(text)} characters > max_record_chars {options.max_record_chars}",
                     record_id)
    bad = SURROGATE.search(text)
    if bad is not None:
        return fail(source, "undecodable", f"lone surrogate at character {bad.start()} (invalid Unicode)",
                     record_id)
    return Item(source, record_id, text, encoding=encoding)
