"""Masking for masked-LM pretraining on Chinese text, in characters rather than sub-word pieces.

A sequence is tokens with character offsets. A masked unit is a character span (one character, a random span
of 1..``max_span`` characters, or a lexicon term); every token that overlaps it is masked, so a multi-character
piece is never half hidden. Masked tokens follow BERT's 80/10/10 rule: ``[MASK]``, a random token, unchanged.
"""
from __future__ import annotations

import bisect
import random
from collections.abc import Sequence

import torch

IGNORE = -100  # label of a position that carries no masked-LM loss


def choose_masked_tokens(offsets: Sequence[tuple[int, int]], budget: int, rng: random.Random, *,
                         strategy: str = "span", max_span: int = 4,
                         terms: Sequence[tuple[int, int]] = (), lexicon_share: float = 0.5) -> list[int]:
    """Indices (sorted) of the tokens to mask: about ``budget`` of them, never more than all.

    ``offsets``: ``(start, end)`` characters of each maskable token (specials excluded), ascending.
    ``terms``: character spans of lexicon matches (``strategy="lexicon"``), tried first, in random order,
    up to ``lexicon_share`` of the budget; random spans fill the rest.
    """
    n = len(offsets)
    budget = max(1, min(budget, n)) if n else 0
    if not budget:
        return []
    lo_char, hi_char = offsets[0][0], offsets[-1][1]
    masked: set[int] = set()

    ends = [e for _, e in offsets]

    def cover(start: int, end: int) -> set[int]:
        # tokens overlapping [start, end): offsets ascend, so scan from the first token ending after start
        out, i = set(), bisect.bisect_right(ends, start)
        while i < n and offsets[i][0] < end:
            out.add(i)
            i += 1
        return out

    if strategy == "lexicon" and terms:
        order = list(terms)
        rng.shuffle(order)
        lexicon_budget = int(budget * lexicon_share)
        for start, end in order:
            if len(masked) >= lexicon_budget:
                break
            tokens = cover(start, end)
            if tokens and not tokens & masked and len(masked) + len(tokens) <= budget:
                masked |= tokens
    attempts = 0
    while len(masked) < budget and attempts < 50 * budget:
        attempts += 1
        length = 1 if strategy == "char" else rng.randint(1, max_span)
        start = rng.randrange(lo_char, max(lo_char + 1, hi_char - length + 1))
        tokens = cover(start, start + length)
        if not tokens or tokens & masked or len(masked) + len(tokens) > budget + max_span:
            continue
        masked |= tokens
    return sorted(masked)


def apply_mask(input_ids: torch.Tensor, positions: Sequence[int], rng: random.Random, *, mask_id: int,
               vocab_size: int, special_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` for one sequence ``(seq,)``: 80% ``mask_id``, 10% random token, 10% unchanged at
    ``positions``; labels are the original ids there and :data:`IGNORE` elsewhere."""
    inputs = input_ids.clone()
    labels = torch.full_like(input_ids, IGNORE)
    specials = set(special_ids)
    for pos in positions:
        labels[pos] = input_ids[pos]
        roll = rng.random()
        if roll < 0.8:
            inputs[pos] = mask_id
        elif roll < 0.9:
            token = rng.randrange(vocab_size)
            while token in specials:
                token = rng.randrange(vocab_size)
            inputs[pos] = token
    return inputs, labels
