"""`medner predict`: spans (with scores and ICD links) for texts, with a trained run directory.

    medner predict --model RUN notes/                      # every .txt file of a folder: one record per file
    medner predict --model RUN note.txt -o pred.jsonl
    echo 患者因直肠癌入院。 | medner predict --model RUN -   # standard input: one record per line
    medner predict --model RUN dev.txt --format ccks2019   # an annotated corpus (gold spans replaced)

Output: the project's jsonl (``medner.corpus.jsonl``), to ``-o FILE`` (written atomically) or standard output.
A file of a folder (or a ``.txt``) that cannot be read is skipped with a warning, and the exit status is then 3,
as for ``medner annotate``; a corpus file with a bad record stops with a one-line error (status 2).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

from medner.cli.annotate import FAILED_STATUS
from medner.cli import add_on_error_option
from medner.corpus import files_read, formats
from medner.errors import ConfigError, CorpusError
from medner.files import refuse_output_over_input
from medner.types import Record

log = logging.getLogger(__name__)

STDIN = "-"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="predict spans for texts, folders, standard input or a corpus with a trained run",
        description="Predict spans with a trained run directory. INPUT is a .txt file (one record), a folder "
                    "(its .txt/.jsonl/.csv/.parquet files and archives, read as `medner annotate` reads them), "
                    "a .jsonl file in the project's format, or - for standard input (one record per non-blank "
                    "line). Writes the project's jsonl to -o FILE or to standard output.")
    p.add_argument("input", metavar="INPUT", help="a .txt or .jsonl file, a folder, or - (standard input)")
    p.add_argument("--model", required=True, metavar="RUN", help="run directory written by `medner finetune`")
    p.add_argument("--format", default="auto", choices=("auto", *formats()),
                   help="auto (default): by the input's suffix (.jsonl: the project's format; - : lines of "
                        "standard input; anything else as `medner annotate` reads it); or a corpus format, whose "
                        "gold spans are replaced by the predictions")
    p.add_argument("--encoding", default=None,
                   help="input encoding, e.g. gb18030 (default: detected: a BOM, UTF-16, UTF-8, else GB18030)")
    p.add_argument("--id-field", default="id",
                   help="id key/column of the CSV, Parquet and JSONL files read as `medner annotate` reads them "
                        "(default: id; given, a .jsonl file is read so too, not as the project's jsonl)")
    p.add_argument("--text-field", default="text", help="their text key/column (default: text)")
    add_on_error_option(p)
    p.add_argument("-o", "--output", default=STDIN, metavar="FILE",
                   help="output jsonl (the project's format); default - (standard output)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="windows (of at most the run's window length) per forward pass (default: 16; on CPU "
                        "small batches are fastest)")
    p.add_argument("--icd-lexicon", default=None, metavar="TSV",
                   help="link predicted spans to ICD codes with this coded lexicon TSV (default: the run's own, if any)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (without a terminal, progress is logged every 10%% instead)")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from medner import load  # start-up time: loading torch and the model only when a command needs them
    from medner.annotate import check_batch_size
    from medner.corpus import write_jsonl
    from medner.progress import track

    check_batch_size(args.batch_size, "--batch-size")
    if args.output != STDIN:
        read = files_read(args.input, args.format) if args.input != STDIN else []
        refuse_output_over_input(args.output, [*read, args.model, *([args.icd_lexicon] if args.icd_lexicon else [])])
    failed: list[str] = []
    records = list(_records(args, failed))  # read first: the progress has a total, and bad input stops early
    repeated = [rid for rid, n in Counter(r.id for r in records).items() if n > 1]
    if repeated:
        log.warning("%d record ids occur more than once (first: %s): each record is predicted, but `medner "
                    "evaluate` needs unique ids", len(repeated), repeated[0])
    annotator = load(args.model, device=args.device, batch_size=args.batch_size, icd_lexicon=args.icd_lexicon)
    predicted = track(annotator.predict_records(records), "predict", total=len(records), unit="rec",
                      bar=not args.no_progress)
    count = write_jsonl(predicted, args.output)
    log.info("wrote predictions for %d records to %s", count, "standard output" if args.output == STDIN
             else args.output)
    if failed:
        log.error("%d inputs could not be read and have no predictions (first: %s); see the warnings above",
                  len(failed), failed[0])
        return FAILED_STATUS
    return 0


def _records(args: argparse.Namespace, failed: list[str]) -> Iterator[Record]:
    """The input records; unreadable items are logged (key and reason, never text) and listed in ``failed``."""
    from medner.corpus import read_corpus

    if args.input == STDIN:
        return _stdin_records(args.encoding)
    path = Path(args.input)
    if not path.exists():
        raise CorpusError("no such file or folder", where=str(path), fix="check the path, or pass - for standard input")
    fields = (args.id_field, args.text_field) != ("id", "text")
    if args.format != "auto":
        if fields:
            raise ConfigError(f"--id-field/--text-field name the columns of what is read as `medner annotate` reads "
                              f"it, not of a corpus read as {args.format}", field="--format",
                              fix="leave --format out, or the field options")
        return read_corpus(path, format=args.format, encoding=args.encoding, on_error=args.on_error)
    if path.is_file() and path.suffix.lower() == ".jsonl" and not fields:  # the project's own jsonl
        return read_corpus(path, format="jsonl", encoding=args.encoding, on_error=args.on_error)
    return _item_records(path, args, failed)


def _stdin_records(encoding: str | None) -> Iterator[Record]:
    """Lines of standard input, decoded as files are (a BOM, UTF-16, UTF-8, GB18030) unless --encoding names one."""
    from medner.decoding import DecodeFailure, UTF8GivenAsGB, detect_and_decode

    data = sys.stdin.buffer.read()
    try:
        text = detect_and_decode(data, encoding)[0]
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}", where="<stdin>", field="--encoding",
                          fix="use a Python codec name such as utf-8, gb18030 or utf-16") from None
    except UTF8GivenAsGB:
        raise CorpusError(f"standard input is UTF-8, not {encoding}: read so every Chinese character would be "
                          "garbled", where="<stdin>", field="--encoding",
                          fix="leave --encoding out (detected)") from None
    except DecodeFailure as exc:
        raise CorpusError(f"standard input {exc}", where="<stdin>", field="--encoding",
                          fix="pass its encoding with --encoding") from None
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield Record(f"stdin:{number}", line)


def _item_records(path: Path, args: argparse.Namespace, failed: list[str]) -> Iterator[Record]:
    from medner.batch.items import ReadOptions  # start-up time: the batch readers only for files and folders
    from medner.batch.sources import iter_items

    options = ReadOptions(encoding=args.encoding, id_field=args.id_field, text_field=args.text_field)
    for item in iter_items([path], options):
        if item.ok:
            yield Record(item.id, item.text)
        else:
            failed.append(item.key)
            log.warning("%s: not read (%s: %s)", item.key, item.reason, item.detail)
