"""The one rule for training outputs (finetune, its phases, distill, pretrain): a new run never mixes with an old one.

A non-empty output folder is refused unless the run resumes it (``--resume``) or replaces it (``--overwrite``),
which deletes the whole folder first. ``--overwrite`` deletes only a folder that holds an earlier medner run (one
of :data:`RUN_MARKERS`), never an unrelated folder named by mistake (``output_dir: .``).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from medner.errors import ConfigError
from medner.files import is_temporary_of

__all__ = ["RUN_MARKERS", "check_output", "prepare_output"]

log = logging.getLogger(__name__)

RUN_MARKERS = frozenset({
    "medner_model.json", "metrics.jsonl", "checkpoint", "phases", "dev_report.json", "training.png", "labels.json",
    "student_init",  # finetune, supervision phases, distill
    "medner_encoder.json", "pretrain_config.yaml",  # pretrain
})


def check_output(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> bool:
    """Raise :class:`ConfigError` unless ``out`` may receive a new run (or resume one); returns True when ``out``
    must be emptied first (``overwrite`` of an earlier run). Reads only, so every rank of a data-parallel run can
    check before any of them changes the folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("`output_dir` exists and is not a folder", where=str(out), fix="choose another output_dir")
    if resume or not out.is_dir():
        return False
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if not overwrite:
        raise ConfigError(f"`output_dir` is not empty ({len(entries)} {'entry' if len(entries) == 1 else 'entries'}, an earlier run?)", where=str(out),
                          fix="pass --resume to continue that run, --overwrite to replace it, or choose another "
                              "output_dir (e.g. --set output_dir=runs/NEW)")
    # a marker folder killed half-written (medner.files.publish_folder) marks a run too
    if not any(e in RUN_MARKERS or any(is_temporary_of(e, m) for m in RUN_MARKERS) for e in entries):
        raise ConfigError("`output_dir` holds no earlier medner run: --overwrite deletes only a run's folder",
                          where=str(out), fix="choose another output_dir, or empty this folder yourself")
    return True


def prepare_output(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """:func:`check_output`, then delete the folder when it must be emptied, and create it; returns it."""
    out = Path(out)
    if check_output(out, resume=resume, overwrite=overwrite):
        log.warning("%s: deleting the earlier run (--overwrite)", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
