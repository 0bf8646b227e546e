"""Output rows, atomic shard files, the merged ``errors.jsonl`` and ``manifest.json``.

Layout of an output folder::

    ledger.jsonl                 progress ledger (medner.batch.ledger)
    shards/part-000007.jsonl     annotated records of shard 7 (or .parquet), in input order
    errors/part-000007.jsonl     failures of shard 7 (only when it has any)
    errors.jsonl                 all failures, shard by shard (rebuilt at the end of every run)
    manifest.json                counts, timings, model, options (rebuilt at the end of every run)

Output row (one JSON line; same fields as Parquet columns)::

    {"id": "r1", "key": "in/a.zip!notes.jsonl:3",
     "source": {"path": "in/a.zip", "member": "notes.jsonl", "line": 3, "row": null},
     "spans": [{"start": 1, "end": 3, "label": "疾病和诊断", "text": "胃癌", "score": 0.93812, "code": "C16.900",
                "name": "胃恶性肿瘤", "match": "exact", "link_score": 1.0}],
     "model": "04c80e3dbcc54130", "text_sha256": "9f86d0...", "text": null}

``text`` is ``original_text[start:end]``; ``score`` and ``link_score`` are rounded to 6 decimals; ``code``,
``name`` (the ICD name), ``match`` (exact / alias / normalised / fuzzy) and ``link_score`` are null when the span
is not linked. ``text_sha256`` is the sha256 of the record's text (UTF-8), so that ``medner evaluate`` can check
predictions against gold without the text; ``text`` is null unless ``--with-text`` asked for the record's text. Error row::

    {"id": ..., "key": ..., "source": {...}, "reason": "undecodable", "detail": "not decodable as utf-8, gb18030 ..."}

Commit protocol of a shard: a ``write`` line in the ledger (this run writes shard k's files), then ``*.tmp<pid>``
files, fsync, rename the errors file then the data file into place, fsync the folders; only then is the shard
appended to the ledger, with the size and sha256 of each file. Killed before the ledger line, the shard is redone
and its files replaced by identical ones.

On every start, :func:`verify_shards` checks each listed shard's files against their recorded size and sha256;
a missing, cut or changed file is reported, a ``redo`` line is appended, and the shard is done again.
:meth:`ShardWriter.cleanup` then removes the files of shards that a session of this output started but did not
list (and the ``*.tmp<pid>`` files of its own sessions); any other file in the output folder is left alone.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

from medner.batch.ledger import LEDGER_FILE, Ledger, output_error
from medner.files import atomic_write_bytes
from medner.batch.items import Item
from medner.errors import CorpusError
from medner.types import Span, round_score

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet")
SHARDS_DIR = "shards"
ERRORS_DIR = "errors"
ERRORS_FILE = "errors.jsonl"
MANIFEST_FILE = "manifest.json"


def shard_stem(index: int) -> str:
    return f"part-{index:06d}"


def span_dict(text: str, span: Span) -> dict[str, Any]:
    return {"start": span.start, "end": span.end, "label": span.label, "text": text[span.start:span.end],
            "score": round_score(span.score), "code": span.code, "name": span.name, "match": span.match,
            "link_score": round_score(span.link_score)}


def output_row(item: Item, spans: Sequence[Span], model: str | None, with_text: bool = False) -> dict[str, Any]:
    """The output row of an annotated record (module docstring); ``with_text`` adds the record's text."""
    row = {"id": item.id, "key": item.key, "source": item.source.to_dict(),
           "spans": [span_dict(item.text, s) for s in spans], "model": model,
           "text_sha256": hashlib.sha256(item.text.encode("utf-8", "surrogatepass")).hexdigest(),
           "text": item.text if with_text else None}
    return row


