"""The progress ledger of an output folder: which shards are complete, under which run signature.

``OUTDIR/ledger.jsonl`` is JSON lines, each appended with one ``write`` and ``fsync``, each ending with the
CRC-32 of the line before it (``..., "crc": 123}``), so a changed byte makes the line unreadable, not wrong:

    {"medner_ledger": 1, "signature": {...}, "tracked": true}     first line: what the output is made of
    {"event": "session", "session": 1, "t": 1732790000.1, "pid": 4242, ...}   one per start of the command
    {"event": "write", "shard": 7, "session": 1}                  before shard 7's files are written
    {"event": "shard", "shard": 7, "items": 10, "records": 9, "errors": 1, "keys": "3f2a...",
     "file": "shards/part-000007.jsonl", "bytes": 5120, "sha256": "...", "errors_file": ..., ...}
    {"event": "redo", "shard": 7, "why": "...", "session": 2}     shard 7's files were found damaged on start
    {"event": "repair", "lines": [12], "session": null, ...}      unreadable lines dropped (their numbers)
    {"event": "finish", "session": 3, "t": ..., "read_stats": {...}}

A shard line is appended only after that shard's files were renamed into place, with their sizes and sha256, so
a shard listed here is complete on disk unless something damaged it since, which the runner checks on every
start (:func:`medner.batch.shards.verify_shards`); a shard not listed (or listed again by ``redo``) is done from
scratch. The ``write`` lines say which shard files the run itself wrote: a clean-up removes only those (and its
own ``*.tmp<pid>`` files), never a file it did not create.

Damage: a line cut short by a kill (no final newline) is removed on the next open; an unreadable line elsewhere
is reported with its line number and dropped (the ledger is rewritten atomically without it, plus a ``repair``
line) and whatever it described is redone. An unreadable first line (the signature) cannot be recovered: the run
is refused. The signature (model fingerprint, inputs, options that change the output) must match on resume;
otherwise the run is refused instead of mixing two different outputs. Nothing is changed before these checks.

An exclusive ``flock`` on ``OUTDIR/.lock`` keeps two runs off the same folder (released by the kernel when the
process dies, even by SIGKILL).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medner.config import differing_keys
from medner.errors import ConfigError, CorpusError, MednerError
from medner.files import atomic_write_bytes

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = ".lock"
LEDGER_VERSION = 1


class OutputError(MednerError):
    """The output folder cannot be used or written (a full disk, a file-size limit, no permission, a file in
    the way)."""


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def output_error(exc: OSError, path: str | os.PathLike, doing: str) -> OutputError:
    """A one-line :class:`OutputError` for an ``OSError`` met while ``doing`` something to ``path``."""
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = (exc.strerror or type(exc).__name__) + (f" ({code})" if code else "")
    if exc.errno in _FULL:
        fix = ("free disk space (or raise the file-size or quota limit), then rerun the same command: it resumes "
               "where it stopped and nothing written so far is lost")
    elif exc.errno in _DENIED:
        fix = "make the output folder writable, or choose another --out"
    else:
        fix = "check the output folder and its disk, then rerun the same command: it resumes where it stopped"
    return OutputError(f"cannot {doing}: {reason}", where=str(path), fix=fix)


def json_line(event: dict) -> bytes:
    """One compact JSON line as UTF-8; a lone surrogate (a name that was not UTF-8) is written as ``\\udcNN``."""
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "backslashreplace")


_CRC = re.compile(rb',"crc":(\d{1,10})\}\r?\n?$')


def ledger_line(event: dict) -> bytes:
    """A ledger line: :func:`json_line` of a non-empty ``event`` with the CRC-32 of its bytes as last key."""
    body = json_line(event).rstrip(b"\n")
    return body[:-1] + b',"crc":' + str(zlib.crc32(body)).encode() + b"}\n"


def _crc_ok(raw: bytes) -> bool | None:
    """True/False when the line's CRC matches or not; None when it has none."""
    match = _CRC.search(raw)
    if match is None:
        return None
    return zlib.crc32(raw[:match.start()] + b"}") == int(match.group(1))


