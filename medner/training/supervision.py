"""Training modes: gold labels, weak labels, weak pre-training then gold, and self-training rounds.

    gold        finetune on the gold spans (the default; same as :func:`medner.training.finetune.finetune`), of a seeded
                `gold_fraction` of the training records when it is below 1 (a learning-curve baseline)
    weak        finetune on weak labels of the training texts (their gold spans are dropped unread) and
                of `supervision.unlabelled`; dev is weak-labelled too, so no gold is used anywhere
    weak+gold   phase 1 as `weak` for `pretrain_epochs`, then phase 2 continues from its weights on the gold
                spans of a seeded `gold_fraction` of the training records
With `gold_phase_weak` (gold, weak+gold) the gold phase trains on the gold share, each record `gold_repeat` times,
plus the weak labels of the training texts left out of it and of `unlabelled` (joint training; their gold unread).
Then `self_training_rounds` times: predict `unlabelled` (and, when `gold_fraction` < 1, the training texts left
out of the gold share, their gold unread), keep texts whose spans all score at least `self_training_min_score`,
and continue training for `self_training_epochs` on gold/weak training records plus those pseudo-labels.
In weak mode the `unlabelled` texts are weak-labelled training texts already, so a confident pseudo-labelling
replaces a text's weak labels instead of adding the text twice. With `self_training_relabel` (weak mode) a round
relabels every weak training text (`unlabelled` included) with the current model, confident or not, and trains on
the model's labels in place of the weak ones. Each round continues from the previous phase's weights, or with
`self_training_fresh_student` trains a new model from the first phase's starting point (`init_from`, else the
encoder) on the teacher's labels.
With `data.auxiliary`, an intermediate phase comes first: the other corpora plus the target records with the labels the
run may read (the gold of all of them or of the `gold_fraction` share; in weak mode their weak labels, and a
weak-labelled dev), so the phase never reads gold that the run without it would not read.
Intermediate phases are written under ``<output_dir>/phases/``; the last phase writes ``output_dir``.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import yaml

from medner.config import RunConfig, dump_config, get_dotted, read_yaml
from medner.errors import ConfigError
from medner.run.directory import load_annotator
from medner.training.auxiliary import auxiliary_labels, read_auxiliary
from medner.training.gold_share import gold_share
from medner.training.finetune import finetune, init_distributed, is_published, prepare_run_output
from medner.run.output_dir import check_output
from medner.training.records import check_run_start, read_unlabelled, split_train_dev, without_dev_texts
from medner.types import Record
from medner.weak.pipeline import WeakPipeline

log = logging.getLogger(__name__)


def strip_spans(records: list[Record]) -> list[Record]:
    """The same texts with no spans: what a weak labeller may see."""
    return [r.with_spans(()) for r in records]


def weak_label(records: list[Record], weak_config: str) -> list[Record]:
    """Aggregated weak spans for ``records`` (whose own spans are ignored)."""
    pipeline = WeakPipeline.from_config(weak_config)
    result = pipeline.label(strip_spans(records))
    n = sum(len(r.spans) for r in result.records)
    log.info("weak labels: %d spans on %d records", n, len(result.records))
    return result.records


def model_labels(run_dir: Path, records: list[Record]) -> list[Record]:
    """``records`` with the spans the model in ``run_dir`` predicts in place of their own (same order)."""
    return list(load_annotator(run_dir).predict_records(strip_spans(records)))


def pseudo_label(run_dir: Path, records: list[Record], min_score: float) -> dict[int, Record]:
    """Texts the model labels confidently (every predicted span scores >= ``min_score``), by position in ``records``."""
    kept = {i: r for i, r in enumerate(model_labels(run_dir, records))
            if all((s.score or 0.0) >= min_score for s in r.spans)}
    log.info("self-training: kept %d of %d pseudo-labelled texts", len(kept), len(records))
    return kept


# the keys that decide which records and labels a phase reads (the seed too, where it draws a sample)
PHASE_DATA_KEYS = ("data.format", "data.train", "data.dev", "data.dev_last", "data.dev_fraction", "data.train_limit",
                   "supervision.mode", "supervision.gold_fraction", "supervision.gold_seed", "supervision.weak_config",
                   "supervision.unlabelled")


def check_phase_data(cfg: RunConfig, name: str) -> None:
    """A phase found in its folder (a resumed run, or one copied in as a finished phase) must have read the records
    and labels this run's phase would read: else, say, an intermediate phase trained on all the gold would pass
    as the phase of a weak-only run. A ConfigError names the first key that differs."""
    saved_path = Path(cfg.output_dir) / "config.yaml"
    if not saved_path.is_file():
        return
    saved, now = read_yaml(saved_path), yaml.safe_load(dump_config(cfg))
    keys = list(PHASE_DATA_KEYS)
    if (cfg.supervision.gold_fraction < 1.0 and cfg.supervision.gold_seed is None) or cfg.data.dev_fraction:
        keys.append("seed")  # it draws a sample
    for key in keys:
        old, new = get_dotted(saved, key), get_dotted(now, key)
        if old != new:
            raise ConfigError(f"the {name} phase there read other data: {key} was {old!r}, this run has {new!r}",
                              where=str(cfg.output_dir), field=key,
                              fix="delete that folder to train the phase again, or use --overwrite")


def _phase(config: RunConfig, name: str, final: bool) -> RunConfig:
    phase = copy.deepcopy(config)
    if not final:
        phase.output_dir = str(Path(config.output_dir) / "phases" / name)
    return phase


def run_phases(config: RunConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Run every training phase the `supervision` section asks for (each one :func:`finetune`); returns the
    final run directory.

    ``output_dir`` is checked once, for the whole run, before any phase: a non-empty one is refused unless
    ``resume`` (each phase continues from its last checkpoint, finished phases train nothing) or ``overwrite``
    (the whole folder, phases included, is deleted once every input is read and checked, so bad input leaves it
    as it was)."""
    sup = config.supervision
    rounds = sup.self_training_rounds
    auxiliary = config.data.auxiliary
    if (sup.mode == "gold" and not rounds and sup.gold_fraction == 1.0 and not sup.gold_phase_weak
            and not auxiliary):
        return finetune(config, resume=resume, overwrite=overwrite, progress=progress)
    dist = init_distributed(config.device)
    # the last phase's run is the output; its config is this one with the phase's start (and epochs, in rounds)
    phase_keys = ["init_from", "init_head", "init_head_subset"] + (["train.epochs"] if rounds else [])
    if resume and is_published(Path(config.output_dir), config, dist, ignore=phase_keys):
        return Path(config.output_dir)  # finished: its start and outside texts need not exist any more
    check_run_start(config)  # before anything is read or written
    if (sup.mode != "gold" or auxiliary) and not config.data.labels:
        raise ConfigError(f"`supervision.mode: {sup.mode}` with `data.auxiliary` needs `data.labels`" if auxiliary
                          else f"`supervision.mode: {sup.mode}` needs `data.labels` (the label set cannot come "
                               "from gold)", fix="list the target labels in `data.labels`")
    check_output(config.output_dir, resume=resume, overwrite=overwrite)  # reads only, on every rank
    steps: list[tuple[str, RunConfig, tuple[list[Record], list[Record]]]] = []
    fresh_head_after = None
    if auxiliary:  # read and checked before anything else is read or trained
        aux_records = [r for aux in auxiliary for r in read_auxiliary(aux, config.data.labels)]
        own = auxiliary_labels(auxiliary, aux_records)
        aux_cfg = _phase(config, "auxiliary", final=False)
        aux_cfg.data.labels = list(config.data.labels) + own
        aux_cfg.data.auxiliary = []
        aux_cfg.train.epochs = sup.auxiliary_epochs
        fresh_head_after = "auxiliary" if own else None
    train_records, dev_records = split_train_dev(config)
    if auxiliary:
        aux_records = without_dev_texts(aux_records, dev_records, "data.auxiliary")
    unlabelled = read_unlabelled(sup.unlabelled, sup.unlabelled_format, config, dev_records, "supervision.unlabelled")
    gold, left_out = gold_share(config, train_records)
    weak_train: list[Record] = []
    weak_dev: list[Record] = []
    if sup.mode in ("weak", "weak+gold"):
        weak_train = weak_label(train_records + unlabelled, sup.weak_config)
        weak_dev = weak_label(dev_records, sup.weak_config)
    if auxiliary:  # the target records with the labels the run may read: weak ones only in weak mode, dev included
        steps.append(("auxiliary", aux_cfg, (weak_train + aux_records, weak_dev) if sup.mode == "weak"
                      else (gold + aux_records, dev_records)))
    if sup.mode in ("weak", "weak+gold"):
        cfg = _phase(config, "weak", final=sup.mode == "weak" and not rounds)
        if sup.mode == "weak+gold":
            cfg.train.epochs = sup.pretrain_epochs
        steps.append(("weak", cfg, (weak_train, weak_dev)))
        base_train = weak_train
    if sup.mode in ("gold", "weak+gold"):
        if sup.gold_fraction < 1.0:
            log.info("gold phase: %d of %d training records", len(gold), len(train_records))
            if rounds:  # the rest are texts without labels, as in a real 10%-annotated corpus
                unlabelled = strip_spans(left_out) + unlabelled
        base_train = gold
        if sup.gold_phase_weak:  # joint training: the gold share, repeated, + weak labels of the texts without gold
            if weak_train:  # weak+gold: the labels the weak phase trained on
                weak_of = {id(r): w for r, w in zip(train_records + unlabelled, weak_train)}
                weak = [weak_of[id(r)] for r in left_out + unlabelled]
            else:
                weak = weak_label(left_out + unlabelled, sup.weak_config)
            base_train = gold * sup.gold_repeat + weak
            log.info("gold phase: %d gold records x%d + weak labels of %d texts", len(gold), sup.gold_repeat,
                     len(weak))
        steps.append(("gold", _phase(config, "gold", final=not rounds), (base_train, dev_records)))
    if resume:  # every phase folder, before any phase trains (a later one may hold other data)
        for name, cfg, _ in steps:
            check_phase_data(cfg, name)
    # every input is read and checked: now --overwrite may delete the earlier run
    prepare_run_output(config.output_dir, dist, resume=resume, overwrite=overwrite)
    run_dir = None
    previous = None
    for name, cfg, data in steps:
        if run_dir is not None:
            cfg.init_from = str(run_dir)
            # after corpora with their own labels: a fresh head, or (`kept`) that head's rows of the target tags
            after_own, kept = previous == fresh_head_after, sup.auxiliary_head == "kept"
            cfg.init_head, cfg.init_head_subset = not after_own or kept, after_own and kept
        log.info("phase %s -> %s", name, cfg.output_dir)
        run_dir = finetune(cfg, resume=resume, progress=progress, data=data, output_ready=True,
                           score_labels=config.data.labels if name == "auxiliary" else None)
        previous = name
    dev = steps[-1][2][1]
    for k in range(1, rounds + 1):
        if sup.self_training_relabel:  # weak mode: `unlabelled` is already among the weak training texts
            base_train = round_train = model_labels(run_dir, base_train)
            log.info("self-training: the model relabelled %d weak training texts (%d spans)", len(base_train),
                     sum(len(r.spans) for r in base_train))
        else:
            pseudo = pseudo_label(run_dir, unlabelled, sup.self_training_min_score)
            if sup.mode == "weak":  # `unlabelled` is the tail of the weak training texts: model labels replace weak
                offset = len(base_train) - len(unlabelled)
                round_train = [pseudo.get(i - offset, r) for i, r in enumerate(base_train)]
            else:
                round_train = base_train + list(pseudo.values())
        cfg = _phase(config, f"self_training_{k}", final=k == rounds)
        cfg.init_from = config.init_from if sup.self_training_fresh_student else str(run_dir)
        cfg.train.epochs = sup.self_training_epochs or config.train.epochs
        before, run_dir = run_dir, finetune(cfg, resume=resume, progress=progress, data=(round_train, dev),
                                            output_ready=True)
        _warn_if_worse(before, run_dir, f"self-training round {k}")
    return run_dir


def _warn_if_worse(before: Path, after: Path, what: str) -> None:
    """Warn when ``after`` scored a lower dev F1 than ``before`` (the round or phase before it), whose pseudo-labels
    it learnt: the run's output is the last round's model."""
    def f1(run_dir: Path) -> float | None:
        try:
            return json.loads((run_dir / "dev_report.json").read_text(encoding="utf-8"))["micro"]["f1"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    old, new = f1(before), f1(after)
    if old is not None and new is not None and new < old:
        log.warning("%s: dev F1 %.2f, below the %.2f of the model before it; the output is the last round's model "
                    "(fewer `supervision.self_training_rounds` keep the better one)", what, 100 * new, 100 * old)
