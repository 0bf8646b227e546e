"""Tiny encoders built in code for offline tests: an XLM-R-like sentencepiece (Unigram + Metaspace)
tokenizer over the characters of some texts plus a few multi-character pieces, and a 2-layer BertModel."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

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
