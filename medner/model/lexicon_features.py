"""Lexicon features: which lexicon label (in BIO form) covers each label-bearing token.

A :class:`LexiconTagger` runs the Aho-Corasick matcher on the raw window text and maps the matches to
token tags with the same alignment as the gold spans; the tagger embeds these ids and adds them to the
encoder output (see :class:`medner.model.tagger.Tagger`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from medner.labels import TagScheme
from medner.model.alignment import spans_to_token_tags


class LexiconTagger:
    """Feature ids per token from a lexicon file; ``scheme`` is BIO over the lexicon labels used."""

    def __init__(self, lexicon_path: str | Path, labels: Sequence[str] = ()) -> None:
        from medner.lexicon import load_lexicon

        lexicon = load_lexicon(lexicon_path)
        use = set(labels) or set(lexicon.labels())
        self.fingerprint = lexicon.fingerprint
        self.path = Path(lexicon_path)
        self.scheme = TagScheme(sorted(use), "BIO")
        self.matcher = lexicon.matcher(labels=sorted(use))

    def __len__(self) -> int:
        return len(self.scheme)

    def token_ids(self, text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
        """One feature id per label-bearing token (``offsets`` relative to ``text``)."""
        spans = self.matcher.find(text)
        tags, _ = spans_to_token_tags(spans, offsets, self.scheme)
        return self.scheme.encode(tags)
