"""Punctuation and symbols as tokens of their own: the pre-tokenizer every medner run applies (``encoder.
isolate_punctuation``), kept apart so that vocabulary pruning measures with it without importing the encoder."""
from __future__ import annotations

import json

from tokenizers import Regex, Tokenizer, pre_tokenizers

# Unicode punctuation and symbols: each becomes a token of its own, so that "）" never merges with the "，"
# after it. Entity boundaries in clinical text sit at such marks ("直肠癌根治术（DIXON）。"); a merged piece
# puts the boundary inside a token, where token tags cannot express it.
PUNCTUATION = r"[\p{P}\p{S}]"


def isolate_punctuation(tokenizer) -> bool:
    """Make punctuation and symbols separate pre-tokens; returns False when the tokenizer already does.

    A sentencepiece ``Metaspace`` that prepends ``▁`` to every pre-token switches to prepending only at the
    start of the text, so words are cut exactly where they were before, only at punctuation too. Saved
    with the tokenizer (``tokenizer.json``), so a run directory tokenises as its training did.
    """
    return isolate_punctuation_backend(tokenizer.backend_tokenizer)


def isolate_punctuation_backend(backend: Tokenizer) -> bool:
    """:func:`isolate_punctuation` on a ``tokenizers.Tokenizer`` (vocabulary pruning measures with it too)."""
    current = backend.pre_tokenizer
    spec = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    if any(p.get("pattern") == {"Regex": PUNCTUATION} for p in spec.get("pretokenizers", [spec])):
        return False
    if isinstance(current, pre_tokenizers.Metaspace) and current.prepend_scheme == "always":
        current = pre_tokenizers.Metaspace(replacement=current.replacement, prepend_scheme="first",
                                           split=current.split)
    split = pre_tokenizers.Split(Regex(PUNCTUATION), behavior="isolated")
    backend.pre_tokenizer = pre_tokenizers.Sequence([split] + ([current] if current is not None else []))
    return True
