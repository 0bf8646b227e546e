"""`medner evaluate`: score predictions against gold (seqeval strict IOB2 + exact character spans), list the errors,
compare two systems."""
from __future__ import annotations

import argparse
import json
import logging

from medner.corpus import files_read
from medner.errors import ConfigError, CorpusError
from medner.files import refuse_output_over_input

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score predictions against gold records, list errors, compare two systems",
        description="Score predicted spans against gold spans, records paired by id: seqeval strict IOB2 over "
                    "per-character tags and exact character spans, per type, micro and macro; with an analysis of "
                    "the errors (categories, confusion by type, seen/unseen mentions, mention length). Predictions "
                    "are a corpus file or `medner annotate` output (its folder or one shard file). --compare A B "
                    "scores two systems and says, per type, whether their difference is more than noise.")
    parser.add_argument("--gold", required=True, metavar="PATH", help="gold corpus file or folder")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--pred", metavar="PATH",
                       help="predictions: a corpus file or folder, or `medner annotate` output (its --out folder or a "
                            "shards/part-*.jsonl|.parquet file)")
    which.add_argument("--compare", nargs=2, metavar=("PRED_A", "PRED_B"),
                       help="two prediction inputs (as --pred) on the same gold: per-type F1 of each and B - A with a "
                            "paired bootstrap confidence interval")
    parser.add_argument("--gold-format", default="jsonl", metavar="FORMAT",
                        help="corpus format of --gold (default: jsonl)")
    parser.add_argument("--pred-format", default="auto", metavar="FORMAT",
                        help="format of the predictions: auto (default: annotate output or jsonl, told apart), "
                             "annotate, or a corpus format")
    parser.add_argument("--encoding", default=None, help="text encoding of the corpus inputs (default: the reader's)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score gold records without a prediction as predicting nothing (default: error)")
    parser.add_argument("--label-map", action="append", default=[], metavar="SPEC",
                        help="rename labels on both sides before scoring: NAME=NEW, NAME= (drop NAME), or a YAML file "
                             "`label_map: {NAME: NEW or null}` (configs/label_maps/*.yaml); repeatable. Gold and "
                             "predictions that share no label are an error")
    analysis = parser.add_argument_group("error analysis")
    analysis.add_argument("--errors", metavar="OUT.jsonl",
                          help="write every false positive and false negative (category, gold and predicted span, "
                               "mention and context) as JSON lines; it holds record text")
    analysis.add_argument("--context", type=int, default=20, metavar="N",
                          help="characters of context either side of an error in --errors (default: 20)")
    analysis.add_argument("--train", action="append", default=[], metavar="PATH",
                          help="training corpus (repeatable): the report splits F1 by mentions seen there or not")
    analysis.add_argument("--train-format", default="jsonl", metavar="FORMAT",
                          help="corpus format of --train (default: jsonl)")
    analysis.add_argument("--no-plot", action="store_true", help="no per-type F1 bar chart beside the -o report")
    ab = parser.add_argument_group("comparison (--compare)")
    ab.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                    help="bootstrap resamples of the records (default: 1000)")
    ab.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: 0)")
    ab.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval (default: 0.95)")
    parser.add_argument("--show-text", action="store_true",
                        help="quote record text (mentions) in error messages, for debugging a corpus; off by default: "
                             "messages give offsets, lengths and hashes only")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("-o", "--output", metavar="REPORT_PREFIX",
                        help="also write REPORT_PREFIX.json, .md and .png (a folder gets evaluation.* or comparison.*)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from medner import analysis as an  # start-up time: on use only (numpy, seqeval)
    from medner.evaluate import format_table, pair_records, read_for_scoring, read_label_map, score_paired, write_report

    if args.context < 0:
        raise ConfigError(f"--context must be >= 0, got {args.context}", field="--context")
    if args.compare and (args.errors or args.train):
        raise ConfigError("--errors and --train go with --pred, not --compare", field="--compare",
                          fix="run `medner evaluate --pred` on each system for its errors")
    if args.bootstrap < 1 or not 0 < args.confidence < 1:
        raise ConfigError("--bootstrap must be >= 1 and --confidence in (0, 1)", field="--bootstrap")
    _refuse_outputs_over_inputs(args)
    label_map = read_label_map(args.label_map)
    gold = list(read_for_scoring(args.gold, args.gold_format, encoding=args.encoding, show_text=args.show_text))

    def paired(path: str):
        pred = read_for_scoring(path, args.pred_format, encoding=args.encoding, show_text=args.show_text)
        pairs = pair_records(gold, pred, on_missing="empty" if args.allow_missing else "raise",
                             gold_where=args.gold, pred_where=path, label_map=label_map)
        if not pairs.gold_labels:  # every figure would be 0 over nothing
            raise CorpusError("the gold has no span to score against" + (" after --label-map" if label_map else ""),
                              where=args.gold, field="--gold",
                              fix="give an annotated gold file (not an unlabelled one)" +
                                  (", and a --label-map that keeps its labels" if label_map else ""))
        return pairs

    if args.compare:
        a, b = (paired(path) for path in args.compare)
        result = an.compare(a, b, samples=args.bootstrap, seed=args.seed, confidence=args.confidence)
        names = (args.compare[0], args.compare[1])
        print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else an.format_compare(result, names))
        if args.output:
            an.write_comparison(result, args.output, names)
        return 0

    pairs = paired(args.pred)
    result = score_paired(pairs)
    train = None
    if args.train:
        train = an.training_mentions(r for path in args.train for r in read_for_scoring(
            path, args.train_format, encoding=args.encoding, show_text=args.show_text))
    result["analysis"] = an.analyse(pairs, train)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_table(result))
        print(an.format_analysis(result["analysis"]))
    if args.errors:
        rows = an.classify_errors(pairs, context=args.context)
        an.write_errors(rows, args.errors)
        log.info("wrote %d errors to %s", len(rows), args.errors)
    if args.output:
        write_report(result, args.output, plot=not args.no_plot)
    return 0


def _refuse_outputs_over_inputs(args: argparse.Namespace) -> None:
    """No report file (-o PREFIX's .json/.md/.png) nor --errors file may be one of the files read."""
    from medner.evaluate import report_files  # start-up time: on use only

    inputs = [*files_read(args.gold, args.gold_format),
              *(read for path in (args.compare or [args.pred]) if path for read in files_read(path, args.pred_format)),
              *(read for path in args.train or [] for read in files_read(path, args.train_format)),
              *(args.label_map or [])]
    if args.errors:
        refuse_output_over_input(args.errors, inputs, option="--errors")
    if args.output:
        for path in report_files(args.output, "comparison" if args.compare else "evaluation", create=False):
            refuse_output_over_input(path, inputs, option="-o")