def _change_message(key: str, started: dict) -> str:
    """What changed since the output was started, for the first differing signature ``key``."""
    match = re.fullmatch(r"inputs\[(\d+)\]\.(digest|files)", key)
    inputs = started.get("inputs")
    if match and isinstance(inputs, list) and int(match.group(1)) < len(inputs):
        return (f"input {inputs[int(match.group(1))].get('path')} changed since this output folder was started "
                "(the names, sizes or modification times of its files: rewriting or touching a file counts)")
    return (f"this output folder was started with a different `{key or '<signature>'}` (model, inputs or options "
            "changed since)")


class OutputLock:
    """Exclusive lock on an output folder for the lifetime of one run."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl  # POSIX only: imported where the lock is taken

        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(exc, self.path, "create the lock file of the output folder") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise ConfigError("another `medner annotate` is writing to this output folder",
                              where=str(self.path.parent),
                              fix="wait for it to finish or choose another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _event_problem(event: Any) -> str | None:
    """Why a parsed ledger line is not a usable event, or None."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return "not a ledger event"
    kind = event["event"]
    if kind in ("shard", "write", "redo") and not _int(event.get("shard")):
        return f"a `{kind}` event without a shard number"
    if kind == "shard":
        if not all(_int(event.get(k)) for k in ("items", "records", "errors")):
            return "a `shard` event without its counts"
        if not isinstance(event.get("keys"), str) or not isinstance(event.get("file"), str):
            return "a `shard` event without its keys or file"
    return None


@dataclass
class LedgerFile:
    """A ledger as read from disk, unchanged: the signature, the usable events, and what is wrong with it."""

    path: Path
    header: dict
    events: list[dict]
    lines: list[bytes]  # the raw lines of the usable events (with their newline), in order
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why) of unreadable lines
    torn: int = 0  # bytes of a last line without its newline (cut short by a kill)
    size: int = 0  # bytes of the whole file before any repair

    @property
    def signature(self) -> dict:
        return self.header["signature"]


