"""finetune(config) -> run directory. No argument parsing here.

The loop: AdamW with two learning rates (encoder or LoRA adapters; head + CRF), warmup then decay,
gradient accumulation and clipping, dev strict F1 after each epoch with early stopping, a checkpoint for
``resume`` every ``train.checkpoint_every`` steps and at each epoch end, data-parallel when launched with
``torchrun --nproc_per_node N``. Tokenised windows are cached as Arrow datasets.

Each epoch ends by recording its metrics and dev report in the trainer state, saving the checkpoint, and only
then writing ``metrics.jsonl``, ``dev_report.*``, the best model and ``training.png`` from that state. So
``resume`` after a kill at any moment rewrites those outputs from the checkpoint it resumes from and trains the
rest: the run directory ends as an unbroken run's (only ``elapsed_s`` differs).
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Sequence

import torch
import yaml
from transformers import get_scheduler

from medner.annotate import Annotator
from medner.cache import cache_root
from medner.config import (RunConfig, config_changes, config_from_dict, dump_config, read_yaml,
                           refuse_resume_changes)
from medner.corpus.validate import label_name
from medner.encoders.loading import add_lora, count_parameters, load_encoder, load_tokenizer, resolve_encoder_dir
from medner.encoders.punctuation import isolate_punctuation
from medner.errors import ConfigError, ModelError
from medner.evaluate import score, write_report
from medner.files import atomic_write_text
from medner.labels import TagScheme, allowed_transitions
from medner.model.crf import transition_priors
from medner.model.device import autocast, grad_scaler, resolve_device, resolve_dtype
from medner.model.lexicon_features import LexiconTagger
from medner.model.tagger import Tagger
from medner.model.windows import build_dataset, collate_windows, fingerprint as windows_fingerprint
from medner.progress import Progress
from medner.run.directory import (CARD_FILE, is_run_dir, load_head, load_run, read_meta, save_run,
                                   verify, write_model_card)
from medner.training import checkpoint as ckpt
from medner.training.adversarial import FGM
from medner.training.gold_share import gold_share
from medner.run.output_dir import check_output, prepare_output
from medner.training.records import check_run_start, check_start, read_unlabelled, restrict_labels, split_train_dev
from medner.training.soft_targets import add_soft_targets, load_teachers
from medner.types import Record

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"


# ------------------------------------------------------------------------------------------ batching

def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of indices; within pools of 50 batches, rows are sorted by length (less padding)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for lo in range(0, len(order), pool):
        chunk = sorted(order[lo : lo + pool], key=lambda i: lengths[i])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


# ---------------------------------------------------------------------------------------- optimiser

def build_optimizer(tagger: Tagger, config: RunConfig) -> torch.optim.Optimizer:
    """AdamW, parameter groups per learning rate: with and without weight decay (biases, norms, CRF), and with
    `train.llrd` < 1 one group per encoder depth (layer-wise learning-rate decay)."""
    head_ids = {id(p) for m in tagger.head_modules().values() for p in m.parameters()}
    n_layers = tagger.encoder.config.num_hidden_layers
    groups: dict[tuple[str, int, bool], list] = {}
    for name, param in tagger.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if id(param) in head_ids else "encoder"
        depth = encoder_depth(name, n_layers) if part == "encoder" and config.train.llrd < 1 else 0
        no_decay = param.ndim < 2 or "norm" in name.lower() or name.startswith("crf.")
        groups.setdefault((part, depth, no_decay), []).append(param)
    if config.train.llrd < 1 and not any(depth for part, depth, _ in groups if part == "encoder"):
        log.warning("train.llrd: no encoder parameter sits in a numbered layer (`.layer.N.`), so every one trains at "
                    "lr_encoder: layer-wise decay is off for this encoder")
    lrs = {"encoder": config.train.lr_encoder, "head": config.train.lr_head}
    param_groups = [{"params": params, "lr": lrs[part] * config.train.llrd ** depth,
                     "weight_decay": 0.0 if no_decay else config.train.weight_decay,
                     "name": f"{part}{f'-{depth}' if depth else ''}{'-no-decay' if no_decay else ''}"}
                    for (part, depth, no_decay), params in sorted(groups.items())]
    return torch.optim.AdamW(param_groups)


def encoder_depth(name: str, n_layers: int) -> int:
    """How many layers below the top an encoder parameter sits: 0 for the last layer (and anything above the
    layers), ``n_layers - 1 - i`` in layer i, ``n_layers`` for the embeddings."""
    found = re.search(r"\.layers?\.(\d+)\.", name)
    if found:
        return max(0, n_layers - 1 - int(found.group(1)))
    return n_layers if "embeddings" in name else 0


def warmup_steps(total_steps: int, warmup_ratio: float, warmup_min_steps: int) -> int:
    """``warmup_ratio`` of the steps, but at least ``warmup_min_steps`` (capped at a quarter of all steps)."""
    return max(int(math.ceil(total_steps * warmup_ratio)), min(warmup_min_steps, total_steps // 4))


def build_scheduler(optimizer, config: RunConfig, total_steps: int):
    warmup = warmup_steps(total_steps, config.train.warmup_ratio, config.train.warmup_min_steps)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.train.decay]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


# -------------------------------------------------------------------------------------- distributed

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def init_distributed(device_name: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        # a long timeout: the other ranks wait at a barrier while the main one tokenises or runs the teachers
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(hours=2))
        if use_cuda:
            torch.cuda.set_device(local)
    return Dist(rank, world, local)


# ------------------------------------------------------------------------------------------ training

@dataclass
class TrainingInputs:
    """What a run trains on: records, label scheme, encoder/tokenizer, lexicon features and the windows."""

    train: list[Record]
    dev: list[Record]
    scheme: TagScheme
    encoder_dir: Path
    tokenizer: object
    lexicon: object | None
    dataset: object  # datasets.Dataset of tokenised windows
    feature_stats: dict


def prepare_inputs(config: RunConfig, dist: Dist, data: tuple[list[Record], list[Record]] | None,
                   device: torch.device | None = None, unlabelled: list[Record] | None = None) -> TrainingInputs:
    """Read and check the records, resolve the encoder and tokenizer, and build (or reuse) the window cache
    (and a distillation's soft targets, its teachers run on ``device``, over ``unlabelled`` texts when given,
    else the ``distill.unlabelled`` files).

    Under data parallelism the main process imports/prunes the encoder and tokenises; the others wait and
    reuse its caches.
    """
    train_records, dev_records = data if data is not None else split_train_dev(config)
    found = Counter(s.label for r in train_records for s in r.spans)
    scheme = TagScheme(config.data.labels or set(found), config.data.scheme)
    if not any(found[t] for t in scheme.types):  # nothing to learn: a wrong format reads records without spans
        raise ConfigError(f"the {len(train_records)} training records hold no span"
                          + (f" of data.labels {list(scheme.types)}" if config.data.labels else ""),
                          where=", ".join(config.data.train), field="data.format",
                          fix=f"check that the files are `data.format: {config.data.format}` and hold annotations, "
                              "and that `data.labels` names their labels")
    unused = [t for t in scheme.types if not found[t]]
    if unused:
        log.warning("data.labels %s: no training span (misspelt? the run cannot learn them)", ", ".join(unused))
    train_records, dropped_train = restrict_labels(train_records, scheme.types)
    dev_before, (dev_records, dropped_dev) = dev_records, restrict_labels(dev_records, scheme.types)
    if dropped_train or dropped_dev:
        dev_labels = {s.label for r in dev_before for s in r.spans}
        dropped = sorted((set(found) | dev_labels) - set(scheme.types))
        log.warning("dropped %d train and %d dev spans whose label is not in data.labels: %s", dropped_train,
                    dropped_dev, ", ".join(label_name(label) for label in dropped))
    log.info("train %d records, dev %d records, %d entity types, %d tags", len(train_records), len(dev_records),
             len(scheme.types), len(scheme))
    if config.crf.enabled:  # check the priors against the label scheme before any heavy work
        transition_priors(config.crf.transition_weights, list(scheme.tags), *allowed_transitions(scheme))

    cache = cache_root(config.encoder.cache_dir)
    if config.init_from:  # the earlier run's encoder and vocabulary, so its weights fit
        encoder_dir, tokenizer_dir = Path(config.init_from) / "encoder", Path(config.init_from) / "tokenizer"
    else:
        for turn in ("main", "others"):
            if (turn == "main") == dist.main:
                encoder_dir = resolve_encoder_dir(config.encoder, prune_texts=[r.text for r in train_records])
            dist.barrier()
        tokenizer_dir = encoder_dir
    tokenizer = load_tokenizer(tokenizer_dir)
    if config.encoder.isolate_punctuation and isolate_punctuation(tokenizer):
        log.info("tokenizer: punctuation and symbols isolated as tokens of their own")
    lexicon = None
    if config.lexicon_features is not None:
        lexicon = LexiconTagger(config.lexicon_features.lexicon, config.lexicon_features.labels,
                                config.lexicon_features.min_length)
        log.info("lexicon features: %d tags from %s", len(lexicon), ", ".join(p.name for p in lexicon.paths))
    teachers = []
    windowed = train_records
    if config.distill is not None:  # teachers checked before any window is built
        teachers = load_teachers(config.distill.teachers, scheme, tokenizer)
        train_records, left_out = gold_share(config, train_records)  # the gold share the teachers read
        if left_out:
            log.info("distillation: gold of %d training records (supervision.gold_fraction), the other %d are texts "
                     "with soft targets only", len(train_records), len(left_out))
        windowed = (train_records + [r.with_spans(()) for r in left_out]
                    + (unlabelled if unlabelled is not None else
                       read_unlabelled(config.distill.unlabelled, config.distill.unlabelled_format, config,
                                       dev_records, "distill.unlabelled")))
    for turn in ("main", "others"):
        if (turn == "main") == dist.main:
            dataset, feature_stats, cached = build_dataset(windowed, tokenizer, config.window, scheme,
                                                           config.data.overlap_policy, cache / "features", lexicon)
        dist.barrier()
    log.info("training windows: %d (%s); %s", len(dataset), "cached" if cached else "tokenised",
             ", ".join(f"{k}={v}" for k, v in feature_stats.items()))
    if teachers:
        windows_key = windows_fingerprint(windowed, tokenizer, config.window, scheme, config.data.overlap_policy,
                                          lexicon)
        for turn in ("main", "others"):  # the main rank computes and caches them, the others read them
            if (turn == "main") == dist.main:
                with_soft = add_soft_targets(dataset, teachers, {r.id for r in train_records},
                                             tokenizer.pad_token_id or 0, config.train.eval_batch_size,
                                             cache / "features", windows_key, device)
            dist.barrier()
        dataset = with_soft
    return TrainingInputs(train_records, dev_records, scheme, encoder_dir, tokenizer, lexicon, dataset, feature_stats)


def build_tagger(config: RunConfig, inputs: TrainingInputs, device: torch.device) -> Tagger:
    """Encoder (+ LoRA adapters) -> head -> CRF, warm-started from ``config.init_from`` when set."""
    encoder = load_encoder(inputs.encoder_dir, config.encoder.hidden_dropout, config.encoder.attention_dropout)
    if config.lora is not None:
        encoder = add_lora(encoder, config.lora)
    tagger = Tagger.from_config(encoder, inputs.scheme, config,
                                n_lexicon_tags=len(inputs.lexicon) if inputs.lexicon else 0).to(device)
    if config.init_from:
        warm_start(tagger, Path(config.init_from), head=config.init_head, head_subset=config.init_head_subset)
    if config.distill is not None:
        tagger.soft_weight = config.distill.alpha
        if config.distill.init_head_from_teacher and not config.init_from:
            tagger.load_head_state(load_head(config.distill.teachers[0]))
    return tagger


def clear_earlier_run(out: Path) -> None:
    """Remove the metrics and checkpoints of a run that ``--resume`` found no intact checkpoint of."""
    stale = [p for p in (out / METRICS_FILE, out / CHECKPOINT_DIR) if p.exists()]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def prepare_run_output(out: str | Path, dist: Dist, *, resume: bool, overwrite: bool) -> Path:
    """The output folder of a run, once for the whole run (all phases): every rank checks it (a non-empty folder
    is refused unless ``resume`` or ``overwrite``, see :mod:`medner.run.output_dir`), then the main rank
    empties it if need be and creates it."""
    out = Path(out)
    replace = check_output(out, resume=resume, overwrite=overwrite)  # on every rank, before anything changes
    dist.barrier()
    if dist.main:
        prepare_output(out, resume=resume, overwrite=replace)
    dist.barrier()
    return out


class Publisher:
    """Writes a run's outputs from a checkpointed :class:`~medner.training.checkpoint.TrainerState`: the best
    epoch's dev report and model, ``metrics.jsonl`` and ``training.png``. Every file is written whole from the
    state, so writing again after a kill leaves the files a clean run leaves; random generators are untouched."""

    def __init__(self, out: Path, tagger: Tagger, tokenizer, config: RunConfig, inputs: TrainingInputs,
                 extra: dict, device: torch.device) -> None:
        self.out, self.tagger, self.tokenizer, self.config = out, tagger, tokenizer, config
        self.inputs, self.extra, self.device = inputs, extra, device

    def __call__(self, state: ckpt.TrainerState, *, model: bool) -> None:
        """Write the outputs; the model (from the tagger's current weights) only when ``model``."""
        with _random_untouched(self.device):
            if state.best_report is not None:
                write_report(state.best_report, self.out / "dev_report")
            if model:
                save_run(self.tagger, self.tokenizer, self.config, self.out, self.inputs.encoder_dir,
                         lexicon=self.inputs.lexicon, extra={"best_epoch": state.best_epoch, **self.extra})
            write_metrics(self.out / METRICS_FILE, state.metrics)
            if state.metrics:
                plot_metrics(self.out / METRICS_FILE, self.out / "training.png")

    def catch_up(self, state: ckpt.TrainerState) -> None:
        """After loading a checkpoint (the tagger holds its weights): make the outputs what it says, whether the
        kill came before, while or after they were written."""
        if state.epoch and not state.metrics:  # a checkpoint of an earlier medner: its rows are in the files
            state.metrics = read_metrics(self.out / METRICS_FILE, "epoch", state.epoch)
            report = self.out / "dev_report.json"
            if state.best_report is None and report.is_file():
                state.best_report = json.loads(report.read_text(encoding="utf-8"))
        saved = saved_epoch(self.out)
        model = False
        if state.best_epoch and saved != state.best_epoch:
            if state.epoch == state.best_epoch and state.batch_in_epoch == 0:
                model = True  # the checkpoint is the end of the best epoch: its weights are that model
            else:
                log.warning("%s: the saved model is of epoch %s but the checkpoint resumed from records epoch %d as "
                            "the best; it stays until an epoch scores better", self.out, saved or "-",
                            state.best_epoch)
        self(state, model=model)

def saved_epoch(out: Path) -> int | None:
    """The epoch of the complete, intact model in the run directory ``out``, if any."""
    try:
        meta = read_meta(out)
        verify(out, meta)
    except ModelError:
        return None
    return meta.get("best_epoch")


def is_published(out: Path, config: RunConfig, dist: Dist, *, ignore: Sequence[str] = ()) -> bool:
    """Whether the run in ``out`` was trained with ``config`` (its ``config.yaml`` equal to it, but for the
    dotted keys in ``ignore``), has finished, and every output its last checkpoint records is written (the model
    of its best epoch, intact; all its metrics rows; the model card, written last): then ``--resume`` need not
    prepare any data, and says so. A kill before those writes, or another config (whose model may not fit the
    checkpoint: the long way names that), gives False. Rank 0 decides for every rank."""
    done = False
    if dist.main:
        state = ckpt.finished_state(out / CHECKPOINT_DIR)
        done = (state is not None and bool(state.metrics) and (out / CARD_FILE).is_file()
                and _same_config(out / "config.yaml", config, ignore)
                and saved_epoch(out) == state.best_epoch
                and same_rows(read_metrics(out / METRICS_FILE, "epoch", state.epoch), state.metrics))
    done = _agree(done, dist)
    if done:
        log.info("the run in %s has finished and its outputs are written; nothing to resume", out)
    return done


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Whether two lists of metrics rows are equal, NaN equal to NaN (a diverged epoch's loss is a row too)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


#: keys a resumed run may change: they move no weight (where the folder and the run are, how often it saves and
#: logs, eval batches)
RESUME_FREE = ("output_dir", "device", "train.checkpoint_every", "train.log_every", "train.eval_batch_size",
               "train.num_workers")


def check_resumed_config(out: Path, config: RunConfig) -> None:
    """Refuse ``--resume`` of an unfinished run in ``out`` under a config whose training differs from its
    ``config.yaml`` (other data, labels, schedule...): its checkpoint would continue on what it was not trained on,
    and the run would then claim the new config. Keys in :data:`RESUME_FREE` may change. A finished run trains no
    further and is taken as it is (a recipe may start several runs from one finished phase)."""
    path = out / "config.yaml"
    if not path.is_file() or ckpt.finished_state(out / CHECKPOINT_DIR) is not None:
        return  # killed before its first write, or finished: nothing to continue
    try:  # through today's defaults: a key added to medner since the run was written is no difference
        saved = yaml.safe_load(dump_config(config_from_dict(read_yaml(path), where=path)))
    except ConfigError:
        return  # written by a medner whose keys this one no longer reads: nothing to compare with
    saved = _moved(saved, str(saved.get("output_dir", "")), str(config.output_dir))
    refuse_resume_changes(path, config_changes(saved, config, RESUME_FREE))


def _moved(tree, old: str, new: str):
    """``tree`` with paths in the folder ``old`` (a phase's start, a student's first encoder) moved to ``new``."""
    if isinstance(tree, dict):
        return {k: _moved(v, old, new) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_moved(v, old, new) for v in tree]
    if isinstance(tree, str) and old and old != new and (tree == old or tree.startswith(old.rstrip("/") + "/")):
        return new + tree[len(old):]
    return tree


def _same_config(path: Path, config: RunConfig, ignore: Sequence[str]) -> bool:
    """Whether the YAML at ``path`` is ``config``, leaving out the dotted keys ``ignore``."""
    try:
        saved = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(saved, dict) and not config_changes(saved, config, ignore)


def read_metrics(path: Path, key: str, last: int) -> list[dict]:
    """The rows of ``path`` whose ``key`` is at most ``last``, one per value (the last written wins), in order;
    unreadable lines are skipped. For resuming from a checkpoint that does not hold the rows itself."""
    rows: dict = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get(key), int) and row[key] <= last:
                rows[row[key]] = row
    return [rows[k] for k in sorted(rows)]


def write_metrics(path: Path, rows: list[dict]) -> None:
    """``metrics.jsonl``: one JSON object a line, written whole (atomically)."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


@contextmanager
def _random_untouched(device: torch.device) -> Iterator[None]:
    """Restore the torch and Python random states on leaving: writing outputs must not change training."""
    python_state = random.getstate()
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(python_state)


def finetune(config: RunConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
             data: tuple[list[Record], list[Record]] | None = None, output_ready: bool = False,
             score_labels: Sequence[str] | None = None, unlabelled: list[Record] | None = None) -> Path:
    """Train as ``config`` says and write the run directory ``config.output_dir``; returns its path.

    A non-empty ``output_dir`` is refused unless ``resume`` (continue its run from the last checkpoint; a finished
    run returns at once) or ``overwrite`` (the earlier run is deleted once the new run's inputs are read and
    checked, so bad input leaves it as it was). ``data`` (train, dev) replaces reading ``config.data``, and
    ``output_ready`` skips the output and start checks (:func:`check_run_start`): both for callers that prepared
    the run themselves (the supervision phases, distill); ``unlabelled`` likewise replaces reading a student's
    ``distill.unlabelled`` files.
    ``score_labels``: dev scores count predicted spans of these labels only (default: all).
    """
    dist = init_distributed(config.device)
    out = Path(config.output_dir)
    if resume and is_published(out, config, dist):
        return out  # finished: its start and outside texts need not exist any more
    if resume:
        check_resumed_config(out, config)
    if output_ready:  # the caller prepared the run, and checked its start
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
        dist.barrier()
    else:
        check_run_start(config)
        check_output(out, resume=resume, overwrite=overwrite)  # reads only: an earlier run stays till inputs are read
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    device = resolve_device(config.device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    dtype = resolve_dtype(config.precision, device)

    inputs = prepare_inputs(config, dist, data, device, unlabelled)
    if not output_ready:  # the inputs are read and checked: now --overwrite may delete the earlier run
        prepare_run_output(out, dist, resume=resume, overwrite=overwrite)
    dataset, tokenizer, dev_records = inputs.dataset, inputs.tokenizer, inputs.dev
    tagger = build_tagger(config, inputs, device)
    trainable, total = count_parameters(tagger)
    log.info("parameters: %d trainable of %d (%.2f%%)", trainable, total, 100.0 * trainable / total)
    tagger.rdrop_alpha = config.train.rdrop_alpha
    fgm = FGM(tagger.encoder, config.train.fgm_epsilon) if config.train.fgm_epsilon > 0 else None
    model = tagger
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            tagger, device_ids=[device.index] if device.type == "cuda" else None)

    lengths = [len(ids) for ids in dataset["input_ids"]]
    batches_per_rank = math.ceil(math.ceil(len(lengths) / config.train.batch_size) / dist.world)
    steps_per_epoch = math.ceil(batches_per_rank / config.train.grad_accum)
    total_steps = steps_per_epoch * config.train.epochs
    if config.train.max_steps:
        total_steps = min(total_steps, config.train.max_steps)
    optimizer = build_optimizer(tagger, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    state = ckpt.TrainerState()
    extra = {"trainable_parameters": trainable, "total_parameters": total, "features": inputs.feature_stats}
    publish = Publisher(out, tagger, tokenizer, config, inputs, extra, device)
    if resume:
        loaded = ckpt.load_checkpoint(out / CHECKPOINT_DIR, tagger, optimizer, scheduler)
        if loaded is None:
            log.warning("%s holds no complete checkpoint: training from the start", out)
            if dist.main:
                clear_earlier_run(out)
        else:
            state = loaded
            log.info("resumed from epoch %d, step %d", state.epoch, state.global_step)
            if state.finished:
                log.info("the run in %s has finished; nothing to resume", out)
            if dist.main:
                publish.catch_up(state)

    scaler = grad_scaler(device, dtype, state.grad_scaler)
    pad_id = tokenizer.pad_token_id or 0
    annotator = Annotator(tagger, tokenizer, config, device=str(device), batch_size=config.train.eval_batch_size,
                          lexicon=inputs.lexicon)
    pbar = Progress(total_steps, "train", unit="step", bar=progress, quiet=not dist.main, initial=state.global_step,
                    logger=log)
    started = time.time() - state.elapsed_s
    stop = False
    for epoch in range(state.epoch, config.train.epochs if not state.finished else 0):
        batches = length_bucketed_batches(lengths, config.train.batch_size, config.seed + epoch)
        if dist.world > 1:  # every rank must run the same number of backward passes: pad by repeating
            batches += batches[: (-len(batches)) % dist.world]
            batches = batches[dist.rank :: dist.world]
        model.train()
        for b in range(state.batch_in_epoch, len(batches)):
            batch = {k: v.to(device) for k, v in collate_windows(dataset, batches[b], pad_id).items()}
            with autocast(device, dtype), (fgm.capture() if fgm else nullcontext()):
                loss = model(batch) / config.train.grad_accum
            scaler.scale(loss).backward()
            if fgm:  # the adversarial pass; its gradients add to the clean pass's
                with autocast(device, dtype):
                    adversarial = fgm.attack(lambda: model(batch) / config.train.grad_accum)
                scaler.scale(adversarial).backward()
            state.loss_sum += loss.item() * config.train.grad_accum
            state.loss_count += 1
            if (b + 1) % config.train.grad_accum == 0 or b + 1 == len(batches):
                optimizer_step(optimizer, scheduler, scaler, tagger.parameters(), config.train.clip_norm)
                state.global_step += 1
                running_loss = state.loss_sum / max(1, state.loss_count)  # mean over this epoch's batches so far
                pbar.set_postfix(loss=f"{running_loss:.4f}", epoch=epoch + 1)  # shown by this update
                pbar.update(1)
                state.batch_in_epoch = b + 1
                if dist.main and config.train.log_every and state.global_step % config.train.log_every == 0:
                    log.info("step %d/%d: train_loss=%.4g (epoch %d so far), lr=%.3g", state.global_step,
                             total_steps, running_loss, epoch + 1, scheduler.get_last_lr()[0])
                every = config.train.checkpoint_every
                if dist.main and every and state.global_step % every == 0:
                    state.elapsed_s, state.grad_scaler = time.time() - started, scaler.state_dict()
                    ckpt.save_checkpoint(out / CHECKPOINT_DIR, tagger, optimizer, scheduler, state)
                if config.train.max_steps and state.global_step >= config.train.max_steps:
                    stop = True
                    break
        # end of epoch: evaluate and record in the state, checkpoint it, then write what it says (report,
        # best model, metrics): a kill at any point leaves a checkpoint whose outputs can be written again
        entry = {"epoch": epoch + 1, "step": state.global_step,
                 "train_loss": state.loss_sum / max(1, state.loss_count), "lr": scheduler.get_last_lr()[0],
                 "elapsed_s": round(time.time() - started, 1)}
        state.loss_sum, state.loss_count = 0.0, 0
        improved = True
        if dist.main:
            if dev_records:
                result = evaluate_dev(tagger, annotator, dev_records, progress=progress, labels=score_labels)
                entry.update(dev_f1=result["micro"]["f1"], dev_precision=result["micro"]["precision"],
                             dev_recall=result["micro"]["recall"], dev_span_f1=result["span"]["micro"]["f1"])
                improved = result["micro"]["f1"] > state.best_f1
                if improved:
                    state.best_f1, state.best_report = result["micro"]["f1"], result
                state.bad_epochs = 0 if improved else state.bad_epochs + 1
            if improved:
                state.best_epoch = epoch + 1
            state.metrics.append(entry)
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        if config.train.patience and state.bad_epochs >= config.train.patience:
            log.info("early stopping: no dev F1 improvement for %d epochs", state.bad_epochs)
            stop = True
        stop = _agree(stop, dist)
        state.finished = stop or epoch + 1 == config.train.epochs
        if dist.main:
            state.elapsed_s, state.grad_scaler = time.time() - started, scaler.state_dict()
            ckpt.save_checkpoint(out / CHECKPOINT_DIR, tagger, optimizer, scheduler, state)
            publish(state, model=improved)
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in entry.items()))
        if stop:
            break
    pbar.close()
    if dist.main and dev_records:
        log.info("best dev strict micro-F1 %.4f at epoch %d (%s)", state.best_f1, state.best_epoch,
                 out / "dev_report.md")
        if state.best_f1 <= 0.0 and any(r.spans for r in dev_records):
            log.warning("dev strict micro-F1 stayed 0 for all %d epochs: the model finds no dev entity (a "
                        "collapse to all-O tags if train_loss went flat). Fix: warm up longer "
                        "(train.warmup_ratio, e.g. 0.25, or train.warmup_min_steps), else lower train.lr_head "
                        "and train.lr_encoder, or change seed, then train again",
                        state.epoch)
    if dist.main and is_run_dir(out):
        write_model_card(out)
    dist.barrier()
    return out


DEV_CHUNK = 64  # dev records per prediction call: the bar moves in steps this size


def evaluate_dev(tagger: Tagger, annotator, dev_records: list[Record], *, progress: bool = True,
                 labels: Sequence[str] | None = None) -> dict:
    """Strict scores of the current weights on the dev records, through the inference path (windows, merge);
    with ``labels``, predicted spans of other labels are left out (the auxiliary labels of an intermediate phase
    are not the dev set's to score).

    Shows a ``dev`` bar on a terminal (``progress``), else a log line per 10% when it takes long; a record's
    spans do not depend on the other records of its chunk, so the chunk size changes no score."""
    tagger.eval()
    with Progress(len(dev_records), "dev", unit="rec", bar=progress, leave=False, logger=log) as bar:
        def predicted():
            for record in annotator.predict_records(dev_records, chunk=DEV_CHUNK):
                if labels is not None:
                    record = restrict_labels([record], labels)[0][0]
                yield record
                bar.update(1)

        return score(dev_records, predicted(), check_labels=False)


def warm_start(tagger: Tagger, run_dir: Path, head: bool = True, head_subset: bool = False) -> None:
    """Copy every weight of an earlier run (same label scheme, same LoRA layout) into ``tagger``; with
    ``head=False`` only the encoder (and adapters): the head and CRF start afresh, so the labels may differ;
    with ``head_subset`` the earlier run may have more tags: the head rows and CRF transitions of this run's
    tags are kept (e.g. after an intermediate phase with other corpora's labels)."""
    check_start(run_dir)
    previous = load_run(run_dir, merge_lora=False).tagger
    state = previous.state_dict()
    if not head:
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}
        missing, unexpected = tagger.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith("encoder.")]
        if missing or unexpected:
            raise ConfigError(f"`init_from` run {run_dir} has another encoder layout ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected weights)", fix="use the same `lora` settings as that run")
        log.info("initialised the encoder from %s (fresh head)", run_dir)
        return
    same_tags = previous.scheme == tagger.scheme
    if not same_tags and not head_subset:
        raise ConfigError(f"`init_from` run {run_dir} has tags {list(previous.scheme.tags)}, this run "
                          f"{list(tagger.scheme.tags)}",
                          fix="train with the same `data.labels` and `data.scheme`, or set `init_head_subset: true` "
                              "to keep the rows of yours")
    if not same_tags:
        state = head_rows(state, previous.scheme.tags, tagger.scheme.tags, run_dir)
    missing, unexpected = tagger.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"`init_from` run {run_dir} has another model layout ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected weights, e.g. {(missing + unexpected)[:2]})",
                          fix="use the same `lora` and `crf` settings as that run")
    log.info("initialised from %s%s", run_dir, "" if same_tags else
             f" (head rows of {len(tagger.scheme.tags)} of its {len(previous.scheme.tags)} tags)")


