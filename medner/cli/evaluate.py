"""`medner evaluate`: score predictions against gold (seqeval strict IOB2 + exact character spans)."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score predictions against gold records",
        description="Score predicted spans against gold spans, records paired by id: seqeval strict IOB2 over "
                    "per-character tags and exact character spans, per type, micro and macro.")
    parser.add_argument("--gold", required=True, metavar="PATH", help="gold corpus file or folder")
    parser.add_argument("--pred", required=True, metavar="PATH", help="predicted corpus file or folder")
    parser.add_argument("--gold-format", default="jsonl", metavar="FORMAT",
                        help="corpus format of --gold (default: jsonl)")
    parser.add_argument("--pred-format", default="jsonl", metavar="FORMAT",
                        help="corpus format of --pred (default: jsonl)")
    parser.add_argument("--encoding", default=None, help="text encoding of both inputs (default: the reader's)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score gold records without a prediction as predicting nothing (default: error)")
    parser.add_argument("--show-text", action="store_true",
                        help="quote record text (mentions) in error messages, for debugging a corpus; off by default: "
                             "messages give offsets, lengths and hashes only")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("-o", "--output", metavar="REPORT_PREFIX",
                        help="also write REPORT_PREFIX.json and REPORT_PREFIX.md (a folder gets evaluation.*)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from medner.evaluate import format_table, read_for_scoring, score, write_report  # start-up time: on use only

    gold = read_for_scoring(args.gold, args.gold_format, encoding=args.encoding, show_text=args.show_text)
    pred = read_for_scoring(args.pred, args.pred_format, encoding=args.encoding, show_text=args.show_text)
    result = score(gold, pred, on_missing="empty" if args.allow_missing else "raise",
                   gold_where=args.gold, pred_where=args.pred)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_table(result))
    if args.output:
        write_report(result, args.output)
    return 0