def error_row(item: Item, reason: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """The ``errors.jsonl`` row of a failed item (never holds record text)."""
    return {"id": item.id, "key": item.key, "source": item.source.to_dict(), "reason": reason or item.reason,
            "detail": detail if detail is not None else item.detail}


def dumps(row: dict) -> str:
    """One JSON line, compact, UTF-8 characters kept (byte-stable across engines)."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def encode_line(row: dict) -> bytes:
    """:func:`dumps` as UTF-8; a lone surrogate (never in record text) is written as the JSON escape ``\\udcNN``."""
    return dumps(row).encode("utf-8", "backslashreplace")


def _parquet_schema():
    import pyarrow as pa  # start-up time: only Parquet output needs pyarrow

    span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string()),
                      ("score", pa.float64()), ("code", pa.string()), ("name", pa.string()),
                      ("match", pa.string()), ("link_score", pa.float64())])
    source = pa.struct([("path", pa.string()), ("member", pa.string()), ("line", pa.int64()), ("row", pa.int64())])
    return pa.schema([("id", pa.string()), ("key", pa.string()), ("source", source), ("spans", pa.list_(span)),
                      ("model", pa.string()), ("text_sha256", pa.string()), ("text", pa.string())])


def _write_rows(fh: IO[bytes], rows: Iterable[dict], fmt: str) -> None:
    """Write rows to the open binary file ``fh`` as ``fmt`` (JSON lines or Parquet)."""
    if fmt == "parquet":
        import pyarrow as pa  # start-up time: only Parquet output needs pyarrow
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows), schema=_parquet_schema()), fh)
    else:
        for row in rows:
            fh.write(encode_line(row))


def _serialise(rows: Iterable[dict], fmt: str) -> bytes:
    buffer = io.BytesIO()
    _write_rows(buffer, rows, fmt)
    return buffer.getvalue()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_PART = re.compile(r"part-(\d{6,})\.(jsonl|parquet)(?:\.tmp(\d+))?")
_ROOT_TMP = re.compile(rf"(?:{re.escape(LEDGER_FILE)}|errors\.jsonl|manifest\.json)\.tmp(\d+)")


class ShardWriter:
    """Writes shards of one output folder atomically (module docstring)."""

    def __init__(self, out_dir: Path, fmt: str = "jsonl") -> None:
        if fmt not in FORMATS:
            raise CorpusError(f"unknown output format {fmt!r}", field="format", fix=f"use one of {', '.join(FORMATS)}")
        self.out_dir = out_dir
        self.fmt = fmt
        self.shards_dir = out_dir / SHARDS_DIR
        self.errors_dir = out_dir / ERRORS_DIR
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self.errors_dir.mkdir(parents=True, exist_ok=True)

    def data_path(self, index: int) -> Path:
        return self.shards_dir / f"{shard_stem(index)}.{self.fmt}"

    def errors_path(self, index: int) -> Path:
        return self.errors_dir / f"{shard_stem(index)}.jsonl"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()

    def cleanup(self, ledger: Ledger) -> int:
        """Remove what a session of this output wrote but did not list in the ledger: the files of shards with a
        ``write`` line and no ``shard`` line, and ``*.tmp<pid>`` files of its sessions; returns the count.
        (A ledger of a medner that wrote no ``write`` lines: every unlisted ``part-*`` file.) Other files are
        left alone."""
        done, written, pids = set(ledger.shards), ledger.written, ledger.pids
        removed, foreign = 0, []
        candidates = [(self.shards_dir, p) for p in _listdir(self.shards_dir)]
        candidates += [(self.errors_dir, p) for p in _listdir(self.errors_dir)]
        for folder, path in candidates:
            match = _PART.fullmatch(path.name)
            if match is None:
                foreign.append(path)
                continue
            index, tmp_pid = int(match.group(1)), match.group(3)
            base = path.name if tmp_pid is None else path.name[:path.name.rindex(".tmp")]
            ours = base == (self.data_path(index) if folder == self.shards_dir else self.errors_path(index)).name
            if not ours:
                foreign.append(path)
            elif tmp_pid is not None:
                if int(tmp_pid) in pids or not ledger.tracked:
                    removed += self._remove(path)
                else:
                    foreign.append(path)
            elif index not in done:
                if index in written or not ledger.tracked:
                    removed += self._remove(path)
                else:
                    foreign.append(path)
        for path in _listdir(self.out_dir):
            match = _ROOT_TMP.fullmatch(path.name)
            if match is not None and int(match.group(1)) in pids:
                removed += self._remove(path)
        if removed:
            log.info("removed %d partial shard files left by an interrupted run", removed)
        if foreign:
            log.warning("%s: %d files this output did not write were left alone (first: %s); they are not part of "
                        "the output", self.out_dir, len(foreign), self.relative(foreign[0]))
        return removed

    def _remove(self, path: Path) -> int:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise output_error(exc, path, "remove a partial shard file") from None
        return 1

    def remove_shard(self, index: int) -> None:
        """Remove shard ``index``'s files (this output's own names only)."""
        self._remove(self.data_path(index))
        self._remove(self.errors_path(index))

    def commit(self, index: int, rows: Sequence[dict], errors: Sequence[dict]) -> dict[str, Any]:
        """Write shard ``index`` atomically; returns file names, sizes and sha256 for the ledger."""
        data_final, errors_final = self.data_path(index), self.errors_path(index)
        data = _serialise(rows, self.fmt)
        info: dict[str, Any] = {"file": self.relative(data_final)}
        try:
            if errors:  # the error file first: a shard's data file exists only with its errors beside it
                blob = _serialise(errors, "jsonl")
                atomic_write_bytes(errors_final, blob)
                info.update(errors_file=self.relative(errors_final), errors_bytes=len(blob),
                            errors_sha256=hashlib.sha256(blob).hexdigest())
            elif errors_final.exists():  # pragma: no cover - only if a previous attempt differed
                errors_final.unlink()
            atomic_write_bytes(data_final, data)
        except OSError as exc:
            raise output_error(exc, data_final, f"write shard {index}") from None
        info.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        return info


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise output_error(exc, folder, "list the output folder") from None


def _file_problem(path: Path, size: int | None, sha256: str | None) -> str | None:
    """Why ``path`` does not match its recorded size and sha256, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    if size is not None and st.st_size != size:
        return f"{st.st_size} bytes, {size} recorded (cut short or changed)"
    if sha256 is not None:
        try:
            if sha256_file(path) != sha256:
                return "content changed since it was written (sha256 differs)"
        except OSError as exc:
            return f"unreadable ({exc.strerror or type(exc).__name__})"
    return None


