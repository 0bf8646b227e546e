"""`medner distill`: one student run trained on the soft targets of one or more teacher runs.

The student starts from the first teacher: its encoder with LoRA merged, cut to ``layers`` transformer layers
when asked (every k-th layer kept, the last one always, as in DistilBERT's initialisation from the teacher),
and its head and CRF. It is trained as the first teacher's config says (data, windows, labels), with full
fine-tuning by default (a cut encoder must relearn more than adapters can), on ``alpha`` x the teachers' mean
CRF marginals + (1 - alpha) x the gold loss (:mod:`medner.training.soft_targets`), over the training records and
any unlabelled texts. It reads the gold of the records its teachers read (all, or their `gold_fraction` share;
the other training texts get soft targets only), never more. The result is an ordinary run directory. An
interrupted student resumes from its last checkpoint (``resume``; the teachers' soft targets are read from their
cache, :mod:`medner.training.soft_targets`).
"""
from __future__ import annotations

import copy
import logging
import shutil
from functools import partial
from pathlib import Path
from typing import Sequence

import torch

from medner.config import DistillConfig, RunConfig, apply_overrides, config_from_dict, read_yaml
from medner.encoders.loading import quiet_transformers
from medner.errors import ConfigError
from medner.files import is_inside, publish_folder
from medner.run.directory import LINK_FILE, is_exported, load_run, read_meta, read_run_config
from medner.training.finetune import check_resumed_config, finetune, init_distributed, is_published
from medner.training.gold_share import sample_seed
from medner.run.output_dir import check_output, prepare_output, refuse_inputs_inside
from medner.training.records import read_unlabelled, run_inputs, split_train_dev
from medner.training.soft_targets import check_teachers
from medner.training.text_sources import check_unlabelled

log = logging.getLogger(__name__)

STUDENT_INIT = "student_init"  # the cut encoder the student starts from, removed once the student is trained


def keep_layers(n_layers: int, keep: int) -> list[int]:
    """Indices of ``keep`` of ``n_layers`` layers, evenly spread and ending with the last: 12 -> 6 gives
    1, 3, 5, 7, 9, 11; 12 -> 4 gives 2, 5, 8, 11."""
    if not 1 <= keep <= n_layers:
        raise ConfigError(f"`--layers` must be between 1 and the teacher's {n_layers} layers, got {keep}",
                          field="layers")
    step = n_layers / keep
    return [round(n_layers - 1 - step * (keep - 1 - i)) for i in range(keep)]


def cut_encoder(encoder: torch.nn.Module, keep: int) -> torch.nn.Module:
    """The encoder with only the layers of :func:`keep_layers` (in place; BERT-style ``encoder.layer``)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError(f"cannot cut a {type(encoder).__name__}: no encoder.layer list", field="layers",
                          fix="distil without --layers, or use a BERT-style encoder")
    chosen = keep_layers(len(layers), keep)
    encoder.encoder.layer = torch.nn.ModuleList(layers[i] for i in chosen)
    encoder.config.num_hidden_layers = keep
    log.info("student encoder: layers %s of %d", chosen, len(layers))
    return encoder


def student_config(teachers: Sequence[str], out: Path, *, alpha: float, unlabelled: Sequence[str],
                   unlabelled_format: str, encoder_dir: Path | None, overrides: Sequence[str]) -> RunConfig:
    """The first teacher's config, made a distillation run into ``out`` (then ``overrides``, as ``--set``)."""
    base = read_run_config(teachers[0])
    tree = copy.deepcopy(base.to_dict())
    tree.update(output_dir=str(out), init_from=None, lora=None)
    if base.link is not None:  # the lexicon travels inside the teacher's run directory
        tree["link"]["lexicon"] = str(Path(teachers[0]) / LINK_FILE)
    tree["train"]["lr_encoder"] = 1e-4  # full fine-tuning of an already trained encoder
    tree["supervision"] = teachers_gold_share(teachers)
    tree["distill"] = DistillConfig(teachers=list(teachers), alpha=alpha, unlabelled=list(unlabelled),
                                    unlabelled_format=unlabelled_format).__dict__
    if encoder_dir is not None:
        tree["encoder"]["name"] = str(encoder_dir)
    apply_overrides(tree, list(overrides))
    return config_from_dict(tree)


def teachers_gold_share(teachers: Sequence[str]) -> dict:
    """The student's `supervision` section: the gold share every teacher read (all the gold records, or the same
    seeded `gold_fraction`), so that the student reads no gold its teachers did not. Teachers that read other
    shares, or no gold at all (weak mode, whose runs pick epochs on weak labels), are refused."""
    shares = {}
    for teacher in teachers:
        config = read_run_config(teacher)
        sup = config.supervision
        if sup.mode == "weak":
            raise ConfigError("the teacher was trained without gold (supervision.mode: weak), but a student reads "
                              "gold: its training records' and the dev records' for picking its epoch",
                              where=str(teacher), field="distill.teachers",
                              fix="distil from runs trained on gold (supervision.mode gold or weak+gold)")
        shares[teacher] = (sup.gold_fraction, sample_seed(config))
    if len(set(shares.values())) > 1:
        listed = "; ".join(f"{t}: {'all' if seed is None else f'{fraction} drawn with seed {seed}'}"
                           for t, (fraction, seed) in shares.items())
        raise ConfigError(f"the teachers read different shares of the gold records ({listed}): together they "
                          "know more gold than any one of them", field="distill.teachers",
                          fix="distil from teachers of one gold share: the same `supervision.gold_fraction`, and "
                              "`supervision.gold_seed` set to one value for runs of several seeds")
    fraction, seed = next(iter(shares.values()))
    return {} if seed is None else {"gold_fraction": fraction, "gold_seed": seed}


