"""The tagger: encoder (+LoRA) -> dropout -> linear head -> CRF (or softmax), over label-bearing tokens.

Batches carry ``input_ids``/``attention_mask`` ``(batch, seq)`` for the encoder and
``label_index``/``label_mask`` ``(batch, n_labels)``: a left-aligned prefix of the positions (into ``seq``)
of label-bearing tokens. The head and CRF only ever see those positions, never [CLS]/[SEP].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medner.config import RunConfig
from medner.labels import TagScheme, allowed_transitions
from medner.model.crf import ConstrainedCRF


@dataclass
class Decoded:
    """One sequence's decoding: tag ids per label-bearing token and the probability of each chosen tag."""

    tags: list[int]
    scores: list[float]


class Tagger(nn.Module):
    """encoder -> head -> CRF. ``crf_weights``/``crf_mode`` set transition priors by tag name."""

    def __init__(self, encoder: nn.Module, scheme: TagScheme, *, dropout: float = 0.1, use_crf: bool = True,
                 crf_weights: dict[str, float] | None = None, crf_mode: str = "init", n_lexicon_tags: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.scheme = scheme
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, len(scheme))
        # lexicon match tags, embedded and added to the encoder output; zero-initialised: starts neutral
        self.lexicon: nn.Embedding | None = None
        if n_lexicon_tags:
            self.lexicon = nn.Embedding(n_lexicon_tags, hidden)
            nn.init.zeros_(self.lexicon.weight)
        self.soft_weight = 0.0  # distillation: weight of the soft-target loss in :meth:`loss` (not saved)
        self.rdrop_alpha = 0.0  # R-Drop: weight of the two dropout passes' disagreement in :meth:`loss` (not saved)
        self.crf: ConstrainedCRF | None = build_crf(scheme, crf_weights, crf_mode) if use_crf else None

    @classmethod
    def from_config(cls, encoder: nn.Module, scheme: TagScheme, config: RunConfig, *,
                    n_lexicon_tags: int = 0) -> "Tagger":
        """The tagger a run config describes (training and loading build it here, with the same settings)."""
        return cls(encoder, scheme, dropout=config.head.dropout, use_crf=config.crf.enabled,
                   crf_weights=config.crf.transition_weights, crf_mode=config.crf.transition_mode,
                   n_lexicon_tags=n_lexicon_tags)

    def head_state(self) -> dict[str, torch.Tensor]:
        """Flat state of the parts saved in full (head + CRF + lexicon embedding), contiguous CPU tensors."""
        return {f"{prefix}.{key}": value.detach().cpu().contiguous()
                for prefix, module in self.head_modules().items() for key, value in module.state_dict().items()}

    def load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`head_state` output; every part must match exactly."""
        for prefix, module in self.head_modules().items():
            part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
            module.load_state_dict(part, strict=True)

    def head_modules(self) -> dict[str, nn.Module]:
        """The parts always trained in full and saved in full (never adapted)."""
        modules: dict[str, nn.Module] = {"head": self.head}
        if self.lexicon is not None:
            modules["lexicon"] = self.lexicon
        if self.crf is not None:
            modules["crf"] = self.crf
        return modules

    def emissions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, label_index: torch.Tensor,
                  lex: torch.Tensor | None = None) -> torch.Tensor:
        """Tag scores at label-bearing tokens: ``(batch, n_labels, n_tags)`` in fp32.

        ``lex`` ``(batch, n_labels)``: lexicon feature ids (used when the tagger has lexicon features).
        """
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # shape: (batch, n_labels, hidden) — gather the label-bearing positions
        index = label_index.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        picked = hidden.gather(1, index)
        if self.lexicon is not None and lex is not None:
            picked = picked + self.lexicon(lex).to(picked.dtype)
        return self.head(self.dropout(picked)).float()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss (so that DistributedDataParallel wraps it)."""
        return self.loss(batch)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Negative log-likelihood per label-bearing token (CRF) or mean token cross-entropy (softmax):
        both on the same per-token scale, so gradient clipping and learning rates mean the same for both.

        With soft targets in the batch (``soft`` ``(batch, n_labels, n_tags)``, ``gold`` ``(batch,)``) and a
        positive :attr:`soft_weight` w: ``w * CE(soft, model marginals) + (1 - w) * gold loss``, the gold loss
        over the rows that have gold only. With a positive :attr:`rdrop_alpha` a while training (R-Drop, Liang et
        al. 2021): the mean of that loss over two dropout passes + a * their symmetric KL per token."""
        emissions = self.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"], batch.get("lex"))
        mask = batch["label_mask"].bool()
        if not (self.training and self.rdrop_alpha > 0):
            return self._loss_of(emissions, batch, mask)
        second = self.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"], batch.get("lex"))
        both = (self._loss_of(emissions, batch, mask) + self._loss_of(second, batch, mask)) / 2
        return both + self.rdrop_alpha * self.symmetric_kl(emissions, second, mask)

    def _loss_of(self, emissions: torch.Tensor, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        tags = batch["tags"]
        if "soft" in batch and self.soft_weight > 0:
            gold = batch["gold"].bool()
            hard = self._gold_loss(emissions[gold], tags[gold], mask[gold]) if gold.any() else emissions.sum() * 0
            return self.soft_weight * self._soft_loss(emissions, batch["soft"], mask) + (1 - self.soft_weight) * hard
        return self._gold_loss(emissions, tags, mask)

    def log_tag_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log P(tag k at token t): CRF marginals, or the softmax without a CRF; ``(batch, n_labels, n_tags)``."""
        return self.crf.log_marginals(emissions, mask) if self.crf is not None else emissions.log_softmax(-1)

    def symmetric_kl(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(KL(p_a || p_b) + KL(p_b || p_a)) / 2 of the per-token tag marginals of emissions ``a`` and ``b``,
        averaged over label-bearing tokens."""
        log_a, log_b = self.log_tag_marginals(a, mask), self.log_tag_marginals(b, mask)
        # shape: (batch, n_labels); (p_a - p_b) * (log p_a - log p_b) summed over tags = KL(a||b) + KL(b||a)
        per_token = ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(-1) * mask
        return per_token.sum() / (2 * mask.sum().clamp(min=1))

    def _gold_loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.crf is not None:
            return self.crf(emissions, tags, mask, reduction="token_mean")
        return nn.functional.cross_entropy(emissions[mask], tags[mask])

    def _soft_loss(self, emissions: torch.Tensor, soft: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the model's per-token tag marginals against ``soft``, per label-bearing token."""
        log_p = self.log_tag_marginals(emissions, mask)
        # shape: (batch, n_labels); forbidden tags have soft 0 (and a large negative log_p)
        per_token = -(soft * log_p).sum(-1) * mask
        return per_token.sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, batch: dict[str, torch.Tensor]) -> list[Decoded]:
        """Best tag sequence per row with per-token probabilities (CRF marginals or softmax)."""
        emissions = self.emissions(batch["input_ids"], batch["attention_mask"], batch["label_index"], batch.get("lex"))
        return self.decode_emissions(emissions, batch["label_mask"].bool())

    def decode_emissions(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[Decoded]:
        """Decode ``(batch, n_labels, n_tags)`` emissions under ``mask`` ``(batch, n_labels)``."""
        return decode_emissions(self.crf, emissions, mask)


def build_crf(scheme: TagScheme, weights: dict[str, float] | None = None, mode: str = "init") -> ConstrainedCRF:
    """The CRF of a tagger over ``scheme``: BIO constraints plus transition priors by tag name."""
    start, trans, end = allowed_transitions(scheme)
    return ConstrainedCRF(list(scheme.tags), start, trans, end, transition_weights=weights or {}, transition_mode=mode)


def decode_emissions(crf: ConstrainedCRF | None, emissions: torch.Tensor, mask: torch.Tensor) -> list[Decoded]:
    """Best tag sequence per row with per-token probabilities: CRF Viterbi + marginals, or softmax arg-max
    without a CRF. ``emissions`` ``(batch, n_labels, n_tags)``, ``mask`` ``(batch, n_labels)`` (left-aligned)."""
    if crf is not None:
        return [Decoded(tags, scores) for tags, scores in crf.decode_with_scores(emissions, mask)]
    probs = emissions.softmax(-1)
    best = probs.argmax(-1)
    out = []
    for row in range(emissions.size(0)):
        n = int(mask[row].sum())
        tags = best[row, :n].tolist()
        out.append(Decoded(tags, probs[row, torch.arange(n), best[row, :n]].tolist()))
    return out


def tag_probabilities(crf: ConstrainedCRF | None, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token tag distributions ``(batch, n_labels, n_tags)``: CRF marginals, or the softmax without a CRF."""
    if crf is not None:
        return crf.marginals(emissions, mask)
    return emissions.float().softmax(-1)


def is_peft(module: nn.Module) -> bool:
    """Whether ``module`` is wrapped by peft (LoRA adapters)."""
    return hasattr(module, "peft_config")
