"""Scoring the way the field scores: seqeval strict IOB2 over per-character tags, plus exact character spans.

Two views of the same predictions, both per type, micro and macro:

* ``micro`` / ``macro`` / ``per_type``: ``seqeval`` with ``mode="strict", scheme=IOB2`` over one BIO tag
  per character of each record. Flat tags cannot hold overlapping spans, so overlapping gold spans (and
  predicted ones, should a file hold any) are first resolved with ``keep_longest``; the numbers dropped are
  reported as ``overlaps_resolved`` (gold) and ``pred_overlaps_resolved``.
* ``span``: exact character-span matching computed on sets of ``(record, start, end, label)`` with *all*
  spans, nested ones included. On non-overlapping data both views agree.

Strict matters: the lenient (CoNLL) default of seqeval counts the ill-formed ``I-X I-X`` as a correct match
for ``B-X I-X``; strict counts only well-formed, exactly matching entities.

Conventions: values are fractions in [0, 1]; a ratio with a zero denominator is 0 (no warning); macro
averages P, R and F1 over every type seen in gold or predictions (as seqeval does); ``support`` is the
number of gold entities. Records are paired by ``id``; see :func:`score` for missing ids.
"""
from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections import Counter
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from medner.corpus import read_corpus
from medner.corpus.validate import RecordProblem, SpanProblem
from medner.errors import CorpusError, location
from medner.files import atomic_write_text
from medner.labels import resolve_overlaps, spans_to_tags
from medner.types import Record, Span

__all__ = ["score", "read_for_scoring", "format_table", "to_markdown", "write_report", "MISSING_POLICIES"]

log = logging.getLogger(__name__)

MISSING_POLICIES = ("raise", "empty")
_METRICS = ("precision", "recall", "f1")


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float | int]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}


def _macro(per_type: Mapping[str, Mapping[str, float]]) -> dict[str, float | int]:
    n = len(per_type)
    out: dict[str, float | int] = {m: (sum(v[m] for v in per_type.values()) / n if n else 0.0) for m in _METRICS}
    out["support"] = sum(int(v["support"]) for v in per_type.values())
    return out


def _index(records: Iterable[Record], where: str) -> dict[str, Record]:
    out: dict[str, Record] = {}
    for number, record in enumerate(records, 1):
        if record.id in out:
            raise CorpusError(f"record id {record.id!r} occurs twice (again as record {number})",
                              where=location(where, record=record.id), field="id",
                              fix="give every record a unique id")
        out[record.id] = record
    return out


def _check_spans(spans: Iterable[Span], length: int, where: str, *, gold: bool) -> None:
    for i, span in enumerate(spans):
        if not 0 <= span.start < span.end <= length:
            raise CorpusError(f"span ({span.start}, {span.end}, {span.label}) is empty or outside the text: "
                              f"expected 0 <= start < end <= {length} (len(text))", where=where,
                              field=f"spans[{i}]", fix="correct or remove this span in the gold file" if gold
                              else "predict on the same texts as the gold records")


