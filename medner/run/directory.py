"""A run directory is one loadable artifact (no pickle anywhere):

    config.yaml          the resolved run configuration
    labels.json          tag scheme (name, types, tags)
    tokenizer/           fast tokenizer files
    encoder/             Hugging Face encoder: the base under LoRA, the fine-tuned weights otherwise
    adapter/             peft LoRA adapter (LoRA runs only)
    head.safetensors     head (linear) + CRF (+ lexicon feature embedding), always saved in full
    lexicon_features.tsv the lexicon behind lexicon features, when the run uses them
    icd_lexicon.tsv      the coded lexicon for ICD linking of predictions, when the run links
    medner_model.json    format version, fingerprint of the weights, lexicon fingerprint, windowing
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from medner.config import RunConfig, config_from_dict, dump_config
from medner.errors import ModelError
from medner.labels import TagScheme
from medner.encoders.loading import load_encoder, load_tokenizer
from medner.model.tagger import Tagger

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHT_FILES = ("encoder/model.safetensors", "adapter/adapter_model.safetensors", "head.safetensors",
                "lexicon_features.tsv")
LEXICON_FILE = "lexicon_features.tsv"
LINK_FILE = "icd_lexicon.tsv"


def head_state(tagger: Tagger) -> dict[str, torch.Tensor]:
    """Flat state of the parts saved in full (head + CRF), contiguous CPU tensors."""
    state = {}
    for prefix, module in tagger.head_modules().items():
        for key, value in module.state_dict().items():
            state[f"{prefix}.{key}"] = value.detach().cpu().contiguous()
    return state


def load_head_state(tagger: Tagger, state: dict[str, torch.Tensor]) -> None:
    for prefix, module in tagger.head_modules().items():
        part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        module.load_state_dict(part, strict=True)


def is_peft(module: torch.nn.Module) -> bool:
    return hasattr(module, "peft_config")


def save_run_model(tagger: Tagger, tokenizer, config: RunConfig, out_dir: Path, base_encoder_dir: Path,
                   extra: dict | None = None, lexicon=None) -> str:
    """Write the model part of a run directory; returns the weights fingerprint (sha256, 16 hex)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    (out_dir / "labels.json").write_text(json.dumps(tagger.scheme.to_dict(), ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    tokenizer.save_pretrained(str(out_dir / "tokenizer"))
    encoder_dir = out_dir / "encoder"
    if is_peft(tagger.encoder):
        if not encoder_dir.exists():
            shutil.copytree(base_encoder_dir, encoder_dir,
                            ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json"))
        tagger.encoder.save_pretrained(str(out_dir / "adapter"))
    else:
        tagger.encoder.save_pretrained(str(encoder_dir), safe_serialization=True)
    save_file(head_state(tagger), str(out_dir / "head.safetensors"))
    if lexicon is not None and [p.resolve() for p in lexicon.paths] != [(out_dir / LEXICON_FILE).resolve()]:
        lexicon.save(out_dir / LEXICON_FILE)
    if config.link is not None and Path(config.link.lexicon).resolve() != (out_dir / LINK_FILE).resolve():
        shutil.copyfile(config.link.lexicon, out_dir / LINK_FILE)
    fp = weights_fingerprint(out_dir)
    meta = {"format_version": FORMAT_VERSION, "fingerprint": fp,
            "encoder": "lora" if is_peft(tagger.encoder) else "full",
            "lexicon_fingerprint": lexicon.fingerprint if lexicon is not None else None, **(extra or {})}
    (out_dir / "medner_model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    return fp


def weights_fingerprint(run_dir: Path) -> str:
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = run_dir / name
        if path.exists():
            h.update(name.encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def load_run_model(run_dir: str | Path, merge_lora: bool = True):
    """Load ``(tagger, tokenizer, config, meta)`` from a run directory, on CPU, in eval mode.

    ``meta["lexicon"]`` holds the :class:`~medner.model.lexicon_features.LexiconTagger` when the run uses
    lexicon features (else None)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "medner_model.json"
    if not meta_path.exists():
        raise ModelError(f"{run_dir} is not a medner run directory (no medner_model.json)",
                         fix="point at the output_dir of a finished `medner finetune` run")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{run_dir}: model format {meta.get('format_version')} is not {FORMAT_VERSION}",
                         fix="re-train or use the medner version that wrote it")
    import yaml

    config = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    scheme = TagScheme.from_dict(json.loads((run_dir / "labels.json").read_text(encoding="utf-8")))
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    encoder = load_encoder(run_dir / "encoder")
    if (run_dir / "adapter").exists():
        from peft import PeftModel

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*is_gradient_checkpointing.*")
            encoder = PeftModel.from_pretrained(encoder, str(run_dir / "adapter"))
        if merge_lora:
            encoder = encoder.merge_and_unload()
    lexicon = None
    if config.lexicon_features is not None:
        from medner.model.lexicon_features import LexiconTagger

        lexicon = LexiconTagger(run_dir / LEXICON_FILE, config.lexicon_features.labels,
                                config.lexicon_features.min_length)
    tagger = Tagger(encoder, scheme, dropout=config.head.dropout, use_crf=config.crf.enabled,
                    crf_weights=config.crf.transition_weights, crf_mode=config.crf.transition_mode,
                    n_lexicon_tags=len(lexicon) if lexicon else 0)
    load_head_state(tagger, load_file(str(run_dir / "head.safetensors")))
    meta["lexicon"] = lexicon
    meta["linker"] = None
    if config.link is not None:
        meta["linker"] = make_linker(run_dir / LINK_FILE, config.link.labels, config.link.min_score)
    tagger.eval()
    return tagger, tokenizer, config, meta


def make_linker(lexicon_path: str | Path, labels, min_score: float = 0.6):
    """An ICD linker (``(text, span) -> span`` with ``code``) from a coded lexicon file."""
    from medner.lexicon.link import IcdLinker

    if not Path(lexicon_path).exists():
        raise ModelError(f"ICD lexicon {lexicon_path} not found", fix="build it with `medner lexicon build`")
    return IcdLinker.from_lexicon(lexicon_path, labels=tuple(labels), min_score=min_score)