def read_ledger(path: Path) -> LedgerFile:
    """Parse ``path`` without changing it; an unreadable first line is a :class:`CorpusError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read the ledger: {exc.strerror or type(exc).__name__}", where=str(path),
                          fix="check the output folder's disk and permissions") from None
    cut = data.rfind(b"\n") + 1
    raw_lines = data[:cut].splitlines(keepends=True)
    broken_header = CorpusError(
        "unreadable first line of the ledger (the signature of this output): the output cannot be checked",
        where=f"{path}:1", fix="move this output folder aside and run again with a new --out")
    if not raw_lines or _crc_ok(raw_lines[0]) is False:
        raise broken_header
    try:
        header = json.loads(raw_lines[0])
    except (ValueError, RecursionError):
        raise broken_header from None
    if not isinstance(header, dict) or not isinstance(header.get("signature"), dict):
        raise broken_header
    if header.get("medner_ledger") != LEDGER_VERSION:
        raise CorpusError(f"not a medner ledger of version {LEDGER_VERSION}", where=f"{path}:1",
                          fix="use a new --out for this medner version")
    tracked = bool(header.get("tracked"))
    if tracked and _crc_ok(raw_lines[0]) is None:
        raise broken_header
    ledger = LedgerFile(path, header, [], [raw_lines[0]], torn=len(data) - cut, size=len(data))
    for number, raw in enumerate(raw_lines[1:], 2):
        if not raw.strip():
            continue
        crc = _crc_ok(raw)
        if crc is False or (crc is None and tracked):
            ledger.bad.append((number, "checksum mismatch" if crc is False else "no checksum"))
            continue
        try:
            event = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            ledger.bad.append((number, "not UTF-8"))
            continue
        except (ValueError, RecursionError):
            ledger.bad.append((number, "invalid JSON"))
            continue
        if isinstance(event, dict):
            event.pop("crc", None)
        problem = _event_problem(event)
        if problem:
            ledger.bad.append((number, problem))
            continue
        ledger.events.append(event)
        ledger.lines.append(raw)
    return ledger


class Ledger:
    """An open ledger. Use :meth:`open`; then :meth:`done`, :meth:`append`, :attr:`shards`, :attr:`sessions`."""

    def __init__(self, path: Path, signature: dict, events: list[dict], *, tracked: bool = True,
                 repaired: list[tuple[int, str]] | None = None, creator: int | None = None) -> None:
        self.path = path
        self.creator = creator  # pid of the process that created the ledger
        self.signature = signature
        self.events: list[dict] = []
        self.shards: dict[int, dict] = {}
        self.written: set[int] = set()  # shards whose files a session of this output wrote
        self.tracked = tracked  # False for ledgers of medner versions that did not record `write` events
        self.repaired = repaired or []
        for event in events:
            self._apply(event)

    def _apply(self, event: dict) -> None:
        self.events.append(event)
        kind = event.get("event")
        if kind == "shard":
            self.shards[event["shard"]] = event
        elif kind == "redo":
            self.shards.pop(event["shard"], None)
        elif kind == "write":
            self.written.add(event["shard"])

    # -- opening ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: Path, signature: dict) -> "Ledger":
        """Open (or create) ``out_dir/ledger.jsonl`` for a run with ``signature`` (JSON-serialisable).

        All checks come before any change: a different signature is refused with the ledger untouched; then a
        torn last line is cut off and unreadable lines are dropped (each reported with its line number)."""
        path = out_dir / LEDGER_FILE
        signature = json.loads(json.dumps(signature))  # the form it will have when read back
        if not path.exists():
            header = {"medner_ledger": LEDGER_VERSION, "signature": signature, "tracked": True, "pid": os.getpid()}
            try:
                atomic_write_bytes(path, ledger_line(header))
            except OSError as exc:
                raise output_error(exc, path, "create the ledger") from None
            return cls(path, signature, [], creator=os.getpid())
        found = read_ledger(path)
        changed = differing_keys(found.signature, signature)
        if changed:
            raise ConfigError(_change_message(changed[0], found.signature), where=str(out_dir),
                              fix="rerun with the original model, inputs and options, or choose a new --out")
        cls._repair(found)
        pid = found.header.get("pid")
        return cls(path, found.signature, found.events, tracked=bool(found.header.get("tracked")),
                   repaired=found.bad, creator=pid if isinstance(pid, int) else None)

    @staticmethod
    def _repair(found: LedgerFile) -> None:
        path = found.path
        try:
            if found.bad:
                for number, why in found.bad:
                    log.warning("%s:%d: unreadable ledger line (%s); dropped, and what it recorded is redone",
                                path, number, why)
                note = {"event": "repair", "lines": [n for n, _ in found.bad], "why": [w for _, w in found.bad],
                        "t": round(time.time(), 3), "pid": os.getpid()}
                atomic_write_bytes(path, b"".join(found.lines) + ledger_line(note))
            elif found.torn:
                log.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run",
                            path, found.torn)
                with open(path, "r+b") as fh:
                    fh.truncate(found.size - found.torn)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise output_error(exc, path, "repair the ledger") from None

    @staticmethod
    def read(path: Path) -> tuple[dict, list[dict]]:
        """``(signature, events)`` of a ledger file, unreadable lines left out (nothing is changed)."""
        found = read_ledger(path)
        return found.signature, found.events

    # -- use --------------------------------------------------------------------------------------------
    def done(self, shard: int) -> dict | None:
        """The ledger entry of a completed shard, or None."""
        return self.shards.get(shard)

    @property
    def sessions(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "session"]

    @property
    def pids(self) -> set[int]:
        """Process ids of the sessions of this output (their temporary files are theirs to remove)."""
        pids = {e["pid"] for e in self.events if isinstance(e.get("pid"), int)}
        return pids | ({self.creator} if self.creator is not None else set())

    def append(self, event: dict) -> None:
        """Append one event durably (one write + fsync). If the write fails part-way (a full disk, a file-size
        limit), the file is cut back to its previous length, so no torn line stays behind."""
        line = ledger_line(event)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise output_error(exc, self.path, "append to the ledger") from None
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:
                    n = os.write(fd, view)
                    if n <= 0:  # pragma: no cover - regular files never return 0 for a non-empty write
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    view = view[n:]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, start)
                except OSError:  # pragma: no cover - a torn line is cut off on the next open anyway
                    pass
                raise
        except OSError as exc:
            raise output_error(exc, self.path, "append to the ledger") from None
        finally:
            os.close(fd)
        self._apply(event)

    def start_session(self, **info: Any) -> int:
        number = max((e["session"] for e in self.sessions if _int(e.get("session"))), default=0) + 1
        self.append({"event": "session", "session": number, "t": round(time.time(), 3), **info})
        return number
