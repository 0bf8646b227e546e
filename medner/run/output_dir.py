"""The one rule for run outputs (finetune, its phases, distill, pretrain, export): a new run never mixes with an old one.

A non-empty output folder is refused unless the run resumes it (``--resume``) or replaces it (``--overwrite``),
which deletes the whole folder first. ``--overwrite`` deletes only a folder that holds an earlier medner run (one
of :data:`RUN_MARKERS`) and nothing else (every entry is one a run writes, :func:`is_run_entry`): never an
unrelated folder named by mistake (``output_dir: .``), nor a file a user put beside a run's (``notes.txt``).
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Iterable

from medner.errors import ConfigError
from medner.files import is_inside, written_name

__all__ = ["RUN_MARKERS", "check_output", "is_run_entry", "is_run_marker", "prepare_output", "refuse_inputs_inside"]

log = logging.getLogger(__name__)

RUN_MARKERS = frozenset({
    "medner_model.json", "metrics.jsonl", "checkpoint", "phases", "dev_report.json", "training.png",
    "student_init",  # finetune, supervision phases, distill (not labels.json: some downloaded model folders hold one)
    "medner_encoder.json", "pretrain_config.yaml",  # pretrain
})
#: what else a run folder holds (medner.run.directory) and the Hugging Face files of a pretrained encoder
RUN_ENTRIES = RUN_MARKERS | {"config.yaml", "labels.json", "tokenizer", "encoder", "adapter", "head.safetensors",
                             "lexicon_features.tsv", "icd_lexicon.tsv", "exported", "dev_report.md", "README.md"}
_ENCODER_FILE = re.compile(r"(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|added_tokens"
                           r"|model\.safetensors\.index)\.json|model(-\d+-of-\d+)?\.safetensors|vocab\.(txt|json)"
                           r"|merges\.txt|sentencepiece\.bpe\.model|spiece\.model|spm\.model|tokenizer\.model"
                           r"|chat_template\.jinja")


def is_run_marker(name: str) -> bool:
    """Whether an entry of this name shows that a folder holds a medner run (:data:`RUN_MARKERS`, whole or left
    half-written by a kill); Hugging Face files alone do not (a downloaded model folder is no run)."""
    return written_name(name) in RUN_MARKERS


def is_run_entry(name: str) -> bool:
    """Whether a run (or a pretraining run) writes an entry of this name in its folder, whole or left half-written
    by a kill (:func:`medner.files.written_name`)."""
    name = written_name(name)
    return name in RUN_ENTRIES or _ENCODER_FILE.fullmatch(name) is not None


def check_output(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> bool:
    """Raise :class:`ConfigError` unless ``out`` may receive a new run (or resume one); returns True when ``out``
    must be emptied first (``overwrite`` of an earlier run). Reads only, so every rank of a data-parallel run can
    check before any of them changes the folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("`output_dir` exists and is not a folder", where=str(out), fix="choose another output_dir")
    if not out.is_dir():
        return False
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if resume:
        if not any(is_run_marker(e) for e in entries):  # a misspelt output_dir, or a folder of the user's
            raise ConfigError("`output_dir` holds no medner run to resume", where=str(out),
                              fix="check output_dir, or leave --resume out to start a run in an empty folder")
        return False
    if not overwrite:
        raise ConfigError(f"`output_dir` is not empty ({len(entries)} {'entry' if len(entries) == 1 else 'entries'}, an earlier run?)", where=str(out),
                          fix="pass --resume to continue that run, --overwrite to replace it, or choose another "
                              "output_dir (e.g. --set output_dir=runs/NEW)")
    if not any(is_run_marker(e) for e in entries):
        raise ConfigError("`output_dir` holds no earlier medner run: --overwrite deletes only a run's folder",
                          where=str(out), fix="choose another output_dir, or empty this folder yourself")
    if out.is_symlink():  # found only once every input was read, as "Cannot call rmtree on a symbolic link"
        raise ConfigError("`output_dir` is a symbolic link: --overwrite deletes a run's folder, not a link to one",
                          where=str(out), fix=f"name the folder it points to ({out.resolve()})")
    foreign = [e for e in entries if not is_run_entry(e)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"`output_dir` holds an earlier run and entries no run writes ({shown}): --overwrite "
                          "would delete them with the run", where=str(out),
                          fix="move them out of the folder first, or choose another output_dir")
    return True


def prepare_output(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """:func:`check_output`, then delete the folder when it must be emptied, and create it; returns it."""
    out = Path(out)
    if check_output(out, resume=resume, overwrite=overwrite):
        log.warning("%s: deleting the earlier run (--overwrite)", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def refuse_inputs_inside(out: str | Path, inputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse an input ``(field, path)`` that is the output folder or lies inside it: the run would write over what
    it reads, and ``--overwrite`` would delete it (a run's start, its corpus)."""
    folder = Path(out).resolve()
    for field, path in inputs:
        if Path(path).expanduser().resolve() == folder or is_inside(path, folder):
            raise ConfigError(f"`{field}` ({path}) lies in the output_dir {out}, which the run writes (and "
                              "--overwrite deletes)", field=field, fix="choose another output_dir")
