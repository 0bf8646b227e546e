"""Error analysis a user can act on, over records paired by :func:`medner.evaluate.pair_records`.

* :func:`classify_errors`: every false positive and false negative (exact character spans, nested ones included) as
  one row with its category, mentions and context; :func:`write_errors` writes them as JSON lines (an output the
  user asked for: it holds record text, unlike logs).
* :func:`analyse`: error counts by category, a confusion table by type, and exact-span P/R/F1 split by whether a
  mention was seen in the training data (the long tail) and by mention length (boundary difficulty).
* :func:`compare`: two systems on the same gold, per type and micro/macro, with a paired bootstrap confidence
  interval of the F1 difference (records resampled, seeded), so an A/B says whether a difference is noise.

Error categories (each unmatched span counted once; a pairing consumes both spans):

    type           a predicted span with exactly a gold span's boundaries but another label
    boundary       overlaps a gold span of the same label, other boundaries
    boundary+type  overlaps a gold span of another label, other boundaries
    spurious       a predicted span that overlaps no gold span
    missed         a gold span no prediction overlaps (or left over once overlapping ones were paired)

Never imports torch.
"""
from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from medner.evaluate import Pair, Paired, display_width, flat, prf, report_files
from medner.files import atomic_write, atomic_write_text
from medner.types import Record, Span

__all__ = ["CATEGORIES", "LENGTH_BUCKETS", "classify_errors", "write_errors", "analyse", "format_analysis",
           "training_mentions",
           "compare", "compare_markdown", "format_compare", "write_comparison"]

log = logging.getLogger(__name__)

CATEGORIES = ("boundary", "type", "boundary+type", "spurious", "missed")
LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, None))
NONE = "O"  # the confusion table's "no span with these boundaries"
DEFAULT_CONTEXT = 20  # characters of context either side of an error


# ------------------------------------------------------------------ errors


def _overlap(a: Span, b: Span) -> int:
    return max(0, min(a.end, b.end) - max(a.start, b.start))


def _pair_errors(pair: Pair) -> list[tuple[str, Span | None, Span | None]]:
    """``(category, gold span, predicted span)`` of every error in one record (see the module docstring)."""
    gold_set, pred_set = set(pair.gold), set(pair.pred)
    gold = [g for g in pair.gold if g not in pred_set]
    pred = [p for p in pair.pred if p not in gold_set]
    free = set(range(len(gold)))
    out: list[tuple[str, Span | None, Span | None]] = []
    rest = []
    for p in pred:  # same boundaries, another label
        match = next((i for i in sorted(free) if (gold[i].start, gold[i].end) == (p.start, p.end)), None)
        if match is None:
            rest.append(p)
            continue
        free.discard(match)
        out.append(("type", gold[match], p))
    unpaired = []
    for same_label in (True, False):  # overlapping: same label first, the largest overlap wins
        unpaired = []
        for p in rest:
            candidates = [i for i in free if _overlap(gold[i], p) and (gold[i].label == p.label) == same_label]
            if not candidates:
                unpaired.append(p)
                continue
            best = max(candidates, key=lambda i: (_overlap(gold[i], p), -gold[i].start))
            free.discard(best)
            out.append(("boundary" if same_label else "boundary+type", gold[best], p))
        rest = unpaired
    for p in rest:  # overlaps only gold spans already paired (or matched): still a boundary problem, else spurious
        near = [g for g in pair.gold if _overlap(g, p)]
        if near:
            g = max(near, key=lambda g: (_overlap(g, p), -g.start))
            same = (g.start, g.end) == (p.start, p.end)
            out.append(("type" if same else "boundary" if g.label == p.label else "boundary+type", g, p))
        else:
            out.append(("spurious", None, p))
    out.extend(("missed", gold[i], None) for i in sorted(free))
    out.sort(key=lambda e: min(s.start for s in e[1:] if s is not None))
    return out


def _span_json(span: Span | None, text: str) -> dict[str, Any] | None:
    if span is None:
        return None
    out: dict[str, Any] = {"start": span.start, "end": span.end, "label": span.label, "text": text[span.start:span.end]}
    if span.score is not None:
        out["score"] = span.score
    return out


