"""Lexicon features: which lexicon label (in BIO form) covers each label-bearing token.

A :class:`LexiconTagger` runs the Aho-Corasick matcher on the raw window text and maps the matches to
token tags with the same alignment as the gold spans; the tagger embeds these ids and adds them to the
encoder output (see :class:`medner.model.tagger.Tagger`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from medner.labels import TagScheme
from medner.lexicon.matcher import LexiconMatcher
from medner.lexicon.store import fingerprint_of, load_lexicon, render, write_lexicon
from medner.model.alignment import spans_to_token_tags


class LexiconTagger:
    """Feature ids per token from one or more lexicon files, merged; ``scheme`` is BIO over the labels used.

    Terms shorter than ``min_length`` characters are not matched; a term in several lexicons keeps the
    first label in sorted order (the matcher's rule).
    """

    def __init__(self, lexicon_paths: str | Path | Sequence[str | Path], labels: Sequence[str] = (),
                 min_length: int = 2) -> None:
        paths = [lexicon_paths] if isinstance(lexicon_paths, (str, Path)) else list(lexicon_paths)
        entries = [entry for path in paths for entry in load_lexicon(path)]
        use = set(labels) or {e.label for e in entries}
        self.entries = tuple(e for e in entries if e.label in use)
        self.fingerprint = fingerprint_of(render(self.entries)[0] + f"min_length={min_length}".encode())
        self.paths = [Path(p) for p in paths]
        self.scheme = TagScheme(sorted(use), "BIO")
        self.matcher = LexiconMatcher(self.entries, min_length=min_length)

    def __len__(self) -> int:
        return len(self.scheme)

    def save(self, path: str | Path) -> None:
        """Write the merged entries as one lexicon file (what a run directory keeps)."""
        write_lexicon(self.entries, path, version="features")

    def token_ids(self, text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
        """One feature id per label-bearing token (``offsets`` relative to ``text``)."""
        spans = self.matcher.find(text)
        tags, _ = spans_to_token_tags(spans, offsets, self.scheme)
        return self.scheme.encode(tags)