def head_rows(state: dict[str, torch.Tensor], tags: Sequence[str], keep: Sequence[str], run_dir: Path
              ) -> dict[str, torch.Tensor]:
    """``state`` (a tagger's) with its head and CRF cut from ``tags`` to the tags ``keep``, in ``keep``'s order:
    head rows (T, hidden) and (T,), start/end transitions and masks (T,), transitions and their mask (T, T) on
    both axes. The masks depend on tag names only, so the cut ones are those a tagger over ``keep`` builds."""
    unknown = [t for t in keep if t not in tags]
    if unknown:
        raise ConfigError(f"`init_from` run {run_dir} has no tag {unknown[0]!r} (its tags: {list(tags)})",
                          field="init_head_subset", fix="list only labels of that run in `data.labels`, or set "
                                                        "`init_head: false` for a fresh head")
    rows = torch.tensor([list(tags).index(t) for t in keep])
    out = dict(state)
    for key in ("head.weight", "head.bias", "crf.start_transitions", "crf.end_transitions", "crf.allowed_start",
                "crf.allowed_end"):
        if key in out:
            out[key] = out[key][rows]
    for key in ("crf.transitions", "crf.allowed_trans"):  # (T, T): both axes
        if key in out:
            out[key] = out[key][rows][:, rows]
    return out


def optimizer_step(optimizer: torch.optim.Optimizer, scheduler, scaler, parameters, clip_norm: float) -> None:
    """One optimiser step on the accumulated gradients: unscaled (fp16 loss scaling), clipped to ``clip_norm``,
    taken unless a gradient is inf/NaN (fp16: the scale then drops and the schedule does not advance), zeroed."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    if scaler.get_scale() >= scale:  # the step was taken
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _agree(stop: bool, dist: Dist) -> bool:
    """All ranks stop together when rank 0 says so."""
    if dist.world == 1:
        return stop
    flag = torch.tensor([1 if stop else 0])
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def plot_metrics(metrics_path: Path, png_path: Path) -> None:
    """Loss and dev F1 per epoch, as a PNG."""
    import matplotlib  # start-up time: only the end-of-epoch plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [r["train_loss"] for r in rows], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    if any("dev_f1" in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot([r["epoch"] for r in rows if "dev_f1" in r], [100 * r["dev_f1"] for r in rows if "dev_f1" in r],
                 "s-", color="tab:red", label="dev strict F1")
        ax2.set_ylabel("dev strict micro-F1 (%)", color="tab:red")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