def classify_errors(paired: Paired, context: int = DEFAULT_CONTEXT) -> list[dict[str, Any]]:
    """One row per error, in record then offset order::

        {"id": "r3", "category": "type", "gold": {start, end, label, text}, "pred": {start, end, label, text,
         score?}, "left": "<context characters before>", "right": "<context characters after>"}

    ``gold`` or ``pred`` is null for a spurious or missed span; ``left``/``right`` surround both spans."""
    rows = []
    for pair in paired.pairs:
        for category, g, p in _pair_errors(pair):
            spans = [s for s in (g, p) if s is not None]
            lo, hi = min(s.start for s in spans), max(s.end for s in spans)
            rows.append({"id": pair.id, "category": category, "gold": _span_json(g, pair.text),
                         "pred": _span_json(p, pair.text), "left": pair.text[max(0, lo - context):lo],
                         "right": pair.text[hi:hi + context]})
    return rows


def write_errors(rows: Iterable[Mapping[str, Any]], path: str | PathLike) -> Path:
    """The error rows as JSON lines (UTF-8), written atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))
    return path


# ------------------------------------------------------------------ analysis


def training_mentions(records: Iterable[Record]) -> set[tuple[str, str]]:
    """``(mention, label)`` of every span of the training records."""
    return {(s.mention(r.text), s.label) for r in records for s in r.spans}


def _length_bucket(span: Span) -> str:
    for lo, hi in LENGTH_BUCKETS:
        if span.length >= lo and (hi is None or span.length <= hi):
            return str(lo) if lo == hi else f"{lo}-{hi}" if hi else f"{lo}+"
    raise AssertionError(span)  # pragma: no cover - the buckets cover every length >= 1


def _bucket_scores(paired: Paired, bucket: Callable[[Pair, Span], str], order: Sequence[str]) -> dict[str, Any]:
    """Exact-span P/R/F1 per bucket: gold spans by their own bucket, predicted spans by theirs (a true positive is
    in both); ``support`` counts gold spans and ``predicted`` predicted ones."""
    n_gold, n_pred, n_tp = Counter(), Counter(), Counter()
    for pair in paired.pairs:
        gold = set(pair.gold)
        for s in pair.gold:
            n_gold[bucket(pair, s)] += 1
        for s in pair.pred:
            key = bucket(pair, s)
            n_pred[key] += 1
            n_tp[key] += s in gold
    out = {}
    for key in order:
        if n_gold[key] or n_pred[key]:
            out[key] = {**prf(n_tp[key], n_pred[key], n_gold[key]), "predicted": n_pred[key]}
    return out


def _confusion(paired: Paired) -> dict[str, dict[str, int]]:
    """Gold label -> predicted label -> count, over spans with identical boundaries; ``O``: no span there."""
    table: dict[str, Counter] = defaultdict(Counter)
    for pair in paired.pairs:
        at: dict[tuple[int, int], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for s in pair.gold:
            at[(s.start, s.end)][0].append(s.label)
        for s in pair.pred:
            at[(s.start, s.end)][1].append(s.label)
        for gold, pred in at.values():
            for label in sorted(set(gold) & set(pred)):
                table[label][label] += 1
            gold_rest = sorted(set(gold) - set(pred))
            pred_rest = sorted(set(pred) - set(gold))
            for g, p in zip(gold_rest, pred_rest):
                table[g][p] += 1
            for g in gold_rest[len(pred_rest):]:
                table[g][NONE] += 1
            for p in pred_rest[len(gold_rest):]:
                table[NONE][p] += 1
    return {g: dict(sorted(row.items())) for g, row in sorted(table.items())}


def analyse(paired: Paired, train_mentions: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The report's analysis section: ``errors`` (count by category), ``confusion``, ``by_length`` and, given
    ``train_mentions`` (:func:`training_mentions`), ``by_seen`` (``seen``/``unseen``: the mention and label occur
    in the training data, or not). All on exact character spans."""
    errors = Counter(category for pair in paired.pairs for category, _, _ in _pair_errors(pair))
    out: dict[str, Any] = {
        "errors": {c: errors[c] for c in CATEGORIES},
        "confusion": _confusion(paired),
        "by_length": _bucket_scores(paired, lambda pair, s: _length_bucket(s),
                                    [_length_bucket(Span(0, lo, "x")) for lo, _ in LENGTH_BUCKETS]),
    }
    if train_mentions is not None:
        out["by_seen"] = _bucket_scores(
            paired, lambda pair, s: "seen" if (s.mention(pair.text), s.label) in train_mentions else "unseen",
            ["seen", "unseen"])
    return out