def verify_shards(writer: ShardWriter, ledger: Ledger, session: int | None) -> list[dict]:
    """Check every listed shard's files against the ledger (size and sha256 recorded at commit); a damaged
    shard's files are removed and a ``redo`` line appended, so the run does it again. Returns those redos."""
    redo = []
    for index in sorted(ledger.shards):
        entry = ledger.shards[index]
        data = writer.data_path(index)
        why = None
        if entry["file"] != writer.relative(data):
            why = f"the ledger names {entry['file']!r}, not {writer.relative(data)!r}"
        else:
            problem = _file_problem(data, entry.get("bytes"), entry.get("sha256"))
            if problem:
                why = f"{writer.relative(data)}: {problem}"
            elif entry["errors"]:
                errors = writer.errors_path(index)
                if entry.get("errors_file") != writer.relative(errors):
                    why = f"the ledger names {entry.get('errors_file')!r}, not {writer.relative(errors)!r}"
                else:
                    problem = _file_problem(errors, entry.get("errors_bytes"), entry.get("errors_sha256"))
                    why = f"{writer.relative(errors)}: {problem}" if problem else None
        if why is None:
            continue
        log.warning("%s: shard %d is damaged (%s); it is annotated again", writer.out_dir, index, why)
        writer.remove_shard(index)
        event = {"event": "redo", "shard": index, "why": why, "session": session, "t": now()}
        ledger.append(event)
        redo.append({"shard": index, "why": why})
    return redo


