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
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from medner.config import read_yaml
from medner.corpus.predictions import (PREDICTION_FORMATS, TEXT_HASH_FIELD, is_annotate_output, read_predictions,
                                      text_sha256)
from medner.corpus.validate import RecordProblem, SpanProblem, label_name
from medner.errors import ConfigError, CorpusError, location
from medner.files import atomic_write, atomic_write_text
from medner.labels import resolve_overlaps, spans_to_tags
from medner.types import Record, Span

__all__ = ["score", "score_paired", "pair_records", "Pair", "Paired", "read_for_scoring", "read_label_map",
           "check_label_sets", "format_table", "to_markdown", "write_report", "MISSING_POLICIES"]

log = logging.getLogger(__name__)

MISSING_POLICIES = ("raise", "empty")
_METRICS = ("precision", "recall", "f1")


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float | int]:
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
    over part of a file would mislead), with a fix that cleans the file, since scoring has no ``on_error``.

    ``format`` is a corpus format, or ``"annotate"`` / ``"auto"`` for `medner annotate` output (a folder or a shard
    file; ``auto`` tells it from the project's jsonl, see :mod:`medner.corpus.predictions`)."""
    try:
        yield from read_predictions(path, format, encoding=encoding, on_error="raise", show_text=show_text)
    except (SpanProblem, RecordProblem) as exc:
        if format != "annotate" and is_annotate_output(path):
            raise CorpusError(exc.message, where=exc.where, field=exc.field,
                              fix="this is `medner annotate` output: read it with --pred-format auto (the default) "
                                  "or annotate") from None
        corpus_format = "jsonl" if format in PREDICTION_FORMATS else format  # convert reads corpus formats only
        raise CorpusError(exc.message, where=exc.where, field=exc.field,
                          fix=f"correct it in the file; scoring reads every span and record as they are (to drop the "
                              f"malformed ones first: `medner corpus convert {path} CLEAN.jsonl --format "
                              f"{corpus_format} --on-error skip`, then score CLEAN.jsonl)") from None


def read_label_map(specs: Sequence[str]) -> dict[str, str | None]:
    """A label map from ``NAME=NEW`` pairs (``NAME=`` drops ``NAME``) and YAML files holding ``label_map: {NAME: NEW
    or null}`` (``configs/label_maps/*.yaml``) or such a mapping alone; later specs win."""
    mapping: dict[str, str | None] = {}
    for spec in specs:
        if os.path.isfile(spec) or spec.endswith((".yaml", ".yml", ".json")):
            if not os.path.isfile(spec):
                raise ConfigError("no such label map file", where=spec, field="--label-map", fix="check the path")
            tree = read_yaml(spec)
            tree = tree.get("label_map", tree) if isinstance(tree, dict) else tree
            if not isinstance(tree, dict) or not all(isinstance(v, (str, type(None))) for v in tree.values()):
                raise ConfigError("expected a mapping `label_map: {label: new label or null}`", where=spec,
                                  field="--label-map", fix="see configs/label_maps/")
            mapping.update({str(k): (v or None) for k, v in tree.items()})
        elif "=" in spec:
            old, new = (part.strip() for part in spec.split("=", 1))
            if not old:
                raise ConfigError(f"empty label name in {spec!r}", field="--label-map", fix="write NAME=NEW or NAME=")
            mapping[old] = new or None
        else:
            raise ConfigError(f"expected NAME=NEW, NAME= or a YAML file, got {spec!r}", field="--label-map",
                              fix="e.g. --label-map dis=疾病和诊断 --label-map sym=, or --label-map "
                                  "configs/label_maps/cmeee_to_ccks2019.yaml")
    return mapping


def _mapped(spans: Sequence[Span], label_map: Mapping[str, str | None] | None) -> tuple[list[Span], int, int]:
    """``spans`` with ``label_map`` applied: (spans, number renamed, number dropped)."""
    if not label_map:
        return list(spans), 0, 0
    out, renamed, dropped = [], 0, 0
    for span in spans:
        if span.label not in label_map:
            out.append(span)
        elif label_map[span.label] is None:
            dropped += 1
        else:
            renamed += span.label != label_map[span.label]
            out.append(replace(span, label=label_map[span.label]))
    return out, renamed, dropped


def _label_list(labels: Counter) -> str:
    return ", ".join(f"{label_name(k)} ({labels[k]})" for k in sorted(labels))


def check_label_sets(gold: Counter, pred: Counter, *, gold_where: str | PathLike = "gold",
                     pred_where: str | PathLike = "predictions") -> None:
    """Gold and predicted label sets (span counts by label) must meet: no shared label raises (a table of zeros
    would say nothing); labels on one side only are a warning that lists them."""
    if gold and pred and not set(gold) & set(pred):
        raise CorpusError(f"gold and predictions share no label: gold has {_label_list(gold)}; predictions have "
                          f"{_label_list(pred)}", where=f"{gold_where} vs {pred_where}", field="label",
                          fix="score predictions of a model trained for the gold labels, or map names with "
                              "--label-map PRED=GOLD (repeatable; NAME= drops a label; or a YAML file such as "
                              "configs/label_maps/cmeee_to_ccks2019.yaml)")
    gold_only, pred_only = set(gold) - set(pred), set(pred) - set(gold)
    if gold and pred and (gold_only or pred_only):
        log.warning("labels on one side only score 0: only in gold: %s; only in predictions: %s (map names with "
                    "--label-map, drop one with --label-map NAME=)",
                    _label_list(Counter({k: gold[k] for k in gold_only})) or "none",
                    _label_list(Counter({k: pred[k] for k in pred_only})) or "none")


@dataclass(frozen=True)
class Pair:
    """A gold record and its prediction: ``text`` is the gold text; spans are label-mapped, exact repeats dropped;
    ``missing``: no prediction (scored as predicting nothing)."""

    id: str
    text: str
    gold: tuple[Span, ...]
    pred: tuple[Span, ...]
    missing: bool = False


@dataclass
class Paired:
    """Records paired for scoring, with what pairing counted."""

    pairs: list[Pair]
    gold_repeats: int = 0
    pred_repeats: int = 0
    gold_labels: Counter = field(default_factory=Counter)
    pred_labels: Counter = field(default_factory=Counter)


def _check_text(p: Record, g: Record, where: str) -> None:
    """The prediction was made on the gold text: its text, else its text hash, else its spans' mentions."""
    length = len(g.text)
    fix = "predict on the same texts as the gold records"
    if p.text:
        if p.text != g.text:
            raise CorpusError(f"predicted text differs from the gold text (lengths {len(p.text)} and {length}, "
                              f"first difference at offset {_first_difference(p.text, g.text)})", where=where,
                              field="text", fix=fix)
        return
    digest = p.meta.get(TEXT_HASH_FIELD)
    if digest is not None and digest != text_sha256(g.text):
        raise CorpusError(f"the predicted record's text hash differs from the gold text's (gold length {length})",
                          where=where, field=TEXT_HASH_FIELD, fix=fix)
    for start, end, mention in p.meta.get("mentions", ()):
        if end <= length and g.text[start:end] != mention:
            raise CorpusError(f"span ({start}, {end}): the predicted mention is not the gold text at those offsets",
                              where=where, field="spans", fix=fix)


def pair_records(gold: Iterable[Record], pred: Iterable[Record], *, on_missing: str = "raise",
                 gold_where: str | PathLike = "gold", pred_where: str | PathLike = "predictions",
                 label_map: Mapping[str, str | None] | None = None, check_labels: bool = True) -> Paired:
    """Pair predicted records with gold records by ``id`` and check them (see :func:`score` for the rules)."""
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
    # failed or was cut off: it counts as missing (not as a prediction of nothing); annotate output without text
    # says so (`text_absent`), and its empty text means "not given"
    blank = [rid for rid, p in pred_by_id.items()
             if not p.text and not p.spans and gold_by_id[rid].text and not p.meta.get("text_absent")]
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

    paired = Paired([])
    mapped = [0, 0, 0, 0]  # gold renamed, gold dropped, predicted renamed, predicted dropped
    seen: set[str] = set()  # labels before mapping, both sides
    for rid, g in gold_by_id.items():
        p = None if rid in unpredicted else pred_by_id.get(rid)
        seen.update(s.label for s in g.spans)
        length = len(g.text)
        _check_spans(g.spans, length, location(gold_where, record=rid), gold=True)
        spans, renamed, dropped = _mapped(g.spans, label_map)
        mapped[0] += renamed
        mapped[1] += dropped
        gold_spans, n = _unique(spans)
        paired.gold_repeats += n
        pred_spans: tuple[Span, ...] = ()
        if p is not None:
            where = location(pred_where, record=rid)
            _check_text(p, g, where)
            _check_spans(p.spans, length, where, gold=False)
            seen.update(s.label for s in p.spans)
            spans, renamed, dropped = _mapped(p.spans, label_map)
            mapped[2] += renamed
            mapped[3] += dropped
            pred_spans, n = _unique(spans)
            paired.pred_repeats += n
        paired.gold_labels.update(s.label for s in gold_spans)
        paired.pred_labels.update(s.label for s in pred_spans)
        paired.pairs.append(Pair(rid, g.text, gold_spans, pred_spans, missing=p is None))
    if label_map:
        log.info("label map: gold %d spans renamed, %d dropped; predictions %d renamed, %d dropped", *mapped)
        unused = sorted(set(label_map) - seen)
        if unused:
            log.warning("label map: %d of its labels occur on neither side (misspelt?): %s", len(unused),
                        ", ".join(label_name(label) for label in unused))
    if check_labels:
        check_label_sets(paired.gold_labels, paired.pred_labels, gold_where=gold_where, pred_where=pred_where)
    return paired


def flat(spans: Sequence[Span]) -> tuple[list[Span], int]:
    """The spans seqeval scores: overlaps resolved with ``keep_longest`` (and the number dropped)."""
    return resolve_overlaps(spans, "keep_longest")


def score(gold: Iterable[Record], pred: Iterable[Record], *, on_missing: str = "raise",
          gold_where: str | PathLike = "gold", pred_where: str | PathLike = "predictions",
          label_map: Mapping[str, str | None] | None = None, check_labels: bool = True) -> dict[str, Any]:
    """Score predicted records against gold records, paired by ``id``.

    ``on_missing="raise"`` (default) raises :class:`CorpusError` naming the first gold id without a
    prediction; ``"empty"`` scores such records as having no predicted spans, with a warning. A predicted record
    with an empty text and no spans for a gold record with text counts as missing (a failed or cut-off
    prediction); with spans, or read from annotate output without its text (``meta["text_absent"]``), an empty
    predicted text means "text not given". A predicted id that is not in gold, a duplicate id, a predicted record
    whose (non-empty) text differs from the gold text, whose ``meta["text_sha256"]`` is not the gold text's or whose
    span mentions (``meta["mentions"]``) are not the gold text at their offsets, or a span outside its text always
    raise. An exact duplicate span (same start, end and label) counts once and is reported as such
    (``gold_duplicates``, ``pred_duplicates``), not as an overlap. ``label_map`` renames labels on both sides
    (``None``: drop the label; :func:`read_label_map`); then, with ``check_labels``, gold and predictions that share
    no label raise and labels on one side only are a warning (:func:`check_label_sets`).
    ``gold_where``/``pred_where`` name the inputs in messages (file paths).

    Returns a JSON-ready dict::

        {"micro": {precision, recall, f1, support}, "macro": {...}, "per_type": {type: {...}},
         "span": {"micro": ..., "macro": ..., "per_type": ...},
         "records": n, "overlaps_resolved": n_gold_dropped, "pred_overlaps_resolved": n_pred_dropped,
         "gold_duplicates": n, "pred_duplicates": n, "scheme": "IOB2", "mode": "strict"}
    """
    return score_paired(pair_records(gold, pred, on_missing=on_missing, gold_where=gold_where, pred_where=pred_where,
                                     label_map=label_map, check_labels=check_labels))


def score_paired(paired: Paired) -> dict[str, Any]:
    """The scores of :func:`score` for records already paired by :func:`pair_records`."""
    y_true: list[list[str]] = []
    y_pred: list[list[str]] = []
    gold_set: set[tuple[int, int, int, str]] = set()
    pred_set: set[tuple[int, int, int, str]] = set()
    gold_dropped = pred_dropped = 0
    for index, pair in enumerate(paired.pairs):
        gold_set.update((index, s.start, s.end, s.label) for s in pair.gold)
        pred_set.update((index, s.start, s.end, s.label) for s in pair.pred)
        flat_gold, n = flat(pair.gold)
        gold_dropped += n
        flat_pred, n = flat(pair.pred)
        pred_dropped += n
        if pair.text:
            y_true.append(spans_to_tags(flat_gold, len(pair.text), "BIO"))
            y_pred.append(spans_to_tags(flat_pred, len(pair.text), "BIO"))
    if paired.gold_repeats:
        log.info("gold holds %d exact duplicate span(s) (same start, end and label): each counted once",
                 paired.gold_repeats)
    if paired.pred_repeats:
        log.warning("%d exact duplicate predicted span(s) (same start, end and label as another): each counted once",
                    paired.pred_repeats)
    if gold_dropped:
        log.info("resolved overlapping gold spans for the seqeval score: %d dropped (keep_longest)", gold_dropped)
    if pred_dropped:
        log.warning("predictions hold overlapping spans: %d dropped for the seqeval score", pred_dropped)

    result = _seqeval_scores(y_true, y_pred)
    result["span"] = _span_scores(gold_set, pred_set)
    result.update(records=len(paired.pairs), overlaps_resolved=gold_dropped, pred_overlaps_resolved=pred_dropped,
                  gold_duplicates=paired.gold_repeats, pred_duplicates=paired.pred_repeats, scheme="IOB2",
                  mode="strict")
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
    per_type = {t: prf(n_tp[t], n_pred[t], n_gold[t]) for t in sorted(set(n_gold) | set(n_pred))}
    return {"micro": prf(len(gold & pred), len(pred), len(gold)), "macro": _macro(per_type),
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


def display_width(text: str) -> int:
    """Terminal columns of ``text`` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


_width = display_width


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


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|:---" + "|---:" * (len(header) - 1) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def _bucket_rows(buckets: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    return [(name,) + tuple(f"{100 * row[m]:.2f}" for m in _METRICS) + (str(row["support"]), str(row["predicted"]))
            for name, row in buckets.items()]


def _analysis_markdown(analysis: Mapping[str, Any]) -> list[str]:
    """The Markdown sections of :func:`medner.analysis.analyse`'s result."""
    out: list[str] = []
    errors = analysis.get("errors")
    if errors is not None:
        total = sum(errors.values())
        out += ["", "## Errors", "", "Exact character spans; each false positive or negative once (`--errors FILE` "
                "lists them with their context).", ""]
        out += _md_table(("category", "count", "share"),
                         [(c, str(n), f"{100 * n / total:.1f}%" if total else "-") for c, n in errors.items()])
    confusion = analysis.get("confusion")
    if confusion:
        columns = sorted({p for row in confusion.values() for p in row} - {"O"}) + ["O"]
        rows = sorted(set(confusion) - {"O"}) + (["O"] if "O" in confusion else [])
        out += ["", "## Confusion by type", "", "Rows: gold label; columns: predicted label, of spans with identical "
                "boundaries; `O`: no span with those boundaries (a missed gold span, a spurious prediction, or a "
                "boundary error).", ""]
        out += _md_table(["gold \\ predicted", *columns],
                         [[g, *(str(confusion[g].get(p, 0)) for p in columns)] for g in rows])
    header = ("", "P", "R", "F1", "gold", "predicted")
    if analysis.get("by_seen"):
        out += ["", "## Seen and unseen mentions", "", "Exact-span scores of mentions whose text and label occur in "
                "the training data (`--train`) or not: the long tail.", ""]
        out += _md_table(("mentions",) + header[1:], _bucket_rows(analysis["by_seen"]))
    if analysis.get("by_length"):
        out += ["", "## By mention length", "", "Exact-span scores by mention length in characters (longer "
                "mentions have more boundaries to get wrong).", ""]
        out += _md_table(("characters",) + header[1:], _bucket_rows(analysis["by_length"]))
    return out


def to_markdown(result: Mapping[str, Any], *, plot: str | None = None) -> str:
    """The same table as Markdown (GitHub pipe table), with a one-line summary above it; then the sections of
    ``result["analysis"]`` when present, and ``plot`` (a PNG file name beside the report) as an image."""
    rows = _rows(result)
    out = [_summary(result), "", "| " + " | ".join(_COLUMNS) + " |",
           "|" + "|".join([":---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|"]
    for row in rows:
        name = row[0] if row[0] not in ("micro", "macro") else f"**{row[0]}**"
        out.append("| " + " | ".join((name.replace("|", "\\|"),) + row[1:]) + " |")
    if plot:
        out += ["", f"![per-type strict F1]({plot})"]
    out += _analysis_markdown(result.get("analysis") or {})
    return "\n".join(out) + "\n"


def report_base(out: str | PathLike, name: str = "evaluation", *, create: bool = True) -> Path:
    """``out`` as a report path without suffix: a directory (existing, or given with a trailing slash) ->
    ``out/<name>``; otherwise ``out`` is the prefix. Parent folders are created unless ``create`` is false."""
    raw = os.fspath(out)
    base = Path(raw) / name if os.path.isdir(raw) or raw.endswith(("/", os.sep)) else Path(raw)
    if create:
        base.parent.mkdir(parents=True, exist_ok=True)
    return base


def report_files(out: str | PathLike, name: str = "evaluation", *,
                 create: bool = True) -> tuple[Path, Path, Path]:
    """The ``.json``, ``.md`` and ``.png`` a report of ``out`` writes (:func:`report_base`)."""
    base = report_base(out, name, create=create)
    return (base.parent / f"{base.name}.json", base.parent / f"{base.name}.md", base.parent / f"{base.name}.png")


def write_report(result: Mapping[str, Any], out: str | PathLike, *, plot: bool = False) -> tuple[Path, Path]:
    """Write ``result`` as JSON and Markdown; returns ``(json_path, markdown_path)``.

    ``out`` is a directory (existing, or given with a trailing slash) -> ``out/evaluation.json`` and
    ``out/evaluation.md``; otherwise a prefix -> ``<out>.json`` and ``<out>.md``. Parent folders are created.
    With ``plot``, a per-type F1 bar chart ``<out>.png`` beside them, shown in the Markdown.
    """
    json_path, md_path, png_path = report_files(out)
    drawn = plot and plot_per_type(result, png_path)
    atomic_write_text(json_path, json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(md_path, to_markdown(result, plot=png_path.name if drawn else None))
    log.info("wrote %s and %s%s", json_path, md_path, f" and {png_path.name}" if drawn else "")
    return json_path, md_path


_FONT_HINTS = ("cjk", "han", "wqy", "wenquanyi", "simhei", "simsun", "yahei", "msyh", "pingfang", "heiti", "uming",
               "ukai", "droidsansfallback", "noto")  # file names of fonts likely to draw Chinese


def _covers(path: str, chars: set[str]) -> str | None:
    """The family name of the font file ``path`` when it draws every character of ``chars``, else None."""
    from matplotlib.ft2font import FT2Font  # start-up time: only plotting needs matplotlib

    try:
        font = FT2Font(path)
    except (OSError, RuntimeError, ValueError):
        return None
    if "last resort" in font.family_name.lower():  # claims every character, draws each as a box
        return None
    return font.family_name if all(font.get_char_index(ord(ch)) for ch in chars) else None


def _font_for(names: Iterable[str]) -> str | None:
    """An installed font family that draws every character of ``names``, or None: matplotlib's default font, else
    the fonts it knows, else system font files whose names suggest Chinese (its font cache may predate them)."""
    from matplotlib import font_manager  # start-up time: only plotting needs matplotlib

    chars = {ch for name in names for ch in name if not ch.isspace()}
    manager = font_manager.fontManager
    default = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"), fallback_to_default=True)
    known = [default] + sorted({f.fname for f in manager.ttflist} - {default})
    for path in known:
        family = _covers(path, chars)
        if family:
            return family
    others = sorted(set(font_manager.findSystemFonts()) - set(known),
                    key=lambda p: ("bold" in p.lower() or "italic" in p.lower(), p))  # regular faces first
    for path in others:
        if any(hint in os.path.basename(path).lower() for hint in _FONT_HINTS):
            family = _covers(path, chars)
            if family:
                manager.addfont(path)
                return family
    return None


def plot_per_type(result: Mapping[str, Any], png_path: str | PathLike) -> bool:
    """A horizontal bar chart of per-type strict F1 (seqeval) and exact-span F1 as a PNG; False when there are no
    types. Labels are drawn with an installed font that has their characters (CJK fonts are looked for); without
    one, bars are numbered and a legend on the chart names them."""
    import matplotlib  # start-up time: only plotting needs matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_type = result.get("per_type") or {}
    span = (result.get("span") or {}).get("per_type") or {}
    types = sorted(set(per_type) | set(span))
    if not types:
        return False
    family = _font_for(types)
    names = types if family else [f"#{i + 1}" for i in range(len(types))]
    height = max(2.5, 0.45 * len(types) + 1.6)
    with matplotlib.rc_context({"font.family": family or "DejaVu Sans"}):
        fig, ax = plt.subplots(figsize=(7, height))
        y = np.arange(len(types))
        strict = [100 * per_type.get(t, {}).get("f1", 0.0) for t in types]
        exact = [100 * span.get(t, {}).get("f1", 0.0) for t in types]
        ax.barh(y - 0.2, strict, height=0.4, color="tab:blue", label="strict F1 (seqeval IOB2)")
        ax.barh(y + 0.2, exact, height=0.4, color="tab:orange", label="exact-span F1")
        for yi, value, t in zip(y, strict, types):
            support = per_type.get(t, {}).get("support", span.get(t, {}).get("support", 0))
            ax.text(min(value, 100) + 1, yi - 0.2, f"{value:.1f} (n={support})", va="center", fontsize=8)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlim(0, 115)
        ax.set_xlabel("F1 (%)")
        micro = 100 * (result.get("micro") or {}).get("f1", 0.0)
        ax.axvline(micro, color="gray", linestyle="--", linewidth=1, label=f"micro strict F1 {micro:.1f}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18 * 3.5 / height), ncol=3, fontsize=8, frameon=False)
        if not family:
            log.info("no installed font draws the type names: bars are numbered (#1 = %s, ...)", types[0])
        fig.tight_layout()
        atomic_write(png_path, lambda fh: fig.savefig(fh, format="png", dpi=100))
        plt.close(fig)
    return True
