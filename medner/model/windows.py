"""Records -> tokenised windows with tag ids, cached as Arrow datasets (Hugging Face `datasets`).

One row per window: ``record_id``, ``window_start`` (record offset of the window), ``input_ids``,
``label_index`` (positions of label-bearing tokens in ``input_ids``), ``tags`` (one id per label-bearing
token), ``starts``/``ends`` (window-relative character offsets of those tokens). The cache key is a
fingerprint of the records, the tokenizer, the windowing and the label scheme, so a second run with the
same inputs loads the Arrow files instead of tokenising again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from medner.cache import mark_used
from medner.config import WindowConfig
from medner.files import publish_folder
from medner.labels import TagScheme, resolve_overlaps
from medner.model.alignment import EncodedText, encode_text, spans_to_token_tags
from medner.text import Window, spans_crossing, split_windows, window_spans
from medner.types import Record

log = logging.getLogger(__name__)

FEATURES_VERSION = "2"  # bump when the row layout or the alignment rule changes


@dataclass
class FeatureStats:
    """What happened while building windows; reported, never silent."""

    records: int = 0
    windows: int = 0
    overlaps_dropped: int = 0
    spans_cut_by_windows: int = 0
    spans_misaligned: int = 0
    spans: int = 0
    resplit_windows: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class WindowedText:
    """A window of a record with its tokenisation."""

    record_id: str
    window: Window
    encoded: EncodedText
    spans: list = field(default_factory=list)


def token_windows(tokenizer, text: str, config: WindowConfig, stats: FeatureStats | None = None
                  ) -> Iterator[tuple[Window, EncodedText]]:
    """Windows of ``text`` (record offsets) that fit the encoder: a character window whose tokens exceed
    ``config.max_tokens`` is split again with half the length (and at most a quarter of that as overlap, so
    the parts share fewer characters than ``config.overlap``), counted in ``stats.resplit_windows``."""
    stack = list(reversed(split_windows(text, config.max_chars, config.overlap)))
    while stack:
        window = stack.pop()
        encoded = encode_text(tokenizer, text[window.start : window.end])
        if len(encoded.input_ids) <= config.max_tokens or window.end - window.start <= 8:
            yield window, encoded
            continue
        if stats is not None:
            stats.resplit_windows += 1
        half = max(8, (window.end - window.start) // 2)
        parts = split_windows(text[window.start : window.end], half, min(config.overlap, half // 4))
        stack.extend(reversed([Window(window.start + p.start, window.start + p.end) for p in parts]))


def iter_windows(records: Iterable[Record], tokenizer, config: WindowConfig, scheme: TagScheme | None = None,
                 overlap_policy: str = "keep_longest", stats: FeatureStats | None = None,
                 lexicon=None) -> Iterator[dict]:
    """Rows for the encoder (see module docstring). Without ``scheme``, ``tags`` is empty (inference);
    with ``lexicon`` (a :class:`~medner.model.lexicon_features.LexiconTagger`), ``lex`` holds feature ids."""
    stats = stats if stats is not None else FeatureStats()
    for record in records:
        stats.records += 1
        spans: list = []
        if scheme is not None:
            spans, dropped = resolve_overlaps(record.spans, overlap_policy)
            stats.overlaps_dropped += dropped
            stats.spans += len(spans)
        for window, encoded in token_windows(tokenizer, record.text, config, stats):
            stats.windows += 1
            tag_ids: list[int] = []
            if scheme is not None:
                # a span cut by the window edge keeps its part inside (labelled, starting with B-), rather
                # than teaching the model that the part is O; inference merges windows by the centre rule
                crossing = spans_crossing(spans, window)
                stats.spans_cut_by_windows += len(crossing)
                clipped = [replace(s, start=max(s.start, window.start), end=min(s.end, window.end)) for s in crossing]
                inside = window_spans(spans + clipped, window)
                tags, misaligned = spans_to_token_tags(inside, encoded.offsets, scheme)
                stats.spans_misaligned += misaligned
                tag_ids = scheme.encode(tags)
            yield {
                "record_id": record.id,
                "window_start": window.start,
                "input_ids": encoded.input_ids,
                "label_index": encoded.label_positions,
                "tags": tag_ids,
                "starts": [s for s, _ in encoded.offsets],
                "ends": [e for _, e in encoded.offsets],
                "lex": lexicon.token_ids(window.slice(record.text), encoded.offsets) if lexicon else [],
            }


def fingerprint(records: Sequence[Record], tokenizer, config: WindowConfig, scheme: TagScheme | None,
                overlap_policy: str, lexicon=None) -> str:
    """sha256 over everything the rows depend on (16 hex digits)."""
    h = hashlib.sha256()
    h.update(FEATURES_VERSION.encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    h.update(json.dumps([config.max_chars, config.overlap, config.max_tokens, overlap_policy,
                         scheme.to_dict() if scheme else None,
                         lexicon.fingerprint if lexicon else None], ensure_ascii=False).encode())
    for record in records:
        h.update(record.id.encode())
        h.update(b"\0")
        h.update(record.text.encode())
        h.update(json.dumps([(s.start, s.end, s.label) for s in record.spans], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def build_dataset(records: Sequence[Record], tokenizer, config: WindowConfig, scheme: TagScheme,
                  overlap_policy: str, cache_dir: Path | None = None, lexicon=None):
    """A `datasets.Dataset` of rows, loaded from ``cache_dir/<fingerprint>`` when present.

    Returns ``(dataset, stats_dict, cached: bool)``.
    """
    import datasets  # start-up time: Arrow datasets only for training caches, not for prediction

    key = fingerprint(records, tokenizer, config, scheme, overlap_policy, lexicon)
    target = cache_dir / f"windows-{key}" if cache_dir else None
    dataset = load_cache_entry(target, "medner_stats.json")
    if dataset is not None:
        stats = json.loads((target / "medner_stats.json").read_text())
        log.info("loaded %d tokenised windows from cache %s", len(dataset), target.name)
        return dataset, stats, True
    stats = FeatureStats()
    rows = list(iter_windows(records, tokenizer, config, scheme, overlap_policy, stats, lexicon))
    columns = {name: [row[name] for row in rows] for name in
               ("record_id", "window_start", "input_ids", "label_index", "tags", "starts", "ends", "lex")}
    dataset = datasets.Dataset.from_dict(columns)
    if target is not None:
        def write(folder: Path) -> None:
            dataset.save_to_disk(str(folder))
            (folder / "medner_stats.json").write_text(json.dumps(stats.to_dict()))

        with datasets_bars_off():
            publish_folder(target, write, replace=lambda found: damaged(found, "medner_stats.json"))  # whole or none
            dataset = datasets.load_from_disk(str(target))
    return dataset, stats.to_dict(), False


def load_cache_entry(target: Path | None, *also: str):
    """The `datasets.Dataset` cached in ``target`` (marked used), or None when there is none or it is damaged (a
    file missing, or one of the ``also`` files beside it: a warning, and the caller builds it again, publishing it
    with ``replace=damaged``)."""
    if target is None or not (target / "dataset_info.json").exists():
        return None
    try:
        dataset = _load_entry(target, also)
    except (OSError, ValueError) as exc:  # an .arrow file gone or cut short
        log.warning("cache entry %s is damaged (%s): building it again", target, type(exc).__name__)
        return None
    mark_used(target)
    return dataset


def damaged(target: Path, *also: str) -> bool:
    """Whether the cache entry ``target`` found in place of a new one cannot be loaded (replace it), or can (it is
    another process's finished copy: keep it)."""
    try:
        _load_entry(target, also)
    except (OSError, ValueError):
        return True
    return False


def _load_entry(target: Path, also: Sequence[str]):
    import datasets

    missing = [name for name in ("dataset_info.json", *also) if not (target / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing")
    with datasets_bars_off():
        return datasets.load_from_disk(str(target))


@contextmanager
def datasets_bars_off() -> Iterator[None]:
    """No `datasets` progress bar per cache save/load (one log line says what happened); the setting is restored,
    so a caller's own `datasets` work keeps its bars."""
    import datasets

    disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not disabled:
            datasets.enable_progress_bars()


def collate_windows(dataset, indices: Sequence[int], pad_id: int) -> dict:
    """The windows ``indices`` of a dataset from :func:`build_dataset`, padded into one batch by :func:`collate`."""
    columns = dataset[list(indices)]
    return collate([{k: columns[k][i] for k in columns} for i in range(len(indices))], pad_id)


def collate(rows: Sequence[dict], pad_id: int) -> dict:
    """Pad a list of rows into tensors.

    Returns ``input_ids``/``attention_mask`` ``(batch, seq)``, ``label_index``/``label_mask``/``tags``/``lex``
    ``(batch, n_labels)``; padding positions point at index 0 and are masked out (``lex`` 0 = no match).
    Rows with distillation targets also give ``soft`` ``(batch, n_labels, n_tags)`` and ``gold`` ``(batch,)``.
    """
    batch = len(rows)
    seq = max(len(r["input_ids"]) for r in rows)
    n_labels = max(1, max(len(r["label_index"]) for r in rows))
    input_ids = torch.full((batch, seq), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, seq), dtype=torch.long)
    label_index = torch.zeros((batch, n_labels), dtype=torch.long)
    label_mask = torch.zeros((batch, n_labels), dtype=torch.bool)
    tags = torch.zeros((batch, n_labels), dtype=torch.long)
    lex = torch.zeros((batch, n_labels), dtype=torch.long)
    for i, row in enumerate(rows):
        n, k = len(row["input_ids"]), len(row["label_index"])
        input_ids[i, :n] = torch.as_tensor(row["input_ids"])
        attention_mask[i, :n] = 1
        if k:
            label_index[i, :k] = torch.as_tensor(row["label_index"])
            label_mask[i, :k] = True
            if row.get("tags"):
                tags[i, :k] = torch.as_tensor(row["tags"])
            if row.get("lex"):
                lex[i, :k] = torch.as_tensor(row["lex"])
    out = {"input_ids": input_ids, "attention_mask": attention_mask, "label_index": label_index,
           "label_mask": label_mask, "tags": tags, "lex": lex}
    if rows and "soft" in rows[0]:
        n_tags = next((len(r["soft"]) // len(r["label_index"]) for r in rows if r["label_index"]), 1)
        soft = torch.zeros((batch, n_labels, n_tags))
        for i, row in enumerate(rows):
            if row["label_index"]:
                soft[i, : len(row["label_index"])] = torch.as_tensor(row["soft"]).view(-1, n_tags)
        out["soft"] = soft
        out["gold"] = torch.as_tensor([int(r["gold"]) for r in rows], dtype=torch.bool)
    return out
