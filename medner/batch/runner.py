"""The resumable batch runner: inputs -> shards -> an engine -> atomic shard files + ledger.

:func:`annotate` first checks, before it changes anything: the inputs (:func:`~medner.batch.sources.check_inputs`:
no input twice, none inside another, only regular files and folders), that inputs and output do not overlap
(real paths, links followed), that ``--out`` is a folder this command created (or new, or empty), the model
(:func:`medner.run.directory.verify`: every model file against its recorded sha256, no pickle) and the
ledger's signature. Then it verifies every committed shard against the ledger and redoes damaged ones
(:func:`~medner.batch.shards.verify_shards`), removes only what its own sessions left half-written, reads the
item stream (:mod:`medner.batch.sources`), cuts it into shards of ``shard_size`` items (shard k = items
``[k*N, (k+1)*N)``), skips shards the ledger lists as complete (they are re-read, checked against the ledger's
key digest, never re-annotated), sends the others to an engine, and commits each result atomically
(:mod:`medner.batch.shards`) before listing it in the ledger. Killed at any moment, or stopped by a full disk
(a one-line :class:`~medner.batch.ledger.OutputError`), the same call continues where it stopped; the finished
output holds each item exactly once. Workers load the model only if its fingerprint is still the one checked.

Engines (:mod:`medner.batch.engine`): ``local`` (:mod:`medner.batch.local_engine`), ``ray``
(:mod:`medner.batch.ray_engine`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Iterator


from medner.batch.engine import PRECISIONS, ModelSpec, Shard, torch_threads
from medner.batch.ledger import LEDGER_FILE, LOCK_FILE, Ledger, OutputError, OutputLock, output_error
from medner.batch.local_engine import LocalEngine
from medner.batch.ray_engine import RayEngine
from medner.batch.shards import (ERRORS_DIR, FORMATS, SHARDS_DIR, ShardWriter, error_row, merge_errors, now,
                                 output_row, verify_shards, write_manifest)
from medner.batch.items import Item, ReadOptions, ReadStats
from medner.batch.sources import check_inputs, check_overlap, count_items, inputs_fingerprint, iter_items
from medner.errors import ConfigError, CorpusError, ModelError
from medner.progress import Progress
from medner.lexicon.store import load_lexicon
from medner.model.device import check_device_name, resolve_device
from medner.run.directory import check_exported_settings, is_exported, model_files, read_meta, verify

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass
class AnnotateOptions:
    """Everything one ``medner annotate`` run needs; see the CLI help for each option."""

    model: Path
    inputs: list[Path]
    out: Path
    read: ReadOptions = field(default_factory=ReadOptions)
    shard_size: int = 1000  # items per shard
    output_format: str = "jsonl"
    with_text: bool = False  # write each record's text in its output row (the output then holds record text)
    engine: str = "local"
    workers: int = 1
    batch_records: int = 64  # records per Annotator.predict call
    batch_size: int = 8  # windows per forward pass (on CPU, 4-8 beats larger batches: cache)
    device: str = "auto"
    threads: int | None = None  # torch threads per worker; None = max(1, cores // workers)
    lexicon: Path | None = None  # ICD lexicon TSV for codes
    precision: str = "auto"  # auto (the run's setting), fp32 or bf16; see ModelSpec
    progress: bool = True
    ray_address: str | None = None  # engine "ray": cluster address (None = start a local instance)
    ray_wave_shards: int = 64  # engine "ray": shards per Ray Data dataset (bounds memory; one model load each)
    fingerprint: str | None = None  # set by annotate(): the checked model fingerprint workers must load

    def model_spec(self) -> ModelSpec:
        return ModelSpec(str(self.model), self.device, self.batch_size, str(self.lexicon) if self.lexicon else None,
                         self.precision, self.threads, self.fingerprint)

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        self.lexicon = Path(self.lexicon) if self.lexicon is not None else None
        self.inputs = [Path(p) for p in self.inputs]
        for name in ("shard_size", "workers", "batch_records", "batch_size", "threads", "ray_wave_shards"):
            if name == "threads" and self.threads is None:
                self.threads = torch_threads(self.workers)  # the workers are checked by now
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}", field=name,
                                  fix=f"give --{name.replace('_', '-')} a whole number of 1 or more, or leave it out")
        if self.output_format not in FORMATS:
            raise ConfigError(f"unknown output format {self.output_format!r}", field="format",
                              fix=f"use one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}", field="precision",
                              fix=f"use one of {', '.join(PRECISIONS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}", field="engine", fix=f"use one of {', '.join(ENGINES)}")


def model_fingerprint(run_dir: Path) -> str:
    """The run's weights fingerprint, after checking every model file against it (no model is loaded)."""
    return model_signature(run_dir)["model"]


