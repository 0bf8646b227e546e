"""`medner corpus`: inspect and convert annotated corpora.

    medner corpus stats PATH --format chip [--encoding gb18030] [--on-error skip] [--show-text] [--json]
    medner corpus convert IN OUT --format ccks2017 [--encoding E] [--on-error skip] [--show-text]

Messages about malformed spans and records never quote record text (offsets, lengths, digests and file:line
instead); ``--show-text`` lets them quote short excerpts of mentions, for debugging a corpus.
"""
from __future__ import annotations

import argparse
import json
import sys

from medner.cli import add_on_error_option
from medner.corpus import ReadReport, files_read, formats, read_corpus, write_jsonl
from medner.corpus.stats import corpus_stats, format_stats
from medner.files import refuse_output_over_input


def _input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-f", required=True, choices=formats(), help="corpus format of the input")
    parser.add_argument("--encoding", default=None,
                        help="text encoding of the input (default: detected: a BOM, UTF-16, UTF-8, else GB18030)")
    add_on_error_option(parser)
    parser.add_argument("--show-text", action="store_true",
                        help="quote short excerpts of record text (mentions, field values) in messages about malformed "
                             "spans and records, for debugging a corpus; off by default: offsets, lengths and sha256 "
                             "digests only (these are medical records)")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("corpus", help="inspect and convert annotated corpora",
                                  description=__doc__.splitlines()[0])
    sub = group.add_subparsers(dest="corpus_command", metavar="ACTION")
    sub.required = True

    stats = sub.add_parser("stats", help="records, characters, entities per type, overlaps, lengths")
    stats.add_argument("path", help="corpus file or folder")
    _input_options(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    stats.set_defaults(func=run_stats)

    convert = sub.add_parser("convert", help="convert any supported format to the project's jsonl")
    convert.add_argument("input", help="corpus file or folder")
    convert.add_argument("output", help="jsonl file to write (atomically), or - for standard output")
    _input_options(convert)
    convert.set_defaults(func=run_convert)


def run_stats(args: argparse.Namespace) -> int:
    report = ReadReport()
    records = read_corpus(args.path, args.format, encoding=args.encoding, on_error=args.on_error, report=report,
                          show_text=args.show_text)
    stats = corpus_stats(records)
    if args.json:
        stats["read_report"] = {key: value for key, value in report.to_dict().items()
                                if key not in ("path", "format")}
        print(json.dumps({"path": args.path, "format": args.format, **stats}, ensure_ascii=False))
    else:
        print(f"{args.path} ({args.format})")
        print(format_stats(stats))
        if report.unusual:
            print(f"read: {report.summary()}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    to_stdout = args.output == "-"
    if not to_stdout:
        refuse_output_over_input(args.output, files_read(args.input, args.format), option="OUTPUT")
    report = ReadReport()
    records = read_corpus(args.input, args.format, encoding=args.encoding, on_error=args.on_error, report=report,
                          show_text=args.show_text)
    count = write_jsonl(records, args.output)
    summary = sys.stderr if to_stdout else sys.stdout  # the records may be on standard output
    print(f"wrote {count} records ({report.spans} spans) to {'standard output' if to_stdout else args.output}",
          file=summary)
    if report.skipped:
        print(f"skipped {report.skipped_records} records and {report.skipped_spans} spans (see warnings)", file=summary)
    return 0
