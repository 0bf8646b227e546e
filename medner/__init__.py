"""medner: Chinese clinical named-entity recognition on electronic medical records.

Public entry points:
    medner.types.Span, medner.types.Record   the only currency between stages
    medner.corpus.read_corpus                read any supported corpus format
    medner.load(path)                        load a trained run directory (model issue)
"""
from __future__ import annotations

from medner.types import Record, Span

__all__ = ["Record", "Span", "load", "__version__"]
__version__ = "0.1.0"


def load(path, **kwargs):
    """Load a trained run directory and return an :class:`medner.annotate.Annotator`."""
    from medner.annotate import Annotator

    return Annotator.load(path, **kwargs)
