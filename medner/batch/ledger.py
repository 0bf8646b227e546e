"""The progress ledger of an output folder: which shards are complete, under which run signature.

``OUTDIR/ledger.jsonl`` is append-only JSON lines, each appended with one ``write`` and ``fsync``:

    {"medner_ledger": 1, "signature": {...}}                      first line: what the output is made of
    {"event": "session", "session": 1, "t": 1732790000.1, ...}     one per start of the command
    {"event": "shard", "shard": 7, "items": 10, "records": 9, "errors": 1, "keys": "3f2a...", ...}
    {"event": "finish", "session": 3, "t": ..., "read_stats": {...}}

A shard line is appended only after that shard's files were renamed into place, so a shard listed here is
complete on disk; a shard not listed is (re)done from scratch. A line cut short by a kill (no final newline)
is removed on the next open. The signature (model fingerprint, inputs, options that change the output) must
match on resume; otherwise the run is refused instead of mixing two different outputs.

An exclusive ``flock`` on ``OUTDIR/.lock`` keeps two runs off the same folder (released by the kernel when the
process dies, even by SIGKILL).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from medner.errors import ConfigError, CorpusError
from medner.files import atomic_write_text

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = ".lock"
LEDGER_VERSION = 1


class OutputLock:
    """Exclusive lock on an output folder for the lifetime of one run."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl  # POSIX only: imported where the lock is taken

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def _diff(old: Any, new: Any, prefix: str = "") -> str | None:
    """Dotted name of the first differing key between two JSON values, or None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _diff(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            found = _diff(a, b, f"{prefix}[{i}]")
            if found:
                return found
        return None
    return None if old == new else (prefix or "<signature>")


class Ledger:
    """An open ledger. Use :meth:`open`; then :meth:`done`, :meth:`append`, :attr:`shards`, :attr:`sessions`."""

    def __init__(self, path: Path, signature: dict, events: list[dict]) -> None:
        self.path = path
        self.signature = signature
        self.events = events
        self.shards: dict[int, dict] = {e["shard"]: e for e in events if e.get("event") == "shard"}

    # -- opening ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: Path, signature: dict) -> "Ledger":
        """Open (or create) ``out_dir/ledger.jsonl`` for a run with ``signature`` (JSON-serialisable)."""
        path = out_dir / LEDGER_FILE
        signature = json.loads(json.dumps(signature))  # the form it will have when read back
        if not path.exists():
            header = json.dumps({"medner_ledger": LEDGER_VERSION, "signature": signature}, ensure_ascii=False)
            atomic_write_text(path, header + "\n")
            return cls(path, signature, [])
        old_signature, events = cls.read(path, repair=True)
        changed = _diff(old_signature, signature)
        if changed:
            raise ConfigError(f"this output folder was started with a different `{changed}` (model, inputs or "
                              f"options changed since)", where=str(out_dir),
                              fix="rerun with the original model, inputs and options, or choose a new --out")
        return cls(path, signature, events)

    @staticmethod
    def read(path: Path, repair: bool = False) -> tuple[dict, list[dict]]:
        """``(signature, events)`` of a ledger file; with ``repair``, a torn last line is cut off the file."""
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            log.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run",
                        path, len(data) - cut)
            if repair:
                with open(path, "r+b") as fh:
                    fh.truncate(cut)
                    fh.flush()
                    os.fsync(fh.fileno())
            data = data[:cut]
        lines = data.decode("utf-8").splitlines()
        if not lines:
            raise CorpusError("empty ledger", where=str(path), fix="delete the output folder and start again")
        try:
            header = json.loads(lines[0])
            events = [json.loads(line) for line in lines[1:] if line.strip()]
        except json.JSONDecodeError as exc:
            raise CorpusError(f"corrupt ledger ({exc.msg})", where=f"{path}:{exc.lineno}",
                              fix="delete the output folder and start again") from None
        if header.get("medner_ledger") != LEDGER_VERSION:
            raise CorpusError(f"not a medner ledger of version {LEDGER_VERSION}", where=f"{path}:1",
                              fix="use a new --out for this medner version")
        return header["signature"], events

    # -- use --------------------------------------------------------------------------------------------
    def done(self, shard: int) -> dict | None:
        """The ledger entry of a completed shard, or None."""
        return self.shards.get(shard)

    @property
    def sessions(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "session"]

    def append(self, event: dict) -> None:
        """Append one event durably (one write + fsync)."""
        line = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.events.append(event)
        if event.get("event") == "shard":
            self.shards[event["shard"]] = event

    def start_session(self, **info: Any) -> int:
        number = len(self.sessions) + 1
        self.append({"event": "session", "session": number, "t": round(time.time(), 3), **info})
        return number
