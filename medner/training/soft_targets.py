"""Soft targets for distillation: the CRF marginals of one or more teacher runs, averaged, on every training window.

Averaging the teachers' per-token tag distributions is an output ensemble; a soup is one teacher. Teachers
must share the student's label scheme and tokenizer (the windows are tokenised once, by the student's
tokenizer, and fed to every teacher). Rows of the training dataset gain ``soft`` (``n_labels x n_tags``
probabilities, flattened) and ``gold`` (1 when the window's record has gold spans, 0 for an unlabelled text,
whose gold loss is then skipped).

The soft targets are cached beside the tokenised windows (``soft-<key>`` under the features cache), keyed by the
windows' fingerprint and the teachers' fingerprints: a resumed student, or another student of the same teachers
on the same texts (another seed, ``--layers`` or ``alpha``), reads them instead of running every teacher again.
The teachers are averaged in the order of their fingerprints, so the order they are named in changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import torch

from medner.errors import ConfigError
from medner.files import publish_folder
from medner.labels import TagScheme
from medner.model.windows import collate_windows, damaged, datasets_bars_off, load_cache_entry
from medner.run.directory import LoadedRun, load_run, read_meta

log = logging.getLogger(__name__)

SOFT_TARGETS_VERSION = "1"  # part of the cache key: bump when the values computed for the same inputs change


def load_teachers(paths: Sequence[str], scheme: TagScheme, tokenizer) -> list[LoadedRun]:
    """The teacher runs, checked against the student's label scheme and tokenizer before any is loaded."""
    check_teachers(paths, scheme, tokenizer)
    return [load_run(path) for path in paths]


def check_teachers(paths: Sequence[str], scheme: TagScheme, tokenizer) -> None:
    """Refuse a teacher whose tags or vocabulary differ from the student's (reads only their JSON files)."""
    student_vocab = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    for path in paths:
        labels = read_meta(path).get("labels")
        scheme_file = json.loads((Path(path) / "labels.json").read_text(encoding="utf-8"))
        if TagScheme.from_dict(scheme_file) != scheme:
            raise ConfigError(f"teacher has tags {scheme_file.get('tags')} (labels {labels}), the student "
                              f"{list(scheme.tags)}", where=str(path), field="distill.teachers",
                              fix="distil from teachers trained with the same `data.labels` and `data.scheme`")
        teacher_tok = json.loads((Path(path) / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
        if teacher_tok["model"] != student_vocab:
            raise ConfigError("teacher has another tokenizer (vocabulary) than the student", where=str(path),
                              field="distill.teachers",
                              fix="use teachers fine-tuned from the same encoder, and a student built from one of "
                                  "them (medner distill does this)")


@torch.no_grad()
def soft_targets(dataset, teachers: Sequence[LoadedRun], pad_id: int, batch_size: int = 32,
                 device: torch.device | None = None) -> list[list[float]]:
    """Per dataset row: the teachers' mean CRF marginals (softmax for a CRF-less teacher), flattened
    ``n_labels * n_tags`` floats."""
    device = device or torch.device("cpu")
    teachers = sorted(teachers, key=lambda t: t.fingerprint)  # the same sum, whatever order they are named in
    for teacher in teachers:
        teacher.tagger.to(device).eval()
    out: list[list[float]] = [[] for _ in range(len(dataset))]
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i]["input_ids"]))
    for lo in range(0, len(order), batch_size):
        chunk = order[lo : lo + batch_size]
        batch = {k: v.to(device) for k, v in collate_windows(dataset, chunk, pad_id).items()}
        mean = None
        for teacher in teachers:
            emissions = teacher.tagger.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"],
                                                 batch["lex"])
            crf = teacher.tagger.crf
            probs = crf.marginals(emissions, batch["label_mask"]) if crf is not None else emissions.softmax(-1)
            mean = probs if mean is None else mean + probs
        mean = (mean / len(teachers)).cpu()  # shape: (batch, n_labels, n_tags)
        for i, row_index in enumerate(chunk):
            k = int(batch["label_mask"][i].sum())  # its label-bearing tokens: the first k positions
            out[row_index] = mean[i, :k].reshape(-1).tolist()
    return out


def add_soft_targets(dataset, teachers: Sequence[LoadedRun], labelled_ids: set[str], pad_id: int,
                     batch_size: int = 32, cache_dir: Path | None = None, windows_key: str = "",
                     device: torch.device | None = None):
    """``dataset`` with the ``soft`` and ``gold`` columns (module docstring); the soft targets are read from (or
    written to) ``cache_dir`` when it and ``windows_key`` (the windows' fingerprint) are given, and computed with
    the teachers on ``device`` (default CPU) otherwise."""
    import datasets

    key = hashlib.sha256(json.dumps([SOFT_TARGETS_VERSION, windows_key,
                                     sorted(t.fingerprint for t in teachers)]).encode()).hexdigest()[:16]
    target = cache_dir / f"soft-{key}" if cache_dir is not None and windows_key else None
    cached = load_cache_entry(target)
    if cached is not None:
        soft = cached["soft"]
        log.info("distillation: soft targets of %d teacher(s) loaded from cache %s", len(teachers), target.name)
    else:
        soft = soft_targets(dataset, teachers, pad_id, batch_size, device)
        if target is not None:  # float32: the values are float32 marginals, stored exactly in half the space
            column = datasets.Dataset.from_dict(
                {"soft": soft}, features=datasets.Features({"soft": datasets.Sequence(datasets.Value("float32"))}))
            with datasets_bars_off():
                publish_folder(target, lambda folder: column.save_to_disk(str(folder)), replace=damaged)
    if len(soft) != len(dataset):  # a cache of other windows under this key: never train on misaligned targets
        raise ConfigError(f"cached soft targets have {len(soft)} rows for {len(dataset)} windows", where=str(target),
                          fix="delete that folder; the next run computes them again")
    gold = [1 if record_id in labelled_ids else 0 for record_id in dataset["record_id"]]
    log.info("distillation: soft targets of %d teacher(s) on %d windows (%d from unlabelled texts)", len(teachers),
             len(soft), gold.count(0))
    with datasets_bars_off():
        return dataset.add_column("soft", soft).add_column("gold", gold)
