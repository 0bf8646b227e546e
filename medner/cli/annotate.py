"""`medner annotate`: offline batch annotation of folders, tables and archives; resumable, exactly-once."""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_MIB = 1 << 20
FAILED_STATUS = 3  # the run finished, but some records could not be annotated (listed in errors.jsonl)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate", help="annotate folders, JSONL/CSV/Parquet files and archives with a trained run",
        description="Annotate every record of the inputs with a trained run and write sharded JSONL (or Parquet) "
                    "to OUTDIR, with errors.jsonl (records that could not be read, with the reason) and "
                    "manifest.json (counts, timings). Killed at any moment, or stopped by a full disk, the same "
                    "command resumes where it stopped; the finished output holds every input record exactly once. "
                    "On every start it checks the model files and each written shard (size and sha256) and redoes "
                    "damaged shards; it refuses inputs that overlap the output folder. See docs/guarantees.md. Exit "
                    "status: 0 all records annotated; 2 refused (one line on stderr, nothing changed); 3 finished, "
                    "but some records failed (errors.jsonl; --allow-failures exits 0).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="folders of .txt files, .jsonl/.csv/.tsv/.parquet files, .zip/.tar/.tar.gz archives")
    parser.add_argument("--model", required=True, metavar="RUN", help="run directory of a finished training run")
    parser.add_argument("--out", required=True, metavar="OUTDIR", help="output folder (created; reused to resume)")
    io_group = parser.add_argument_group("reading")
    io_group.add_argument("--id-field", default="id", help="id key/column of JSONL, CSV and Parquet (default: id; "
                                                           "absent ids become the record's source key)")
    io_group.add_argument("--text-field", default="text", help="text key/column (default: text)")
    io_group.add_argument("--encoding", default=None,
                          help="force one codec for all inputs (default: detect BOM, UTF-16, UTF-8, GB18030)")
    io_group.add_argument("--input-format", default="auto", choices=("auto", "txt", "jsonl", "csv", "parquet"),
                          help="read every input file named here (whatever its suffix) and every .txt/.jsonl/.csv/.tsv/"
                               ".parquet file in folders and archives as this format (default: by suffix)")
    io_group.add_argument("--max-record-chars", type=int, default=1_000_000,
                          help="longer records go to errors.jsonl (default: 1,000,000)")
    io_group.add_argument("--max-member-mb", type=_size, default=256,
                          help="largest archive member read, MiB of decompressed data (default: 256)")
    io_group.add_argument("--max-archive-gb", type=_size, default=16,
                          help="most decompressed data read from one archive, GiB (default: 16)")
    io_group.add_argument("--max-ratio", type=_size, default=200,
                          help="largest compression ratio accepted, against decompression bombs (default: 200)")
    out_group = parser.add_argument_group("output")
    out_group.add_argument("--format", default="jsonl", choices=("jsonl", "parquet"), dest="output_format",
                           help="shard format (default: jsonl)")
    out_group.add_argument("--shard-size", type=int, default=1000, help="input records per shard (default: 1000)")
    out_group.add_argument("--with-text", action="store_true",
                           help="write each record's text in its row (for `medner render`; the output then holds "
                                "record text; by default rows carry a sha256 of it)")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--engine", default="local", choices=("local", "ray"),
                           help="local processes (default) or Ray Data (pip install 'medner[ray]')")
    run_group.add_argument("--workers", type=int, default=1,
                           help="local: processes; ray: actors holding the model (default: 1)")
    run_group.add_argument("--batch-records", type=int, default=64, help="records per prediction call (default: 64)")
    run_group.add_argument("--batch-size", type=int, default=8,
                           help="windows per forward pass (default: 8; on CPU, small batches are fastest)")
    run_group.add_argument("--threads", type=int, default=None,
                           help="torch threads per worker (default: max(1, cores // workers))")
    run_group.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: auto)")
    run_group.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                           help="auto: the run's setting (fp32 on CPU); bf16: bf16 autocast for the encoder, about "
                                "2x faster (1.6-2.5x measured) on CPUs with AMX/AVX512-BF16, spans agree ~99%% with fp32")
    run_group.add_argument("--lexicon", default=None, metavar="TSV", help="ICD lexicon to fill span codes")
    run_group.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local one)")
    run_group.add_argument("--ray-wave-shards", type=int, default=64,
                           help="ray: shards per Ray Data dataset; bounds memory, one model load per actor each "
                                "(default: 64)")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_group.add_argument("--allow-failures", action="store_true",
                           help=f"exit 0 even when some records failed (default: exit {FAILED_STATUS}: the output is "
                                "complete, but errors.jsonl lists records without annotations)")
    parser.set_defaults(func=run_annotate, on_interrupt="rerun the same command to continue where it stopped")


def _size(value: str) -> float:
    """An archive limit: a number from 0 to 1e9 (MiB, GiB or a ratio; NaN would switch a check off, inf and 1e308
    overflow once scaled to bytes)."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= 1e9:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1e9, got {value!r}")
    return number


def run_annotate(args: argparse.Namespace) -> int:
    from medner.batch.runner import AnnotateOptions, annotate
    from medner.batch.items import ArchiveLimits, ReadOptions

    limits = ArchiveLimits(max_member_bytes=int(args.max_member_mb * _MIB),
                           max_total_bytes=int(args.max_archive_gb * 1024 * _MIB), max_ratio=args.max_ratio)
    read = ReadOptions(id_field=args.id_field, text_field=args.text_field, encoding=args.encoding,
                       input_format=args.input_format, max_record_chars=args.max_record_chars, limits=limits)
    options = AnnotateOptions(model=args.model, inputs=args.inputs, out=args.out, read=read,
                              shard_size=args.shard_size, output_format=args.output_format, with_text=args.with_text,
                              engine=args.engine,
                              workers=args.workers, batch_records=args.batch_records, batch_size=args.batch_size,
                              device=args.device, threads=args.threads, precision=args.precision,
                              lexicon=args.lexicon, progress=not args.no_progress,
                              ray_address=args.ray_address, ray_wave_shards=args.ray_wave_shards)
    manifest = annotate(options)
    counts, timings = manifest["counts"], manifest["timings"]
    print(json.dumps({"out": str(args.out), "read": counts["read"], "annotated": counts["annotated"],
                      "failed": counts["failed"], "shards": manifest["shards"]["count"],
                      "redone_shards": len(manifest["redone_shards"]),
                      "duplicate_ids": manifest["read_stats"]["duplicate_ids"],
                      "records_per_s": timings["records_per_s"], "chars_per_s": timings["chars_per_s"]},
                     ensure_ascii=False), file=sys.stdout)
    if counts["failed"] and not args.allow_failures:
        log.error("%d records failed (reasons in %s); exit status %d. Pass --allow-failures where failures are "
                  "expected", counts["failed"], Path(args.out) / "errors.jsonl", FAILED_STATUS)
        return FAILED_STATUS
    return 0
