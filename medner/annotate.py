"""Annotator: raw texts -> character spans with scores (and ICD codes where a linker is attached).

Long texts go through the same windowing as training; windows from all texts of a call are batched
together (sorted by length to limit padding) and predictions are merged back per text.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence

import torch

from medner.config import WindowConfig
from medner.errors import ConfigError
from medner.model.alignment import token_tags_to_spans
from medner.model.device import autocast, resolve_device, resolve_dtype
from medner.model.windows import collate, token_windows
from medner.text import merge_window_predictions, trim_spans
from medner.types import Record, Span

log = logging.getLogger(__name__)


def check_batch_size(value, field: str = "batch_size", what: str = "") -> int:
    """``value`` if it is a whole number >= 1 (windows per forward pass), else a :class:`ConfigError` (a batch size
    of 0 or less would predict nothing: no record may leave without its spans)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what}{field} must be a whole number >= 1, got {value!r}", field=field,
                          fix="use a positive number of windows per forward pass, e.g. 16")
    return value


class Annotator:
    """Predicts spans on raw text. Get one from :func:`medner.load` (a run directory); it does not change after
    it is built: another window, precision or linker is another Annotator.

    ``precision``: None = the run config's (``auto``: fp32 on CPU, bf16 autocast on a capable GPU), or fp32 /
    bf16 / fp16; ``window``: None = the run config's windowing.
    """

    def __init__(self, tagger, tokenizer, config, *, device: str = "auto", batch_size: int = 16,
                 precision: str | None = None, window: WindowConfig | None = None, fingerprint: str | None = None,
                 linker: Callable[[str, Span], Span] | None = None, lexicon=None) -> None:
        self.tagger = tagger
        self.tokenizer = tokenizer
        self.config = config
        self.window = window or config.window
        self.scheme = tagger.scheme
        self.batch_size = check_batch_size(batch_size)
        self.fingerprint = fingerprint
        self.linker = linker
        self.lexicon = lexicon  # LexiconTagger when the model uses lexicon features
        self.device = resolve_device(device)
        self.precision = precision or config.precision
        self.dtype = resolve_dtype(self.precision, self.device)
        self.tagger.to(self.device).eval()
        self._frozen = True

    def __setattr__(self, name: str, value) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(f"an Annotator does not change once built (tried to set {name!r}); load another "
                                 "with medner.load(run, window=..., precision=..., icd_lexicon=...)")
        object.__setattr__(self, name, value)

    def predict(self, texts: str | Sequence[str], batch_size: int | None = None) -> list[list[Span]] | list[Span]:
        """Spans (sorted, non-overlapping, with ``score``) for each text; a single string gives one list. Span edges
        never fall on whitespace, control or format characters nor inside a character (:func:`trim_spans`)."""
        if isinstance(texts, str):
            return self.predict([texts], batch_size)[0]
        texts = list(texts)
        items = []  # (text index, window, encoded)
        for t, text in enumerate(texts):
            for window, encoded in token_windows(self.tokenizer, text, self.window):
                items.append((t, window, encoded))
        per_window: list[list[Span]] = [[] for _ in items]
        order = sorted(range(len(items)), key=lambda i: len(items[i][2].input_ids))
        size = self.batch_size if batch_size is None else check_batch_size(batch_size)
        pad_id = self.tokenizer.pad_token_id or 0
        for lo in range(0, len(order), size):
            chunk = order[lo : lo + size]
            rows = [{"input_ids": items[i][2].input_ids, "label_index": items[i][2].label_positions,
                     "lex": self._lexicon_ids(texts[items[i][0]], items[i][1], items[i][2])} for i in chunk]
            batch = {k: v.to(self.device) for k, v in collate(rows, pad_id).items()}
            with torch.inference_mode(), autocast(self.device, self.dtype):
                emissions = self.tagger.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"],
                                                  batch["lex"])
            decoded = self.tagger.decode_emissions(emissions.float(), batch["label_mask"])
            for i, dec in zip(chunk, decoded):
                encoded = items[i][2]
                tags = self.scheme.decode(dec.tags)
                per_window[i] = token_tags_to_spans(tags, encoded.offsets, self.scheme, dec.scores)
        results: list[list[Span]] = [[] for _ in texts]
        grouped: dict[int, tuple[list, list]] = {}
        for (t, window, _), spans in zip(items, per_window):
            windows, spans_list = grouped.setdefault(t, ([], []))
            windows.append(window)
            spans_list.append(spans)
        for t, (windows, spans_list) in grouped.items():
            merged = trim_spans(texts[t], merge_window_predictions(windows, spans_list))
            if self.linker is not None:
                merged = [self.linker(texts[t], s) for s in merged]
            results[t] = merged
        return results

    def _lexicon_ids(self, text: str, window, encoded) -> list[int]:
        if self.lexicon is None:
            return []
        return self.lexicon.token_ids(text[window.start : window.end], encoded.offsets)

    def predict_records(self, records: Iterable[Record], batch_size: int | None = None,
                        chunk: int = 256) -> Iterable[Record]:
        """Records with predicted spans (gold spans replaced), in input order, ``chunk`` records at a time."""
        buffer: list[Record] = []
        for record in records:
            buffer.append(record)
            if len(buffer) >= chunk:
                yield from self._predict_chunk(buffer, batch_size)
                buffer = []
        if buffer:
            yield from self._predict_chunk(buffer, batch_size)

    def _predict_chunk(self, records: list[Record], batch_size: int | None) -> list[Record]:
        predictions = self.predict([r.text for r in records], batch_size)
        return [r.with_spans(p) for r, p in zip(records, predictions)]