def format_analysis(analysis: Mapping[str, Any]) -> str:
    """A few plain-text lines of :func:`analyse`'s result (the Markdown report has the tables)."""
    def buckets(rows: Mapping[str, Mapping[str, Any]]) -> str:
        return ", ".join(f"{name} {100 * row['f1']:.2f} (n={row['support']})" for name, row in rows.items())

    lines = ["errors (exact spans): " + ", ".join(f"{c} {n}" for c, n in analysis["errors"].items())]
    if analysis.get("by_seen"):
        lines.append("span F1 by mention: " + buckets(analysis["by_seen"]))
    if analysis.get("by_length"):
        lines.append("span F1 by length: " + buckets(analysis["by_length"]))
    return "\n".join(lines)


# ------------------------------------------------------------------ A/B comparison


def _counts(paired: Paired, types: Sequence[str]) -> np.ndarray:
    """Per record and type: (true positives, predicted, gold) of the flat (seqeval) spans.

    shape: (records, types, 3). Strict IOB2 entities of tags made from non-overlapping spans are those spans, so
    sums of these counts give seqeval's scores."""
    index = {t: i for i, t in enumerate(types)}
    out = np.zeros((len(paired.pairs), len(types), 3), dtype=np.int64)
    for r, pair in enumerate(paired.pairs):
        if not pair.text:  # seqeval sees no tags for an empty text
            continue
        gold, pred = flat(pair.gold)[0], flat(pair.pred)[0]
        for s in set(gold) & set(pred):
            out[r, index[s.label], 0] += 1
        for s in pred:
            out[r, index[s.label], 1] += 1
        for s in gold:
            out[r, index[s.label], 2] += 1
    return out


def _f1(totals: np.ndarray) -> np.ndarray:
    """F1 from (..., 3) totals of (tp, predicted, gold): 2 tp / (predicted + gold), 0 where that is 0/0."""
    denominator = totals[..., 1] + totals[..., 2]
    return np.divide(2.0 * totals[..., 0], denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def compare(paired_a: Paired, paired_b: Paired, *, samples: int = 1000, seed: int = 0,
            confidence: float = 0.95) -> dict[str, Any]:
    """Strict (seqeval) F1 of systems A and B on the same gold records, and the difference B - A with a paired
    bootstrap: ``samples`` resamples of the records (with replacement, ``seed``ed), both systems scored on each;
    ``ci`` is the central ``confidence`` interval of the differences, ``significant`` whether it excludes 0 and
    ``b_better`` the share of resamples where B scores higher. Per type, micro and macro (over the types of gold or
    either system)."""
    if [p.id for p in paired_a.pairs] != [p.id for p in paired_b.pairs]:
        raise ValueError("both systems must be paired with the same gold records, in the same order")
    if samples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need samples >= 1 and 0 < confidence < 1, got {samples} and {confidence}")
    types = sorted({s.label for paired in (paired_a, paired_b) for p in paired.pairs for s in (*p.gold, *p.pred)})
    a, b = _counts(paired_a, types), _counts(paired_b, types)
    n = len(paired_a.pairs)
    rng = np.random.default_rng(seed)
    chunk = max(1, 20_000_000 // max(1, n))
    stacked = np.concatenate([a, b], axis=1).reshape(n, -1)  # shape: (records, 2 * types * 3)
    deltas: dict[str, list[np.ndarray]] = defaultdict(list)
    for lo in range(0, samples, chunk):
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, samples - lo)) if n else \
            np.zeros((min(chunk, samples - lo), 0), dtype=np.int64)
        totals = (weights @ stacked).reshape(-1, 2, len(types), 3)  # shape: (samples, system, types, 3)
        per_type = _f1(totals)  # shape: (samples, system, types)
        micro = _f1(totals.sum(axis=2))  # shape: (samples, system)
        deltas["micro"].append(micro[:, 1] - micro[:, 0])
        deltas["macro"].append(per_type[:, 1].mean(axis=1) - per_type[:, 0].mean(axis=1) if types else
                               np.zeros(len(weights)))
        for i, t in enumerate(types):
            deltas[t].append(per_type[:, 1, i] - per_type[:, 0, i])
    full_types = _f1(np.stack([a.sum(axis=0), b.sum(axis=0)]))  # shape: (system, types)
    full_micro = _f1(np.stack([a.sum(axis=(0, 1)), b.sum(axis=(0, 1))]))  # shape: (system,)
    tail = 100 * (1 - confidence) / 2

    def entry(f1_a: float, f1_b: float, draws: list[np.ndarray], support: int) -> dict[str, Any]:
        values = np.concatenate(draws)
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return {"a": float(f1_a), "b": float(f1_b), "delta": float(f1_b - f1_a), "ci": [float(lo), float(hi)],
                "significant": bool(lo > 0 or hi < 0), "b_better": float(np.mean(values > 0)), "support": support}

    support = a.sum(axis=0)[:, 2]
    result: dict[str, Any] = {
        "micro": entry(full_micro[0], full_micro[1], deltas["micro"], int(support.sum())),
        "macro": entry(full_types[0].mean() if types else 0.0, full_types[1].mean() if types else 0.0,
                       deltas["macro"], int(support.sum())),
        "per_type": {t: entry(full_types[0, i], full_types[1, i], deltas[t], int(support[i]))
                     for i, t in enumerate(types)},
        "records": n, "samples": samples, "seed": seed, "confidence": confidence, "metric": "seqeval strict IOB2 F1",
    }
    return result


