"""Alignment between character spans on raw text and sub-word tokens.

The tokenizer runs on the raw text with ``return_offsets_mapping``. A token *bears a label* when it
covers at least one character and the next token does not start inside it; this drops special tokens
([CLS]/[SEP], offsets (0, 0)) and the bare ``▁`` that sentencepiece emits before punctuation (it shares
its offsets with the token that follows). Each character takes the label of the token that covers it;
decoded token tags map back to character spans ``[offset[first].start, offset[last].end)``.

Nothing outside ``medner.model`` knows what a token is.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Sequence

from medner.labels import TagScheme, spans_to_tags, tags_to_spans
from medner.model.crf import span_confidence
from medner.types import Span


@dataclass(frozen=True)
class EncodedText:
    """A tokenised text. ``label_positions[k]`` indexes ``input_ids``; ``offsets[k]`` is the
    ``(start, end)`` character range of that label-bearing token, relative to the text."""

    input_ids: list[int]
    label_positions: list[int]
    offsets: list[tuple[int, int]]


def label_bearing(offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Indices of the tokens that bear labels, given the tokenizer's offset mapping."""
    keep = []
    for i, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        if i + 1 < len(offsets) and offsets[i + 1][1] > offsets[i + 1][0] and offsets[i + 1][0] < end:
            continue  # the next token starts inside this one: it carries the characters
        keep.append(i)
    return keep


def encode_text(tokenizer, text: str) -> EncodedText:
    """Tokenise raw ``text`` (with special tokens, no truncation) and find label-bearing tokens."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True, truncation=False)
    offsets = [_strip_spaces(text, s, e) for s, e in enc["offset_mapping"]]
    positions = label_bearing(offsets)
    return EncodedText(list(enc["input_ids"]), positions, [offsets[i] for i in positions])


def _strip_spaces(text: str, start: int, end: int) -> tuple[int, int]:
    """Sentencepiece offsets of ``▁X`` include the preceding space; a span never starts or ends in one."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def spans_to_token_tags(spans: Sequence[Span], offsets: Sequence[tuple[int, int]],
                        scheme: TagScheme) -> tuple[list[str], int]:
    """Tag each label-bearing token from non-overlapping character spans.

    A token belongs to a span when its first character lies inside it. Returns the tags and the number
    of spans whose boundaries do not fall on token boundaries (those are learnt at token granularity).
    """
    token_spans = []
    misaligned = 0
    starts = [s for s, _ in offsets]
    for span in spans:
        first, stop = bisect_left(starts, span.start), bisect_left(starts, span.end)
        if first >= stop:  # no token starts inside the span
            misaligned += 1
            continue
        last = stop - 1
        if offsets[first][0] != span.start or offsets[last][1] != span.end:
            misaligned += 1
        token_spans.append(Span(first, last + 1, span.label))
    return spans_to_tags(token_spans, len(offsets), scheme), misaligned


def token_tags_to_spans(tags: Sequence[str], offsets: Sequence[tuple[int, int]], scheme: TagScheme,
                        scores: Sequence[float] | None = None) -> list[Span]:
    """Character spans from token tags; ``scores`` (per token, e.g. CRF marginals) give each span the
    mean score of its tokens (:func:`~medner.model.crf.span_confidence`, ``reduce="mean"``)."""
    out = []
    for tspan in tags_to_spans(list(tags), scheme):
        start, end = offsets[tspan.start][0], offsets[tspan.end - 1][1]
        score = None
        if scores is not None:
            score = span_confidence(scores, tspan.start, tspan.end, reduce="mean")
        out.append(Span(start, end, tspan.label, score=score))
    return out
