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
     "spans": [{"start": 1, "end": 3, "label": "疾病和诊断", "text": "胃癌", "score": 0.93812, "code": null}],
     "model": "04c80e3dbcc54130"}

``text`` is ``original_text[start:end]``; ``score`` is rounded to 6 decimals. Error row::

    {"id": ..., "key": ..., "source": {...}, "reason": "undecodable", "detail": "not decodable as utf-8, gb18030 ..."}

Commit protocol of a shard: write ``*.tmp`` files, fsync, rename the errors file then the data file into
place, fsync the folders; only then is the shard appended to the ledger. Killed before the ledger line, the
shard is redone and its files replaced by identical ones; stale ``*.tmp`` files are removed on start.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

from medner.batch.ledger import LEDGER_FILE, Ledger
from medner.files import atomic_write, atomic_write_bytes, atomic_write_text
from medner.batch.items import Item
from medner.errors import CorpusError
from medner.types import Span

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet")
SHARDS_DIR = "shards"
ERRORS_DIR = "errors"
ERRORS_FILE = "errors.jsonl"
MANIFEST_FILE = "manifest.json"
SCORE_DECIMALS = 6


def shard_stem(index: int) -> str:
    return f"part-{index:06d}"


def span_dict(text: str, span: Span) -> dict[str, Any]:
    score = None if span.score is None else round(float(span.score), SCORE_DECIMALS)
    return {"start": span.start, "end": span.end, "label": span.label, "text": text[span.start:span.end],
            "score": score, "code": span.code}


def output_row(item: Item, spans: Sequence[Span], model: str | None) -> dict[str, Any]:
    """The output row of an annotated record (module docstring)."""
    return {"id": item.id, "key": item.key, "source": item.source.to_dict(),
            "spans": [span_dict(item.text, s) for s in spans], "model": model}


def error_row(item: Item, reason: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """The ``errors.jsonl`` row of a failed item (never holds record text)."""
    return {"id": item.id, "key": item.key, "source": item.source.to_dict(), "reason": reason or item.reason,
            "detail": detail if detail is not None else item.detail}


def dumps(row: dict) -> str:
    """One JSON line, compact, UTF-8 characters kept (byte-stable across engines)."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def _parquet_schema():
    import pyarrow as pa  # start-up time: only Parquet output needs pyarrow

    span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string()),
                      ("score", pa.float64()), ("code", pa.string())])
    source = pa.struct([("path", pa.string()), ("member", pa.string()), ("line", pa.int64()), ("row", pa.int64())])
    return pa.schema([("id", pa.string()), ("key", pa.string()), ("source", source), ("spans", pa.list_(span)),
                      ("model", pa.string())])


def _write_rows(fh: IO[bytes], rows: Iterable[dict], fmt: str) -> None:
    """Write rows to the open binary file ``fh`` as ``fmt`` (JSON lines or Parquet)."""
    if fmt == "parquet":
        import pyarrow as pa  # start-up time: only Parquet output needs pyarrow
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows), schema=_parquet_schema()), fh)
    else:
        for row in rows:
            fh.write(dumps(row).encode("utf-8"))


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

    def cleanup(self, done: Iterable[int]) -> int:
        """Remove temp files and shard files the ledger does not list (left by a killed run); returns the count."""
        keep = {self.data_path(i).name for i in done} | {self.errors_path(i).name for i in done}
        removed = 0
        for folder in (self.shards_dir, self.errors_dir):
            for path in folder.iterdir():
                if path.name not in keep and path.name.startswith("part-"):
                    path.unlink()
                    removed += 1
        if removed:
            log.info("removed %d partial shard files left by an interrupted run", removed)
        return removed

    def commit(self, index: int, rows: Sequence[dict], errors: Sequence[dict]) -> dict[str, Any]:
        """Write shard ``index`` atomically; returns file names and sizes for the ledger."""
        data_final, errors_final = self.data_path(index), self.errors_path(index)
        info: dict[str, Any] = {"file": data_final.relative_to(self.out_dir).as_posix()}
        if errors:  # the error file first: a shard's data file exists only with its errors beside it
            atomic_write(errors_final, lambda fh: _write_rows(fh, errors, "jsonl"))
            info["errors_file"] = errors_final.relative_to(self.out_dir).as_posix()
        elif errors_final.exists():  # pragma: no cover - only if a previous attempt differed
            errors_final.unlink()
        atomic_write(data_final, lambda fh: _write_rows(fh, rows, self.fmt))
        info["bytes"] = data_final.stat().st_size
        return info


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
    atomic_write_bytes(out_dir / ERRORS_FILE, b"".join(parts))
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
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
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
