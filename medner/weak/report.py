"""Quality report of labelling functions and aggregated weak labels: Markdown + JSON.

For every source (each labelling function, and each aggregator's output) and every label it emits:

* ``precision`` / ``recall`` / ``f1`` / ``tp`` against gold, **exact character spans** (start, end and label
  equal), where the records carry gold spans (``None`` otherwise); ``support`` is the number of gold spans
  of that label, ``spans`` the number of spans the source emitted;
* ``coverage``: the fraction of records with at least one span of the source, and of characters inside one;
* ``overlaps``: spans of the source that overlap a span of another labelling function; ``conflicts``: spans
  that overlap a span of another labelling function with a *different label* (skweak's definitions; for
  aggregated outputs, overlaps and conflicts are not defined and are left out).

With a fitted Dawid-Skene model, its estimated per-source reliability (precision and recall per label,
estimated without gold) is added so it can be read next to the measured numbers.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from medner.files import atomic_write_text
from medner.types import Record, Span
from medner.weak.aggregate import Outputs

__all__ = ["weak_report", "report_markdown", "write_weak_report"]


def _unique(spans: Sequence[Span]) -> set[tuple[int, int, str]]:
    """The distinct ``(start, end, label)`` of ``spans``: a span given twice is one entity, matched once."""
    return {(s.start, s.end, s.label) for s in spans}


def _prf(tp: int, n_pred: int, n_gold: int, has_gold: bool) -> dict[str, Any]:
    if not has_gold:
        return {"precision": None, "recall": None, "f1": None, "tp": None, "support": None, "spans": n_pred}
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "support": n_gold,
            "spans": n_pred}


def _overlaps(spans: Sequence[Span], others: Sequence[Span]) -> tuple[int, int, Counter, Counter]:
    """(spans overlapping another LF, spans conflicting with one, both by label). ``others`` sorted by start."""
    n_overlap = n_conflict = 0
    by_label_o: Counter = Counter()
    by_label_c: Counter = Counter()
    for s in spans:
        hit = conflict = False
        for o in others:
            if o.start >= s.end:
                break
            if o.end > s.start:
                hit = True
                if o.label != s.label:
                    conflict = True
                    break
        if hit:
            n_overlap += 1
            by_label_o[s.label] += 1
        if conflict:
            n_conflict += 1
            by_label_c[s.label] += 1
    return n_overlap, n_conflict, by_label_o, by_label_c


def weak_report(records: Sequence[Record], outputs: Sequence[Outputs],
                aggregated: Mapping[str, Sequence[Sequence[Span]]] | None = None, *,
                reliability: Mapping[str, Any] | None = None, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict.

    ``records``: the input records; their spans are gold (an input without any span has no gold, and P/R/F1
    are None). ``outputs``: per record, the spans of every labelling function. ``aggregated``: aggregator name
    -> per record, its weak spans. ``labels``: the label order in tables (default: sorted, gold first).
    """
    if len(records) != len(outputs):
        raise ValueError(f"expected one output per record, got {len(outputs)} for {len(records)} records")
    aggregated = dict(aggregated or {})
    for name, spans in aggregated.items():
        if len(spans) != len(records):
            raise ValueError(f"aggregator {name}: expected {len(records)} span lists, got {len(spans)}")
    has_gold = any(r.spans for r in records)
    gold_counts = Counter(label for r in records for _, _, label in _unique(r.spans))  # a duplicate counts once
    n_chars = sum(len(r.text) for r in records)
    lf_names: list[str] = []
    for out in outputs:
        for name in out:
            if name not in lf_names:
                lf_names.append(name)
    emitted: set[str] = set(gold_counts)
    sources: dict[str, dict[str, Any]] = {}

    def measure(name: str, kind: str, per_record: Sequence[Sequence[Span]], others_of) -> None:
        tp: Counter = Counter()
        n_pred: Counter = Counter()
        overl: Counter = Counter()
        confl: Counter = Counter()
        records_hit = chars = 0
        total_o = total_c = 0
        for i, (record, spans) in enumerate(zip(records, per_record)):
            gold = _unique(record.spans)
            covered = [False] * len(record.text)
            for start, end, label in _unique(spans):
                n_pred[label] += 1
                emitted.add(label)
                if (start, end, label) in gold:
                    tp[label] += 1
                for c in range(start, end):
                    covered[c] = True
            if spans:
                records_hit += 1
            chars += sum(covered)
            if others_of is not None:
                o, c, bo, bc = _overlaps(spans, others_of(i))
                total_o += o
                total_c += c
                overl.update(bo)
                confl.update(bc)
        labels_here = sorted(set(n_pred) | (set(gold_counts) if kind == "aggregate" else set()))
        per_type = {}
        for label in labels_here:
            row = _prf(tp[label], n_pred[label], gold_counts[label], has_gold)
            if others_of is not None:
                row["overlaps"] = overl[label]
                row["conflicts"] = confl[label]
            per_type[label] = row
        n_all = sum(n_pred.values())
        micro_gold = sum(gold_counts[label] for label in labels_here)
        item: dict[str, Any] = {
            "kind": kind,
            "spans": n_all,
            "coverage": {"records": round(records_hit / len(records), 4) if records else 0.0,
                         "characters": round(chars / n_chars, 4) if n_chars else 0.0},
            "micro": _prf(sum(tp.values()), n_all, micro_gold, has_gold),
            "per_type": per_type,
        }
        if others_of is not None:
            item["overlaps"] = total_o
            item["conflicts"] = total_c
        sources[name] = item

    for name in lf_names:
        def others_of(i: int, name: str = name) -> list[Span]:
            return sorted((s for other, spans in outputs[i].items() if other != name for s in spans),
                          key=lambda s: (s.start, s.end))
        measure(name, "function", [out.get(name, []) for out in outputs], others_of)
    for name, per_record in aggregated.items():
        measure(name, "aggregate", per_record, None)
    order = list(labels) if labels else sorted(gold_counts, key=lambda x: (-gold_counts[x], x))
    order += sorted(emitted - set(order))
    return {
        "records": len(records),
        "characters": n_chars,
        "gold": has_gold,
        "match": "exact character span and label",
        "gold_spans": {label: gold_counts[label] for label in order if gold_counts[label]},
        "labels": order,
        "sources": sources,
        "reliability": dict(reliability) if reliability else None,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report_markdown(report: Mapping[str, Any], title: str = "Weak supervision report") -> str:
    """Markdown: a summary table per source (micro), then one table per label (every source emitting it)."""
    lines = [f"# {title}", "",
             f"{report['records']} records, {report['characters']} characters; "
             + ("gold spans: " + ", ".join(f"{k} {v}" for k, v in report["gold_spans"].items())
                if report["gold"] else "no gold spans (precision/recall not available)")
             + f". Match: {report['match']}.", ""]
    lines += ["## Sources (micro over their labels)", "",
              "| source | kind | spans | P | R | F1 | records covered | chars covered | overlaps | conflicts |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, item in report["sources"].items():
        m = item["micro"]
        lines.append(f"| {name} | {item['kind']} | {item['spans']} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | "
                     f"{_fmt(m['f1'])} | {_fmt(item['coverage']['records'])} | "
                     f"{_fmt(item['coverage']['characters'])} | "
                     f"{_fmt(item.get('overlaps'))} | {_fmt(item.get('conflicts'))} |")
    for label in report["labels"]:
        rows = [(name, item["per_type"][label]) for name, item in report["sources"].items()
                if label in item["per_type"]]
        if not rows:
            continue
        support = report["gold_spans"].get(label)
        lines += ["", f"## {label}" + (f" (gold {support})" if support else ""), "",
                  "| source | spans | P | R | F1 | overlaps | conflicts |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, row in rows:
            lines.append(f"| {name} | {row['spans']} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | "
                         f"{_fmt(row['f1'])} | {_fmt(row.get('overlaps'))} | {_fmt(row.get('conflicts'))} |")
    rel = report.get("reliability")
    if rel:
        lines += ["", "## Estimated reliability (Dawid-Skene, no gold; per character)", "",
                  "| source | label | est. precision | est. recall |", "|---|---|---:|---:|"]
        for name, per_label in rel.items():
            for label, v in per_label.items():
                lines.append(f"| {name} | {label} | {_fmt(v['precision'])} | {_fmt(v['recall'])} |")
    return "\n".join(lines) + "\n"


def report_paths(out: str | PathLike) -> tuple[Path, Path]:
    """``<out>.md`` and ``<out>.json`` (``out`` without suffix, or with ``.md``/``.json``; other dots are kept:
    ``weak.v2`` gives ``weak.v2.md``)."""
    base = str(out)
    for suffix in (".md", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return Path(base + ".md"), Path(base + ".json")


def write_weak_report(report: Mapping[str, Any], out: str | PathLike) -> tuple[Path, Path]:
    """Write :func:`report_paths` of ``out`` (each atomically); returns them."""
    md, js = report_paths(out)
    md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md, report_markdown(report))
    atomic_write_text(js, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return md, js