def _save_start(encoder: torch.nn.Module, tokenizer, folder: Path) -> None:
    """The student's starting encoder and its tokenizer, as an HF encoder directory in ``folder``."""
    with quiet_transformers():
        encoder.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))


def refuse_resume_of_another_run(out: Path, teachers: Sequence[str]) -> None:
    """Refuse ``--resume`` into a folder holding a run that is no student of ``teachers`` (a finished fine-tuning
    run, another distillation): it would be written into (the student's start) before its checkpoint is found not
    to fit."""
    path = out / "config.yaml"
    if not path.is_file():
        return  # killed before its first write
    saved = read_yaml(path)
    section = saved.get("distill") if isinstance(saved, dict) else None
    before = [str(t) for t in section.get("teachers") or []] if isinstance(section, dict) else []
    same = before == [str(t) for t in teachers] or [Path(t).resolve() for t in before] == [
        Path(t).resolve() for t in teachers]  # as written, or the same folders from here
    if not same:
        what = f"the student of {', '.join(map(str, before))}" if before else "a run that is no distillation student"
        raise ConfigError(f"--resume: this folder holds {what}, not a student of the teachers named now",
                          where=str(out), field="-o",
                          fix="name that student's teachers, or a new -o folder without --resume")


def distill(teachers: Sequence[str], out: str | Path, *, layers: int = 0, alpha: float = 0.5,
            unlabelled: Sequence[str] = (), unlabelled_format: str = "jsonl", overrides: Sequence[str] = (),
            progress: bool = True, overwrite: bool = False, resume: bool = False) -> Path:
    """Train the student run ``out`` (module docstring); returns its path. A non-empty ``out`` is refused unless
    ``resume`` (continue its training from the last checkpoint, with the same teachers and options) or
    ``overwrite`` (delete it, once the teachers, the texts and the student's records are read and checked)."""
    out = Path(out)
    if not teachers:
        raise ConfigError("name at least one teacher run directory")
    for teacher in teachers:  # finished runs (a killed or missing one is named), before anything else is read
        read_meta(teacher)
        if is_inside(out, teacher):
            raise ConfigError(f"-o {out} lies inside the teacher run {teacher}: the student would become part of "
                              "that run (copied, exported and checked with it)", field="-o",
                              fix="write the student to a folder of its own, e.g. beside the teacher")
    if is_exported(read_meta(teachers[0])):
        raise ConfigError("the first teacher is the student's start, but it is an exported run (its weights are a "
                          "runtime graph, not trainable)", where=str(teachers[0]), field="distill.teachers",
                          fix="name first the run it was exported from; an exported run may be a later teacher")
    init_dir = out / STUDENT_INIT
    config = student_config(teachers, out, alpha=alpha, unlabelled=unlabelled, unlabelled_format=unlabelled_format,
                            encoder_dir=init_dir, overrides=overrides)
    refuse_inputs_inside(out, [(key, path) for key, path in run_inputs(config) if key != "encoder.name"])
    check_output(out, resume=resume, overwrite=overwrite)
    if resume:
        refuse_resume_of_another_run(out, teachers)
    if resume and is_published(out, config, init_distributed(config.device)):  # before loading any teacher
        return out  # finished: its unlabelled texts need not exist any more
    if resume:
        check_resumed_config(out, config)  # before any teacher is loaded or text read
    check_unlabelled(config.distill.unlabelled, config.distill.unlabelled_format, "distill.unlabelled",
                     encoding=config.data.encoding, on_error=config.data.on_error)
    first = load_run(teachers[0], merge_lora=True)  # also verifies the run before anything is written
    fresh_start = not (resume and (init_dir / "config.json").is_file())  # the student's start: same on every resume
    encoder = cut_encoder(first.tagger.encoder, layers) if layers and fresh_start else first.tagger.encoder
    # everything the student reads is read and checked before --overwrite deletes the earlier student
    check_teachers(teachers, first.tagger.scheme, first.tokenizer)
    data = split_train_dev(config)
    unlabelled_texts = read_unlabelled(config.distill.unlabelled, config.distill.unlabelled_format, config, data[1],
                                       "distill.unlabelled")
    prepare_output(out, resume=resume, overwrite=overwrite)
    if fresh_start:
        shutil.rmtree(init_dir, ignore_errors=True)
        publish_folder(init_dir, partial(_save_start, encoder, first.tokenizer))  # complete, or absent
    del encoder, first
    run = finetune(config, progress=progress, output_ready=True, resume=resume, data=data,
                   unlabelled=unlabelled_texts)
    shutil.rmtree(init_dir, ignore_errors=True)
    return run
