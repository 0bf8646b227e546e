"""Weak supervision: labelling functions (lexicons, rules) -> spans; aggregation; quality report.

    from medner.weak import WeakPipeline, weak_report
    pipeline = WeakPipeline.from_config("configs/weak_labels/ccks2019.yaml")
    result = pipeline.label(records)                    # fit the label model on these records, no gold
    result.records                                      # records whose spans are the weak spans (score, code)
    report = weak_report(records, result.outputs, {"dawid_skene": [r.spans for r in result.records]})

Every labelling function follows one contract, ``find_spans(record) -> Iterable[Span]`` (abstain by yielding
nothing). Never imports torch.
"""
from medner.weak.aggregate import (AGGREGATORS, DawidSkene, DSResult, MajorityVote, Outputs, aggregate, apply_functions,
                                   dawid_skene, make_aggregator)
from medner.weak.base import LabellingFunction, LexiconLF, RegexLF, leftmost_longest
from medner.weak.extent import ExtentLF
from medner.weak.pipeline import FUNCTION_KINDS, WeakConfig, WeakPipeline, WeakResult, read_weak_config
from medner.weak.report import report_markdown, weak_report, write_weak_report

__all__ = [
    "AGGREGATORS", "DSResult", "DawidSkene", "ExtentLF", "FUNCTION_KINDS", "LabellingFunction", "LexiconLF", "MajorityVote",
    "Outputs", "RegexLF", "WeakConfig", "WeakPipeline", "WeakResult", "aggregate", "apply_functions", "dawid_skene",
    "leftmost_longest", "make_aggregator", "read_weak_config", "report_markdown", "weak_report", "write_weak_report",
]
