"""medner: Chinese clinical named-entity recognition on electronic medical records.

Public entry points:
    medner.types.Span, medner.types.Record   the only currency between stages
    medner.corpus.read_corpus                read any supported corpus format
    medner.load(path)                        a trained run directory as an Annotator
"""
from __future__ import annotations

from medner.types import Record, Span

__all__ = ["Record", "Span", "load", "__version__"]
__version__ = "0.1.0"


def load(path, **kwargs):
    """Load a run directory as an :class:`medner.annotate.Annotator`; keyword arguments as for
    :func:`medner.run.directory.load_annotator` (device, precision, batch_size, window, icd_lexicon)."""
    from medner.run.directory import load_annotator  # start-up time: `import medner` must not import torch

    return load_annotator(path, **kwargs)
