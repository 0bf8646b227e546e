"""`medner weak`: weak labels from lexicons and rules, and their quality report.

    medner weak label  --config configs/weak_labels/ccks2019.yaml INPUT --format ccks2019 -o weak.jsonl [--aggregator A]
    medner weak report --config configs/weak_labels/ccks2019.yaml INPUT --format ccks2019 [--json] [-o PREFIX]
"""
from __future__ import annotations

import argparse
import json
import logging

from medner.cli import add_on_error_option
from medner.corpus import files_read, formats, read_corpus, write_jsonl
from medner.errors import CorpusError
from medner.files import refuse_output_over_input
from medner.weak.aggregate import AGGREGATORS
from medner.weak.config import WeakConfig, read_weak_config
from medner.weak.pipeline import WeakPipeline, config_inputs
from medner.weak.report import report_markdown, report_paths, weak_report, write_weak_report

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("weak", help="weak labels from lexicons and rules, and their report",
                                  description=__doc__.splitlines()[0])
    sub = group.add_subparsers(dest="weak_command", metavar="ACTION")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("input", help="corpus file or folder")
        p.add_argument("--config", required=True, help="weak-labelling config (YAML), e.g. configs/weak_labels/ccks2019.yaml")
        p.add_argument("--format", default="jsonl", choices=formats(), help="corpus format (default jsonl)")
        p.add_argument("--encoding", default=None,
                       help="text encoding (default: detected: a BOM, UTF-16, UTF-8, else GB18030)")
        p.add_argument("--aggregator", choices=AGGREGATORS, default=None,
                       help="aggregation method (default: the config's `aggregator.method`)")
        add_on_error_option(p)

    label = sub.add_parser("label", help="write aggregated weak spans (with codes and confidences) as jsonl")
    common(label)
    label.add_argument("-o", "--output", required=True, help="jsonl file to write")
    label.set_defaults(func=run_label)

    report = sub.add_parser("report", help="per source and aggregated: P/R/F1 vs gold, coverage, overlaps, conflicts")
    common(report)
    report.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    report.add_argument("-o", "--output", default=None, help="also write PREFIX.md and PREFIX.json")
    report.set_defaults(func=run_report)


def _records(args: argparse.Namespace) -> list:
    records = list(read_corpus(args.input, args.format, encoding=args.encoding, on_error=args.on_error))
    if not records:
        raise CorpusError("no records", where=args.input, fix="check the path and --format")
    if not any(r.text for r in records):
        raise CorpusError(f"all {len(records)} records have an empty text: nothing to label", where=args.input,
                          fix="check --format (does it read the text field?) and the input file")
    return records


def _inputs(args: argparse.Namespace) -> tuple[WeakConfig, list]:
    """The config, and every file the command reads: the corpus, the config and the lexicons it names."""
    config = read_weak_config(args.config)
    return config, [*files_read(args.input, args.format), *config_inputs(config)]


def run_label(args: argparse.Namespace) -> int:
    config, inputs = _inputs(args)
    refuse_output_over_input(args.output, inputs)
    pipeline = WeakPipeline(config)
    records = _records(args)
    result = pipeline.label(records, method=args.aggregator)
    name = result.aggregator.name
    out = [r.__class__(r.id, r.text, r.spans, {**dict(r.meta), "weak": {"aggregator": name,
                                                                        "config": str(args.config)}})
           for r in result.records]
    n = write_jsonl(out, args.output)
    spans = sum(len(r.spans) for r in out)
    print(f"{args.output}: {n} records, {spans} weak spans ({name}, {len(pipeline.functions)} labelling functions)")
    return 0


def run_report(args: argparse.Namespace) -> int:
    config, inputs = _inputs(args)
    if args.output:
        for path in report_paths(args.output):
            refuse_output_over_input(path, inputs, option="-o")
    pipeline = WeakPipeline(config)
    records = _records(args)
    outputs = pipeline.outputs(records)
    methods = [args.aggregator] if args.aggregator else list(AGGREGATORS)
    aggregated = {}
    reliability = None
    for method in methods:
        result = pipeline.label(records, method=method, outputs=outputs)
        aggregated[f"weak:{result.aggregator.name}"] = [r.spans for r in result.records]
        if hasattr(result.aggregator, "reliability"):
            reliability = result.aggregator.reliability()
    report = weak_report(records, outputs, aggregated, reliability=reliability, labels=pipeline.config.labels)
    gold_labels = {s.label for r in records for s in r.spans}
    if gold_labels and not gold_labels & set(pipeline.config.labels):
        log.warning("the gold spans' labels and the weak config's labels have none in common, so every precision "
                    "and recall is 0; is %s annotated with %s?", args.input, ", ".join(pipeline.config.labels))
    report["config"] = str(args.config)
    report["input"] = str(args.input)
    if args.output:
        md, js = write_weak_report(report, args.output)
        log.info("wrote %s and %s", md, js)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(report_markdown(report), end="")
    return 0
