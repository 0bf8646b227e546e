"""One exception family. Every message names where (file, line or record, field) and the fix.

The CLI prints ``str(error)`` as one line and exits with status 2; no traceback for user errors.
"""
from __future__ import annotations

from os import PathLike


class MednerError(Exception):
    """Base class for errors caused by input or configuration, not by a bug.

    ``where`` is a location such as ``train.jsonl:17`` or ``train.jsonl record 3``,
    ``field`` the offending key, ``fix`` a short instruction for the user.
    """

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.where = where
        self.field = field
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.where:
            parts.append(f"{self.where}: ")
        parts.append(self.message)
        if self.field:
            parts.append(f" (field `{self.field}`)")
        if self.fix:
            parts.append(f". Fix: {self.fix}")
        return "".join(parts)


class CorpusError(MednerError):
    """A corpus file cannot be read or holds a malformed record or span."""


class ConfigError(MednerError):
    """A configuration file or override is invalid."""


class LexiconError(MednerError):
    """A lexicon source cannot be read or holds malformed rows."""


class ModelError(MednerError):
    """A model directory, encoder or tokenizer cannot be used."""


def location(path: str | PathLike | None, line: int | None = None, record: str | int | None = None) -> str:
    """Format a location: ``path:line`` or ``path record ID``."""
    where = str(path) if path is not None else "<input>"
    if line is not None:
        return f"{where}:{line}"
    if record is not None:
        return f"{where} record {record}"
    return where