def model_signature(run_dir: Path) -> dict:
    """``{"model": fingerprint}`` of a verified run directory (every model file against its recorded sha256,
    no pickle); a run of format 1, which recorded no checksums, adds ``model_files``, a digest of its files
    now, so that changed weights are refused on resume all the same."""
    try:
        meta = read_meta(run_dir)
    except ModelError as exc:
        raise ModelError(exc.message, where=exc.where, field="model",
                         fix="point --model at the output_dir of a finished `medner finetune` run") from None
    verify(run_dir, meta)
    signature = {"model": meta["fingerprint"]}
    if meta.get("files") is None:
        h = hashlib.sha256()
        for name, entry in model_files(Path(run_dir)).items():
            h.update(f"{name}\0{entry['sha256']}\n".encode("utf-8", "surrogateescape"))
        signature["model_files"] = h.hexdigest()[:16]
    return signature


def lexicon_fingerprint(path: Path | None) -> str | None:
    """sha256 of the ``--lexicon`` file, read in full first: a file that is not a lexicon is refused here, before
    the output folder is made, not in a worker after the ledger holds it."""
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError("no such lexicon file", where=str(path), field="lexicon",
                          fix="build it with `medner lexicon build` or drop --lexicon")
    load_lexicon(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def check_model_options(options: AnnotateOptions) -> None:
    """The device and precision the workers will load the model with, checked before the output folder is made
    (a refusal writes nothing). Ray workers may have GPUs the driver lacks: there only the device's name is."""
    check_device_name(options.device)
    if options.engine == "local":
        resolve_device(options.device)
    meta = read_meta(options.model)
    if is_exported(meta):
        check_exported_settings(meta, options.device, options.precision)


def check_output_folder(out: Path) -> None:
    """Refuse an ``--out`` that is not a folder, or a non-empty folder without a ledger (not an output of this
    command: its files are not this command's to replace or remove)."""
    if not out.exists():
        if out.is_symlink():
            raise OutputError("a link to nothing", where=str(out), fix="choose another --out")
        return
    if not out.is_dir():
        raise OutputError("exists and is not a folder", where=str(out), fix="choose a folder path for --out")
    if (out / LEDGER_FILE).exists():
        return
    try:
        entries = sorted(out.iterdir())
    except OSError as exc:
        raise output_error(exc, out, "list the output folder") from None
    ours = [out / LOCK_FILE, out / SHARDS_DIR, out / ERRORS_DIR]
    others = [p for p in entries if p not in ours and not p.name.startswith(f"{LEDGER_FILE}.tmp")]
    if any(p.is_dir() and any(p.iterdir()) for p in entries if p in ours[1:]):
        raise OutputError("holds shards but no ledger.jsonl: the output cannot be checked or resumed",
                          where=str(out), fix="move this folder aside and run again with a new --out")
    if others:
        raise OutputError(f"not empty and not an output of `medner annotate` (no ledger.jsonl; holds "
                          f"{others[0].name!r})", where=str(out), fix="choose a new or empty folder for --out")


# ------------------------------------------------------------------------------------------ the run
def _shards(items: Iterator[Item], size: int) -> Iterator[Shard]:
    index = 0
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield Shard(index, chunk)
        index += 1


def signature_of(options: AnnotateOptions, inputs: list[Path]) -> dict:
    """What the output is made of; must be equal on resume. Verifies the model's files."""
    return {**model_signature(options.model), "lexicon": lexicon_fingerprint(options.lexicon),
            "inputs": inputs_fingerprint(inputs), "read": options.read.to_dict(),
            "shard_size": options.shard_size, "format": options.output_format, "precision": options.precision,
            **({"with_text": True} if options.with_text else {})}


def _shard_entry(shard: Shard, predictions: list, seconds: float, session: int) -> tuple[dict, list, list]:
    """(ledger entry, output rows, error rows) of a finished shard."""
    rows, errors, reasons, encodings = [], [], {}, {}
    spans = chars = 0
    it = iter(predictions)
    for item in shard.items:
        if not item.ok:
            errors.append(error_row(item))
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
            continue
        pred = next(it)
        if isinstance(pred, str):
            errors.append(error_row(item, "model_error", f"the model raised {pred} on this record"))
            reasons["model_error"] = reasons.get("model_error", 0) + 1
            continue
        rows.append((item, pred))
        spans += len(pred)
        chars += len(item.text)
        if item.encoding:
            encodings[item.encoding] = encodings.get(item.encoding, 0) + 1
    entry = {"event": "shard", "shard": shard.index, "items": len(shard.items), "records": len(rows),
             "errors": len(errors), "spans": spans, "chars": chars, "keys": shard.keys_digest(),
             "first": shard.items[0].key, "last": shard.items[-1].key, "reasons": reasons,
             "encodings": encodings, "seconds": round(seconds, 4), "session": session}
    return entry, rows, errors


def _progress(options: AnnotateOptions, inputs: list[Path], done: int) -> Progress:
    """Records (and failures) of all inputs: a bar with a total and ETA when they can be counted up front."""
    total = count_items(inputs, options.read) if options.progress else None
    return Progress(total, "annotate", unit="rec", bar=options.progress, initial=min(done, total or done))


def annotate(options: AnnotateOptions, engine=None) -> dict:
    """Run (or resume) a batch annotation; returns the manifest (also written to ``OUTDIR/manifest.json``)."""
    inputs = check_inputs(options.inputs, options.read)
    check_overlap(inputs, options.out)
    check_output_folder(options.out)
    signature = signature_of(options, inputs)
    check_model_options(options)
    model = signature["model"]
    options = replace(options, fingerprint=model)
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, options.out, "create the output folder") from None
    with OutputLock(options.out):
        check_output_folder(options.out)  # again, now that no other run can be creating it
        ledger = Ledger.open(options.out, signature)
        try:
            writer = ShardWriter(options.out, options.output_format)
        except OSError as exc:
            raise output_error(exc, options.out, "create the shard folders") from None
        before_redo = len(ledger.shards)
        session = ledger.start_session(engine=options.engine, workers=options.workers, pid=os.getpid())
        redone = verify_shards(writer, ledger, session)
        writer.cleanup(ledger)
        before = len(ledger.shards)
        if engine is None:
            engine = make_engine(options)
        stats = ReadStats()
        bar = _progress(options, inputs, sum(e["items"] for e in ledger.shards.values()))
        started = time.perf_counter()
        session_chars = session_failed = 0

        def pending() -> Iterator[Shard]:
            for shard in _shards(iter_items(inputs, options.read, stats, avoid=options.out), options.shard_size):
                entry = ledger.done(shard.index)
                if entry is None:
                    ledger.append({"event": "write", "shard": shard.index, "session": session})
                    yield shard
                elif entry["keys"] != shard.keys_digest():
                    raise CorpusError(f"shard {shard.index} now holds other records than when it was written "
                                      f"(first {shard.items[0].key!r})", where=str(options.out),
                                      fix="restore the original inputs, or choose a new --out")

        results = engine.run(pending())
        try:
            for shard, predictions, seconds in results:
                entry, rows, errors = _shard_entry(shard, predictions, seconds, session)
                files = writer.commit(shard.index, [output_row(item, spans, model, options.with_text)
                                                    for item, spans in rows], errors)
                entry.update(files)
                entry["t"] = now()
                ledger.append(entry)
                session_chars += entry["chars"]
                session_failed += entry["errors"]
                bar.update(entry["items"])
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(chars_s=f"{session_chars / elapsed:,.0f}", failed=session_failed)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()  # stops worker pools even when a write failed
            bar.close()
        read_stats = stats.to_dict()
        ledger.append({"event": "finish", "session": session, "t": now(), "read_stats": read_stats})
        n_errors = merge_errors(options.out, ledger)
        manifest = write_manifest(options.out, ledger, extra={
            "engine": options.engine, "workers": options.workers, "read_stats": read_stats,
            "resumed_shards": before, "inputs": [str(p) for p in inputs], "model_dir": str(options.model),
            "checked_shards": before_redo, "redone_shards": redone,
            "ledger_lines_dropped": [number for number, _ in ledger.repaired]})
        assert n_errors == manifest["counts"]["failed"]
        if stats.skipped:
            log.warning("%d file(s) in folders or archives were not read: their suffix is none of .txt .jsonl .csv "
                        ".tsv .parquet (first: %s; all counted in manifest.json read_stats); name a file on the "
                        "command line with --input-format to read it", stats.skipped,
                        ", ".join(stats.skipped_examples[:3]))
        if stats.duplicate_ids:
            log.warning("%d records have an id that an earlier record has too (first: %s); their rows are told "
                        "apart by `key` (see manifest.json read_stats)", stats.duplicate_ids,
                        ", ".join(stats.duplicate_id_examples[:3]))
        log.info("annotated %d records, %d failed, %d shards (%d done before this session) -> %s",
                 manifest["counts"]["annotated"], manifest["counts"]["failed"], manifest["shards"]["count"],
                 before, options.out)
        return manifest


def make_engine(options: AnnotateOptions):
    return RayEngine(options) if options.engine == "ray" else LocalEngine(options)
