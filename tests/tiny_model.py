"""Tiny encoders, corpora and run configs built in code for offline tests: an XLM-R-like sentencepiece (Unigram + Metaspace)
tokenizer over the characters of some texts plus a few multi-character pieces, and a 2-layer BertModel."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from medner.types import Record, Span

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def build_tokenizer(texts: Iterable[str], n_pieces: int = 40):
    """A fast tokenizer: every character of ``texts`` plus the ``n_pieces`` most frequent bigrams."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    chars = Counter(ch for t in texts for ch in t if not ch.isspace())
    bigrams = Counter(t[i : i + 2] for t in texts for i in range(len(t) - 1) if not any(c.isspace() for c in t[i : i + 2]))
    vocab = [(s, 0.0) for s in SPECIALS] + [("▁", -2.0)]
    vocab += [(p, -3.0) for p, _ in bigrams.most_common(n_pieces)]
    vocab += [(c, -6.0) for c in sorted(chars)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace()
    tok.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>")


def build_encoder_dir(out: Path, texts: Iterable[str], hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny Hugging Face encoder directory (config, safetensors weights, tokenizer) to ``out``."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(texts)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=514,
                        pad_token_id=tokenizer.pad_token_id)
    model = BertModel(config, add_pooling_layer=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


# ------------------------------------------------------------------ a tiny corpus and run config

DISEASES = ["直肠癌", "胃癌", "高血压", "肺炎", "糖尿病"]
DRUGS = ["奥沙利铂", "阿司匹林", "头孢", "胰岛素"]
PARTS = ["右肺", "肝", "腹部", "左肾"]


def make_records(n: int, seed: int) -> list[Record]:
    """Short synthetic EMR-like records with disease, body-part and drug spans, clauses in random order."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        pieces, spans = [], []

        def add(text: str, label: str | None = None) -> None:
            start = sum(len(p) for p in pieces)
            pieces.append(text)
            if label:
                spans.append(Span(start, start + len(text), label))

        clauses = [
            lambda: (add("因"), add(rng.choice(DISEASES), "疾病和诊断"), add("入院，")),
            lambda: (add("查体示"), add(rng.choice(PARTS), "解剖部位"), add("压痛，")),
            lambda: (add("予"), add(rng.choice(DRUGS), "药物"), add("治疗，")),
            lambda: add(rng.choice(["一般情况可，", "无发热，", "神志清，精神好，", "饮食睡眠可，"])),
        ]
        add(rng.choice(["患者", "男，65岁，", "女性患者，", ""]))
        for k in rng.sample(range(4), 4):
            clauses[k]()
        add("病情稳定。" * rng.randint(0, 2))
        records.append(Record(f"r{seed}-{i}", "".join(pieces), tuple(spans)))
    return records


def write_config(root: Path, corpus: Path, **train) -> Path:
    """A run config (YAML) training a LoRA + CRF tagger on the tiny corpus in ``corpus``; returns its path."""
    train_cfg = {"epochs": 3, "batch_size": 8, "lr_encoder": 1e-2, "lr_head": 1e-1, "warmup_ratio": 0.0, "warmup_min_steps": 0, "patience": 0,
                 "checkpoint_every": 4, **train}
    cfg = {
        "output_dir": str(root / "run"),
        "seed": 7,
        "device": "cpu",
        "data": {"format": "jsonl", "train": [str(corpus / "train.jsonl")], "dev": [str(corpus / "dev.jsonl")]},
        "window": {"max_chars": 24, "overlap": 6},
        "encoder": {"name": str(corpus / "encoder"), "cache_dir": str(root / "cache")},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]},
        "crf": {"transition_weights": {"B-药物 -> I-药物": 1.5}},
        "train": train_cfg,
    }
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path
