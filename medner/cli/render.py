"""`medner render`: displaCy HTML of annotated records that reads in Chinese (UTF-8, a CJK font stack, colours
per type with a legend, ICD codes in the labels, score and ICD name on hover).

    medner render RECORDS --model RUN -o out.html [--format jsonl] [--limit N] [--lexicon LEXICON]
    medner render RECORDS --gold -o out.html            # the records' own spans, no model
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from medner.errors import ConfigError
from medner.corpus import files_read
from medner.files import atomic_write_text, refuse_output_over_input


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="write displaCy HTML of records annotated by a model (or their gold spans)",
        description="Annotate records with a trained run and write one HTML page (displaCy) with one colour per "
                    "entity type (a legend on top), the ICD code, where linked, in each label, and the score, ICD "
                    "name and link score on hover. The page is UTF-8 with lang=zh-CN and a CJK font stack; a "
                    "machine without any CJK font shows boxes (Debian: apt-get install fonts-noto-cjk).")
    parser.add_argument("records", metavar="RECORDS", help="corpus file or folder")
    parser.add_argument("--model", metavar="RUN", help="trained run directory (e.g. runs/emr_zh)")
    parser.add_argument("--gold", action="store_true", help="draw the records' own spans instead of predictions")
    parser.add_argument("-o", "--output", required=True, metavar="HTML", help="HTML file to write")
    parser.add_argument("--format", default="auto", metavar="FORMAT",
                        help="corpus format, or `annotate` for a `medner annotate` output written with --with-text "
                             "(default: auto = annotate output when RECORDS is one, else jsonl)")
    parser.add_argument("--encoding", default=None, help="text encoding (default: the reader's)")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N records (0 = all)")
    parser.add_argument("--lexicon", metavar="TSV", help="lexicon file for ICD linking of predictions")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default: 16)")
    parser.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    from medner.annotate import check_batch_size  # start-up time: torch only once the command runs
    from medner.corpus.predictions import read_predictions
    from medner.spacy.render import render_records

    if args.gold == bool(args.model):
        raise ConfigError("give exactly one of --model RUN (predictions) and --gold (the records' spans)",
                          field="--model", fix="add --model runs/emr_zh, or --gold")
    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {args.limit}", field="--limit", fix="use 0 for all records")
    check_batch_size(args.batch_size, "--batch-size")
    refuse_output_over_input(args.output, [*files_read(args.records, args.format),
                                           *(path for path in (args.model, args.lexicon) if path)], option="-o")
    records = read_predictions(args.records, args.format, encoding=args.encoding, require_text=True)
    if args.limit:
        records = itertools.islice(records, args.limit)
    if not args.gold:
        records = _predicted(records, args)
    result = render_records(records, title=f"medner: {Path(args.records).name}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, result.html)
    note = f", {result.hidden} overlapping spans not drawn" if result.hidden else ""
    print(f"{out}: {result.records} records, {result.entities} entities{note}")
    return 0


def _predicted(records, args: argparse.Namespace):
    """Records with the model's spans (and codes when --lexicon is given)."""
    from medner import load

    annotator = load(args.model, batch_size=args.batch_size, device=args.device, icd_lexicon=args.lexicon)
    return annotator.predict_records(records)