def _unique(spans: Sequence[Span]) -> tuple[tuple[Span, ...], int]:
    """``spans`` without exact repeats (same start, end and label; the first kept), and the number dropped."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for span in spans:
        key = (span.start, span.end, span.label)
        if key not in seen:
            seen.add(key)
            out.append(span)
    return tuple(out), len(spans) - len(out)


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def read_for_scoring(path: str | PathLike, format: str = "jsonl", *, encoding: str | None = None,
                     show_text: bool = False) -> Iterator[Record]:
    """The records of a gold or predicted corpus, every span as it is: a malformed span or record raises (scores
    over part of a file would mislead), with a fix that cleans the file, since scoring has no ``on_error``."""
    try:
        yield from read_corpus(path, format=format, encoding=encoding, on_error="raise", show_text=show_text)
    except (SpanProblem, RecordProblem) as exc:
        raise CorpusError(exc.message, where=exc.where, field=exc.field,
                          fix=f"correct it in the file; scoring reads every span and record as they are (to drop the "
                              f"malformed ones first: `medner corpus convert {path} CLEAN.jsonl --format {format} "
                              f"--on-error skip`, then score CLEAN.jsonl)") from None


def score(gold: Iterable[Record], pred: Iterable[Record], *, on_missing: str = "raise",
          gold_where: str | PathLike = "gold", pred_where: str | PathLike = "predictions") -> dict[str, Any]:
    """Score predicted records against gold records, paired by ``id``.

    ``on_missing="raise"`` (default) raises :class:`CorpusError` naming the first gold id without a
    prediction; ``"empty"`` scores such records as having no predicted spans, with a warning. A predicted record
    with an empty text and no spans for a gold record with text counts as missing (a failed or cut-off
    prediction); with spans, an empty predicted text means "text not given". A predicted id that is not in
    gold, a duplicate id, a predicted record whose (non-empty) text differs from the gold text, or a span
    outside its text always raise. An exact duplicate span (same start, end and label) counts once and is
    reported as such (``gold_duplicates``, ``pred_duplicates``), not as an overlap.
    ``gold_where``/``pred_where`` name the inputs in messages (file paths).

    Returns a JSON-ready dict::

        {"micro": {precision, recall, f1, support}, "macro": {...}, "per_type": {type: {...}},
         "span": {"micro": ..., "macro": ..., "per_type": ...},
         "records": n, "overlaps_resolved": n_gold_dropped, "pred_overlaps_resolved": n_pred_dropped,
         "gold_duplicates": n, "pred_duplicates": n, "scheme": "IOB2", "mode": "strict"}
    """
    if on_missing not in MISSING_POLICIES:
        raise ValueError(f"on_missing must be one of {', '.join(MISSING_POLICIES)}, got {on_missing!r}")
    gold_by_id = _index(gold, str(gold_where))
    pred_by_id = _index(pred, str(pred_where))
    extra = [rid for rid in pred_by_id if rid not in gold_by_id]
    if extra:
        raise CorpusError(f"predicted record id {extra[0]!r} has no gold record ({len(extra)} such ids)",
                          where=location(pred_where, record=extra[0]), field="id",
                          fix="score predictions against the gold file they were made for")
    # a predicted record with an empty text and no spans, for a gold text that is not empty, is a prediction that
    # failed or was cut off: it counts as missing (not as a prediction of nothing)
    blank = [rid for rid, p in pred_by_id.items() if not p.text and not p.spans and gold_by_id[rid].text]
    absent = [rid for rid in gold_by_id if rid not in pred_by_id]
    missing = absent + blank
    if missing and on_missing == "raise":
        fix = ("predict every gold record, or pass on_missing='empty' (--allow-missing) to count missing records "
               "as predicting nothing")
        if absent:
            raise CorpusError(f"gold record id {absent[0]!r} has no prediction ({len(missing)} of "
                              f"{len(gold_by_id)} gold records missing)", where=location(gold_where, record=absent[0]),
                              field="id", fix=fix)
        raise CorpusError(f"predicted record {blank[0]!r} has an empty text but the gold text has "
                          f"{len(gold_by_id[blank[0]].text)} characters: a failed or cut-off prediction ({len(blank)} "
                          f"such records, {len(missing)} of {len(gold_by_id)} gold records missing)",
                          where=location(pred_where, record=blank[0]), field="text", fix=fix)
    if missing:
        log.warning("%d of %d gold records have no prediction (%d with an empty text); scored as predicting no spans",
                    len(missing), len(gold_by_id), len(blank))
    unpredicted = set(missing)

    y_true: list[list[str]] = []
    y_pred: list[list[str]] = []
    gold_set: set[tuple[int, int, int, str]] = set()
    pred_set: set[tuple[int, int, int, str]] = set()
    gold_dropped = pred_dropped = gold_repeats = pred_repeats = 0
    for index, (rid, g) in enumerate(gold_by_id.items()):
        p = None if rid in unpredicted else pred_by_id.get(rid)
        length = len(g.text)
        _check_spans(g.spans, length, location(gold_where, record=rid), gold=True)
        gold_spans, n = _unique(g.spans)
        gold_repeats += n
        pred_spans: tuple[Span, ...] = ()
        if p is not None:
            if p.text and p.text != g.text:
                raise CorpusError(f"predicted text differs from the gold text (lengths {len(p.text)} and {length}, "
                                  f"first difference at offset {_first_difference(p.text, g.text)})",
                                  where=location(pred_where, record=rid), field="text",
                                  fix="predict on the same texts as the gold records")
            _check_spans(p.spans, length, location(pred_where, record=rid), gold=False)
            pred_spans, n = _unique(p.spans)
            pred_repeats += n
        gold_set.update((index, s.start, s.end, s.label) for s in gold_spans)
        pred_set.update((index, s.start, s.end, s.label) for s in pred_spans)
        flat_gold, n = resolve_overlaps(gold_spans, "keep_longest")
        gold_dropped += n
        flat_pred, n = resolve_overlaps(pred_spans, "keep_longest")
        pred_dropped += n
        if length:
            y_true.append(spans_to_tags(flat_gold, length, "BIO"))
            y_pred.append(spans_to_tags(flat_pred, length, "BIO"))
    if gold_repeats:
        log.info("gold holds %d exact duplicate span(s) (same start, end and label): each counted once", gold_repeats)
    if pred_repeats:
        log.warning("%d exact duplicate predicted span(s) (same start, end and label as another): each counted once",
                    pred_repeats)
    if gold_dropped:
        log.info("resolved overlapping gold spans for the seqeval score: %d dropped (keep_longest)", gold_dropped)
    if pred_dropped:
        log.warning("predictions hold overlapping spans: %d dropped for the seqeval score", pred_dropped)

    result = _seqeval_scores(y_true, y_pred)
    result["span"] = _span_scores(gold_set, pred_set)
    result.update(records=len(gold_by_id), overlaps_resolved=gold_dropped, pred_overlaps_resolved=pred_dropped,
                  gold_duplicates=gold_repeats, pred_duplicates=pred_repeats, scheme="IOB2", mode="strict")
    return result


def _seqeval_scores(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, Any]:
    from seqeval.metrics import classification_report  # start-up time: seqeval imports scikit-learn
    from seqeval.scheme import IOB2

    has_entity = any(t != "O" for seq in (*y_true, *y_pred) for t in seq)
    if not has_entity:  # seqeval averages over an empty set of types and warns; define it as 0
        zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {"micro": dict(zero), "macro": dict(zero), "per_type": {}}
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)

    def convert(row: Mapping[str, Any]) -> dict[str, float | int]:
        return {"precision": float(row["precision"]), "recall": float(row["recall"]),
                "f1": float(row["f1-score"]), "support": int(row["support"])}

    per_type = {name: convert(row) for name, row in sorted(report.items()) if not name.endswith(" avg")}
    return {"micro": convert(report["micro avg"]), "macro": convert(report["macro avg"]), "per_type": per_type}


def _span_scores(gold: set[tuple], pred: set[tuple]) -> dict[str, Any]:
    n_gold = Counter(item[-1] for item in gold)
    n_pred = Counter(item[-1] for item in pred)
    n_tp = Counter(item[-1] for item in gold & pred)
    per_type = {t: _prf(n_tp[t], n_pred[t], n_gold[t]) for t in sorted(set(n_gold) | set(n_pred))}
    return {"micro": _prf(len(gold & pred), len(pred), len(gold)), "macro": _macro(per_type),
            "per_type": per_type}


# ---------------------------------------------------------------- reports

_COLUMNS = ("type", "P", "R", "F1", "support", "span P", "span R", "span F1", "span support")


def _rows(result: Mapping[str, Any]) -> list[tuple[str, ...]]:
    span = result.get("span", {})
    span_types = span.get("per_type", {})
    types = sorted(set(result.get("per_type", {})) | set(span_types))

    def cells(row: Mapping[str, Any] | None) -> tuple[str, ...]:
        if row is None:
            return ("-", "-", "-", "-")
        return tuple(f"{100 * row[m]:.2f}" for m in _METRICS) + (str(row["support"]),)

    rows = [(t,) + cells(result["per_type"].get(t)) + cells(span_types.get(t)) for t in types]
    for avg in ("micro", "macro"):
        rows.append((avg,) + cells(result.get(avg)) + cells(span.get(avg)))
    return rows


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int, left: bool) -> str:
    fill = " " * (width - _width(text))
    return text + fill if left else fill + text


def _summary(result: Mapping[str, Any]) -> str:
    return (f"{result.get('records', 0)} records; seqeval {result.get('mode', 'strict')} "
            f"{result.get('scheme', 'IOB2')} per character and exact character spans; percentages; "
            f"overlapping gold spans resolved (keep_longest) for seqeval: {result.get('overlaps_resolved', 0)}")


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text table: one row per type, then micro and macro; percentages with 2 decimals."""
    rows = _rows(result)
    widths = [max(_width(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        cells = [_pad(c, w, i == 0) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells[:5]) + "  |  " + "  ".join(cells[5:])

    rule = "-" * _width(line(_COLUMNS))
    body = [line(r) for r in rows]
    n_types = len(rows) - 2
    return "\n".join([_summary(result), line(_COLUMNS), rule, *body[:n_types], rule, *body[n_types:]])


def to_markdown(result: Mapping[str, Any]) -> str:
    """The same table as Markdown (GitHub pipe table), with a one-line summary above it."""
    rows = _rows(result)
    out = [_summary(result), "", "| " + " | ".join(_COLUMNS) + " |",
           "|" + "|".join([":---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|"]
    for row in rows:
        name = row[0] if row[0] not in ("micro", "macro") else f"**{row[0]}**"
        out.append("| " + " | ".join((name.replace("|", "\\|"),) + row[1:]) + " |")
    return "\n".join(out) + "\n"


def write_report(result: Mapping[str, Any], out: str | PathLike) -> tuple[Path, Path]:
    """Write ``result`` as JSON and Markdown; returns ``(json_path, markdown_path)``.

    ``out`` is a directory (existing, or given with a trailing slash) -> ``out/evaluation.json`` and
    ``out/evaluation.md``; otherwise a prefix -> ``<out>.json`` and ``<out>.md``. Parent folders are created.
    """
    raw = os.fspath(out)
    if os.path.isdir(raw) or raw.endswith(("/", os.sep)):
        base = Path(raw) / "evaluation"
    else:
        base = Path(raw)
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path = base.parent / (base.name + ".json")
    md_path = base.parent / (base.name + ".md")
    atomic_write_text(json_path, json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(md_path, to_markdown(result))
    log.info("wrote %s and %s", json_path, md_path)
    return json_path, md_path