def merge_errors(out_dir: Path, ledger: Ledger) -> int:
    """Rebuild ``errors.jsonl`` from the per-shard error files, in shard order; returns the number of rows."""
    parts = []
    for index in sorted(ledger.shards):
        entry = ledger.shards[index]
        if not entry.get("errors"):
            continue
        path = out_dir / entry["errors_file"]
        if not path.exists():
            raise CorpusError(f"shard {index} lists {entry['errors']} errors but its file is missing",
                              where=str(path), fix="delete the output folder and run again")
        parts.append(path.read_bytes())
    try:
        atomic_write_bytes(out_dir / ERRORS_FILE, b"".join(parts))
    except OSError as exc:
        raise output_error(exc, out_dir / ERRORS_FILE, "write errors.jsonl") from None
    return sum(part.count(b"\n") for part in parts)


def build_manifest(out_dir: Path, ledger: Ledger, *, extra: dict | None = None) -> dict[str, Any]:
    """Counts and timings from the ledger alone (so it can be rebuilt at any time), plus ``extra``."""
    shards = [ledger.shards[i] for i in sorted(ledger.shards)]
    reasons: dict[str, int] = {}
    encodings: dict[str, int] = {}
    for entry in shards:
        for key, value in entry.get("reasons", {}).items():
            reasons[key] = reasons.get(key, 0) + value
        for key, value in entry.get("encodings", {}).items():
            encodings[key] = encodings.get(key, 0) + value
    records = sum(e["records"] for e in shards)
    chars = sum(e.get("chars", 0) for e in shards)
    busy = sum(e.get("seconds", 0.0) for e in shards)
    sessions = ledger.sessions
    walls = []
    for session in sessions:
        ends = [e["t"] for e in ledger.events if e.get("session") == session["session"] and "t" in e]
        walls.append(round(max(ends) - session["t"], 3) if ends else 0.0)
    wall = sum(walls)
    signature = ledger.signature
    manifest = {
        "medner_batch": 1,
        "model": signature.get("model"),
        "counts": {"read": sum(e["items"] for e in shards), "annotated": records,
                   "failed": sum(e["errors"] for e in shards), "spans": sum(e.get("spans", 0) for e in shards),
                   "chars": chars, "failed_by_reason": dict(sorted(reasons.items()))},
        "encodings": dict(sorted(encodings.items())),
        "timings": {"sessions": len(sessions), "session_wall_s": walls, "wall_s": round(wall, 3),
                    "model_busy_s": round(busy, 3),
                    "busy_records_per_s": round(records / busy, 2) if busy > 0 else None,
                    "busy_chars_per_s": round(chars / busy, 1) if busy > 0 else None,
                    "records_per_s": round(records / wall, 2) if wall > 0 else None,
                    "chars_per_s": round(chars / wall, 1) if wall > 0 else None},
        "shards": {"count": len(shards), "size": signature.get("shard_size"), "format": signature.get("format"),
                   "files": [e["file"] for e in shards]},
        "errors_file": ERRORS_FILE,
        "signature": signature,
    }
    if extra:
        manifest.update(extra)
    return manifest


def write_manifest(out_dir: Path, ledger: Ledger, *, extra: dict | None = None) -> dict[str, Any]:
    manifest = build_manifest(out_dir, ledger, extra=extra)
    text = json.dumps(manifest, ensure_ascii=False, indent=1) + "\n"
    try:
        atomic_write_bytes(out_dir / MANIFEST_FILE, text.encode("utf-8", "backslashreplace"))
    except OSError as exc:
        raise output_error(exc, out_dir / MANIFEST_FILE, "write manifest.json") from None
    return manifest


def rebuild(out_dir: Path) -> dict[str, Any]:
    """Rebuild ``errors.jsonl`` and ``manifest.json`` of an output folder from its ledger alone."""
    path = Path(out_dir) / LEDGER_FILE
    if not path.is_file():
        raise CorpusError("no ledger.jsonl: not a `medner annotate` output folder", where=str(out_dir),
                          fix="point at the --out folder of an annotate run")
    signature, events = Ledger.read(path)
    ledger = Ledger(path, signature, events)
    finish = [e for e in events if e.get("event") == "finish"]
    merge_errors(Path(out_dir), ledger)
    extra = {"read_stats": finish[-1].get("read_stats")} if finish else {"complete": False}
    return write_manifest(Path(out_dir), ledger, extra=extra)


def now() -> float:
    return round(time.time(), 3)