_COMPARE_COLUMNS = ("type", "F1 A", "F1 B", "B - A", "CI low", "CI high", "B better", "support")


def _compare_rows(result: Mapping[str, Any]) -> list[tuple[str, ...]]:
    def cells(name: str, row: Mapping[str, Any]) -> tuple[str, ...]:
        mark = " *" if row["significant"] else ""
        return (name, f"{100 * row['a']:.2f}", f"{100 * row['b']:.2f}", f"{100 * row['delta']:+.2f}{mark}",
                f"{100 * row['ci'][0]:+.2f}", f"{100 * row['ci'][1]:+.2f}", f"{100 * row['b_better']:.1f}%",
                str(row["support"]))

    rows = [cells(t, row) for t, row in result["per_type"].items()]
    return rows + [cells("micro", result["micro"]), cells("macro", result["macro"])]


def _compare_summary(result: Mapping[str, Any]) -> str:
    return (f"{result['records']} records; {result['metric']}, percentages; B - A with a paired bootstrap "
            f"{100 * result['confidence']:.0f}% interval ({result['samples']} resamples of the records, seed "
            f"{result['seed']}); * = the interval excludes 0")


def format_compare(result: Mapping[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """A plain-text table of :func:`compare`'s result."""
    rows = _compare_rows(result)
    widths = [max(display_width(r[i]) for r in [_COMPARE_COLUMNS, *rows]) for i in range(len(_COMPARE_COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c + " " * (w - display_width(c)) if i == 0 else " " * (w - display_width(c)) + c
                         for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * display_width(line(_COMPARE_COLUMNS))
    return "\n".join([f"A = {names[0]}", f"B = {names[1]}", _compare_summary(result), line(_COMPARE_COLUMNS), rule,
                      *map(line, rows[:-2]), rule, *map(line, rows[-2:])])


def compare_markdown(result: Mapping[str, Any], names: tuple[str, str] = ("A", "B")) -> str:
    """:func:`compare`'s result as Markdown."""
    out = [f"A = `{names[0]}`, B = `{names[1]}`", "", _compare_summary(result), "",
           "| " + " | ".join(_COMPARE_COLUMNS) + " |", "|:---" + "|---:" * (len(_COMPARE_COLUMNS) - 1) + "|"]
    for row in _compare_rows(result):
        name = row[0] if row[0] not in ("micro", "macro") else f"**{row[0]}**"
        out.append("| " + " | ".join((name.replace("|", "\\|"),) + row[1:]) + " |")
    return "\n".join(out) + "\n"


def write_comparison(result: Mapping[str, Any], out: str | PathLike, names: tuple[str, str] = ("A", "B")
                     ) -> tuple[Path, Path]:
    """Write :func:`compare`'s result as JSON and Markdown (paths as :func:`medner.evaluate.write_report`)."""
    json_path, md_path, _ = report_files(out, "comparison")
    atomic_write_text(json_path, json.dumps({**result, "a_path": names[0], "b_path": names[1]}, ensure_ascii=False,
                                            indent=2) + "\n")
    atomic_write_text(md_path, compare_markdown(result, names))
    log.info("wrote %s and %s", json_path, md_path)
    return json_path, md_path
