"""Corpus statistics: sizes, entities per type, overlapping span pairs, record-length percentiles.

Lengths are in characters (code points). Percentiles use the nearest-rank method
(``p``-th percentile = the ``ceil(p/100 * n)``-th smallest value), so every value is a real record length.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from medner.types import Record, Span

PERCENTILES = (50, 90, 99)
DUPLICATE_EXAMPLES = 3  # repeated ids shown by name (ids, never text)


def overlapping_pairs(spans: Sequence[Span]) -> int:
    """Number of unordered pairs of spans sharing at least one character (identical spans count)."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    count = 0
    for i, span in enumerate(ordered):
        for other in ordered[i + 1:]:
            if other.start >= span.end:
                break
            if other.end > span.start:
                count += 1
    return count


def percentiles(values: Sequence[int], points: Sequence[int] = PERCENTILES) -> dict[str, int | None]:
    """``{"p50": .., "p90": .., "p99": .., "max": ..}`` by nearest rank; ``None`` for no values."""
    ordered = sorted(values)
    out: dict[str, int | None] = {}
    for p in points:
        out[f"p{p}"] = ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1] if ordered else None
    out["max"] = ordered[-1] if ordered else None
    return out


def corpus_stats(records: Iterable[Record]) -> dict[str, Any]:
    """One pass over ``records``; returns a JSON-ready dict.

    Keys: records, characters, entities, per_type (label -> count, most frequent first),
    overlapping_pairs, records_with_overlap, records_without_entities, empty_records,
    length_percentiles (record length in characters), entity_length_percentiles, duplicate_ids (records whose id
    an earlier record has; ids compared as strings, so 1 and "1" are the same), ids_repeated (how many ids),
    duplicate_id_examples (the first few repeated ids).
    """
    n_records = characters = entities = pairs = with_overlap = without = empty = 0
    per_type: Counter[str] = Counter()
    ids: Counter[str] = Counter()
    lengths: list[int] = []
    entity_lengths: list[int] = []
    for record in records:
        n_records += 1
        ids[str(record.id)] += 1
        characters += len(record.text)
        lengths.append(len(record.text))
        empty += not record.text
        entities += len(record.spans)
        without += not record.spans
        per_type.update(span.label for span in record.spans)
        entity_lengths.extend(span.end - span.start for span in record.spans)
        found = overlapping_pairs(record.spans)
        pairs += found
        with_overlap += bool(found)
    return {
        "records": n_records,
        "characters": characters,
        "entities": entities,
        "per_type": dict(sorted(per_type.items(), key=lambda kv: (-kv[1], kv[0]))),
        "overlapping_pairs": pairs,
        "records_with_overlap": with_overlap,
        "records_without_entities": without,
        "empty_records": empty,
        "length_percentiles": percentiles(lengths),
        "entity_length_percentiles": percentiles(entity_lengths),
        **duplicate_ids(ids),
    }


def duplicate_ids(ids: Counter[str]) -> dict[str, Any]:
    """``duplicate_ids`` (records repeating an earlier id), ``ids_repeated``, ``duplicate_id_examples`` (the first
    repeated ids, in reading order)."""
    repeated = [rid for rid, count in ids.items() if count > 1]
    return {"duplicate_ids": sum(ids[rid] - 1 for rid in repeated), "ids_repeated": len(repeated),
            "duplicate_id_examples": repeated[:DUPLICATE_EXAMPLES]}


def format_stats(stats: dict[str, Any]) -> str:
    """A plain-text table of :func:`corpus_stats` output (no record text)."""
    def pct(d: dict[str, int | None]) -> str:
        return "  ".join(f"{k}={'-' if v is None else v}" for k, v in d.items())

    lines = [
        f"records             {stats['records']:>10,}",
        f"characters          {stats['characters']:>10,}",
        f"entities            {stats['entities']:>10,}",
        f"overlapping pairs   {stats['overlapping_pairs']:>10,}  (in {stats['records_with_overlap']:,} records)",
        f"without entities    {stats['records_without_entities']:>10,}",
        f"empty records       {stats['empty_records']:>10,}",
        f"duplicate ids       {stats['duplicate_ids']:>10,}{_repeated(stats)}",
        f"record length       {pct(stats['length_percentiles'])}",
        f"entity length       {pct(stats['entity_length_percentiles'])}",
    ]
    if stats["per_type"]:
        width = max(len(label) for label in stats["per_type"])
        total = stats["entities"] or 1
        lines.append("entities per type")
        lines += [f"  {label:<{width}}  {count:>8,}  {100 * count / total:5.1f}%"
                  for label, count in stats["per_type"].items()]
    return "\n".join(lines)


def _repeated(stats: dict[str, Any]) -> str:
    if not stats["duplicate_ids"]:
        return ""
    shown = ", ".join(repr(rid if len(rid) <= 40 else rid[:37] + "...") for rid in stats["duplicate_id_examples"])
    return f"  ({stats['ids_repeated']:,} id(s) repeated, first: {shown})"
