"""A linear-chain CRF with hard tag-scheme constraints and configurable transition priors.

Built on pytorch-crf: :class:`ConstrainedCRF` subclasses ``torchcrf.CRF`` and keeps its parameter names and
layout (``start_transitions`` (T,), ``transitions`` (T, T) indexed ``[from, to]``, ``end_transitions`` (T,)),
so its ``state_dict`` loads into a plain ``torchcrf.CRF``. It overrides what must change:

* **Hard constraints at every forward.** ``torchcrf`` reads its raw parameters; here every algorithm reads
  :meth:`ConstrainedCRF.constrained_transitions`, where forbidden entries are replaced (``masked_fill``, on top
  of the parameters) by :data:`PENALTY` = -1e4. A parameter can therefore never learn its way into a forbidden
  move, and forbidden entries get exactly zero gradient. -1e4 rather than -inf keeps ``logsumexp`` and its
  gradient free of NaN; exp(-1e4) underflows to 0 in fp32, so the partition function is exact. Viterbi, which
  needs no gradient, uses -inf instead, so no emission magnitude can buy an illegal path.
* **fp32 always.** Emissions (fp16/bf16 from an autocast encoder) and parameters are cast to float32 and
  autocast is disabled inside; results are float32.
* **Masks.** ``mask`` (batch, seq) must be a left-aligned prefix (``torchcrf`` only checks the first
  timestep). Rows of length 0 are allowed: log-partition 0, loss 0, empty path, zero marginals. Emissions and
  tags at padding positions are ignored (tags may hold -100 there).
* **Loss sign.** :meth:`ConstrainedCRF.forward` returns the negative log-likelihood (a loss to minimise);
  ``torchcrf.CRF.forward`` returns the log-likelihood.
* **Deterministic init.** All transition scores start at 0 plus the configured priors instead of
  ``torchcrf``'s uniform(-0.1, 0.1): a prior then means exactly what the config says, and two runs with the
  same config start from the same CRF.
* **Vectorised Viterbi backtrace** (loop over time only, not over batch rows) and forward-backward
  marginals for confidence scores.

Transition priors are given by tag name, ``{"B-疾病和诊断 -> I-疾病和诊断": 1.5, "O -> B-手术": 0.8,
"START -> B-X": 0.2, "I-X -> END": 0.1}``. ``transition_mode="init"``: priors are the starting values of the
learnable transitions (all other entries 0). ``transition_mode="fixed"``: the transitions are a constant equal
to the priors (0 elsewhere), stored as buffers, so no optimiser and no ``requires_grad_(True)`` can change
them; only the emissions are learned.
"""
from __future__ import annotations

import logging
import math
from numbers import Real
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from torchcrf import CRF

from medner.errors import ConfigError

logger = logging.getLogger(__name__)

PENALTY = -1e4
"""Log-space score of a forbidden transition in the differentiable paths (loss, log-partition, marginals)."""

START = "START"
END = "END"
MODES = ("init", "fixed")
REDUCTIONS = ("none", "sum", "mean", "token_mean")

TransitionMode = Literal["init", "fixed"]
Reduction = Literal["none", "sum", "mean", "token_mean"]


class TransitionWeightError(ConfigError, ValueError):
    """A ``transition_weights`` entry names an unknown tag, a forbidden transition or a bad value.

    Both a :class:`~medner.errors.ConfigError` (printed as one line by the CLI) and a ``ValueError``.
    """


# ------------------------------------------------------------------------------------------ construction

def parse_transition_key(key: str, tags: Sequence[str]) -> tuple[int | None, int | None]:
    """Parse ``"FROM -> TO"`` into tag indices; ``None`` stands for ``START`` (source) or ``END`` (target).

    Raises :class:`TransitionWeightError` for a malformed key or an unknown tag (the message lists the valid
    tags).
    """
    fix = "write keys as 'FROM -> TO' with tag names from the label scheme, START as a source or END as a target"
    parts = key.split("->") if isinstance(key, str) else []
    if len(parts) != 2:
        raise TransitionWeightError(f"transition weight key {key!r} must look like 'FROM -> TO'",
                                    field="crf.transition_weights", fix=fix)
    src, dst = (p.strip() for p in parts)
    index = {t: i for i, t in enumerate(tags)}
    for name, role, pseudo in ((src, "source", START), (dst, "target", END)):
        if name != pseudo and name not in index:
            extra = f"{START} as a source, {END} as a target"
            hint = (f"{name!r} can only be a {'target' if name == END else 'source'}"
                    if name in (START, END) else f"unknown tag {name!r}")
            raise TransitionWeightError(
                f"{hint} as the {role} in transition weight key {key!r}; valid tags: {', '.join(tags)} "
                f"(plus {extra})", field="crf.transition_weights", fix=fix)
    if src == START and dst == END:
        raise TransitionWeightError(f"transition weight key {key!r} names no tag", field="crf.transition_weights",
                                    fix=fix)
    return (None if src == START else index[src]), (None if dst == END else index[dst])


def transition_priors(weights: Mapping[str, float], tags: Sequence[str], allowed_start: np.ndarray,
                      allowed_trans: np.ndarray, allowed_end: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense prior arrays ``(start (T,), trans (T, T) [from, to], end (T,))``, float32, 0 where unset.

    Raises :class:`TransitionWeightError` for unknown tags, duplicate keys, non-finite or non-numeric values
    and keys naming a transition the constraints forbid (a prior cannot override a hard constraint).
    """
    n = len(tags)
    start, trans, end = np.zeros(n, np.float32), np.zeros((n, n), np.float32), np.zeros(n, np.float32)
    seen: dict[tuple[int | None, int | None], str] = {}
    for key, value in weights.items():
        src, dst = parse_transition_key(key, tags)
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TransitionWeightError(f"transition weight {key!r} must be a number, got {type(value).__name__}",
                                        field="crf.transition_weights", fix="give a float such as 1.5")
        if not math.isfinite(value):
            raise TransitionWeightError(f"transition weight {key!r} must be finite, got {value}",
                                        field="crf.transition_weights", fix="give a finite float such as 1.5")
        if (src, dst) in seen:
            raise TransitionWeightError(f"transition {key!r} is given twice (also as {seen[src, dst]!r})",
                                        field="crf.transition_weights", fix="keep one of the two keys")
        seen[src, dst] = key
        if src is None:
            ok, target, at = allowed_start[dst], start, (dst,)
        elif dst is None:
            ok, target, at = allowed_end[src], end, (src,)
        else:
            ok, target, at = allowed_trans[src, dst], trans, (src, dst)
        if not ok:
            raise TransitionWeightError(
                f"transition weight key {key!r} names a transition the tag scheme forbids; a prior cannot "
                f"override a hard constraint", field="crf.transition_weights", fix="remove the key")
        target[at] = float(value)
    return start, trans, end


def _bool_array(value: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Validate a constraint array (numpy or torch, bool or 0/1) and return it as a numpy bool array."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (one entry per tag), got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
        arr = arr.astype(bool)
    return arr.copy()


def _check_tags(tags: Sequence[str]) -> list[str]:
    tags = list(tags)
    if not tags or not all(isinstance(t, str) and t.strip() == t and t for t in tags):
        raise ValueError("tags must be a non-empty list of non-empty tag names without surrounding spaces")
    dupes = sorted({t for t in tags if tags.count(t) > 1})
    if dupes:
        raise ValueError(f"tags must be unique, got duplicate tag(s) {', '.join(dupes)}")
    if START in tags or END in tags:
        raise ValueError(f"{START!r} and {END!r} are reserved for transition keys and cannot be tag names")
    if any("->" in t for t in tags):
        raise ValueError("tag names cannot contain '->' (it separates transition keys)")
    return tags


def _check_some_path_exists(start: np.ndarray, trans: np.ndarray, end: np.ndarray) -> None:
    """Raise ValueError unless a legal tag path exists for every length >= 1.

    The set of tags reachable at position n is a function of the set at n-1, so the sequence of sets is
    eventually periodic; walking it until a set repeats checks every length.
    """
    reach, seen, length = start.copy(), set(), 1
    while True:
        if not (reach & end).any():
            raise ValueError(f"the constraints admit no legal tag sequence of length {length}; "
                             f"check allowed_start/allowed_trans/allowed_end")
        key = reach.tobytes()
        if key in seen:
            return
        seen.add(key)
        reach = (reach[:, None] & trans).any(axis=0)
        length += 1


# ----------------------------------------------------------------------------------------------- the CRF

class ConstrainedCRF(CRF):
    """Linear-chain CRF over ``tags`` with hard constraints and optional transition priors.

    Args:
        tags: tag names, index order of the emissions' last dimension (T tags).
        allowed_start: (T,) bool, tag may start a sequence.
        allowed_trans: (T, T) bool indexed ``[from, to]``.
        allowed_end: (T,) bool, tag may end a sequence.
        transition_weights: priors by name, ``{"FROM -> TO": score}``; ``START``/``END`` as pseudo-tags.
        transition_mode: ``"init"`` (learnable, starting at the priors) or ``"fixed"`` (constant priors).

    All public methods take batch-first emissions ``(batch, seq, T)`` (any float dtype) and a bool mask
    ``(batch, seq)`` that is a left-aligned prefix (``None``: all on), and compute in fp32.
    """

    def __init__(self, tags: Sequence[str], allowed_start: np.ndarray | torch.Tensor,
                 allowed_trans: np.ndarray | torch.Tensor, allowed_end: np.ndarray | torch.Tensor,
                 transition_weights: Mapping[str, float] | None = None,
                 transition_mode: TransitionMode = "init") -> None:
        tags = _check_tags(tags)
        n = len(tags)
        start_ok = _bool_array(allowed_start, (n,), "allowed_start")
        trans_ok = _bool_array(allowed_trans, (n, n), "allowed_trans")
        end_ok = _bool_array(allowed_end, (n,), "allowed_end")
        _check_some_path_exists(start_ok, trans_ok, end_ok)
        if transition_mode not in MODES:
            raise ValueError(f"transition_mode must be one of {', '.join(MODES)}, got {transition_mode!r}")
        priors = transition_priors(transition_weights or {}, tags, start_ok, trans_ok, end_ok)

        super().__init__(n, batch_first=True)
        self.tags: tuple[str, ...] = tuple(tags)
        self.transition_mode: str = transition_mode
        self._priors = priors
        self.register_buffer("allowed_start", torch.from_numpy(start_ok))
        self.register_buffer("allowed_trans", torch.from_numpy(trans_ok))
        self.register_buffer("allowed_end", torch.from_numpy(end_ok))
        if transition_mode == "fixed":
            # Buffers, not frozen Parameters: requires_grad_(True) (as peft's modules_to_save does) and
            # optimisers cannot touch them, and they still travel in the state_dict under the same names.
            for name in ("start_transitions", "transitions", "end_transitions"):
                shape = getattr(self, name).shape
                delattr(self, name)
                self.register_buffer(name, torch.zeros(shape))
        self.reset_parameters()
        logger.debug("CRF over %d tags, %d forbidden transitions, %d priors, mode %s",
                     n, int((~trans_ok).sum()), len(transition_weights or {}), transition_mode)

    def reset_parameters(self) -> None:
        """Set the transitions to the priors, 0 elsewhere (deterministic; see the module docstring)."""
        priors = self.__dict__.get("_priors")  # absent while torchcrf's __init__ runs
        with torch.no_grad():
            for tensor, prior in zip((self.start_transitions, self.transitions, self.end_transitions),
                                     priors or (None, None, None)):
                if prior is None:
                    tensor.zero_()
                else:
                    tensor.copy_(torch.from_numpy(prior))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_tags={self.num_tags}, transition_mode={self.transition_mode!r})"

    def constrained_transitions(self, fill: float = PENALTY) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fp32 ``(start (T,), trans (T, T) [from, to], end (T,))`` with forbidden entries set to ``fill``."""
        return (self.start_transitions.float().masked_fill(~self.allowed_start, fill),
                self.transitions.float().masked_fill(~self.allowed_trans, fill),
                self.end_transitions.float().masked_fill(~self.allowed_end, fill))

    # ---------------------------------------------------------------------------------------- public API

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
                reduction: Reduction = "mean") -> torch.Tensor:
        """Negative log-likelihood of ``tags`` (a loss; ``torchcrf`` returns the log-likelihood).

        Args:
            emissions: (batch, seq, T) scores, any float dtype.
            tags: (batch, seq) integer tag ids; values at padding positions are ignored. Each row's tags
                must form a legal path (ValueError naming row, position and tags otherwise).
            mask: (batch, seq) left-aligned prefix; rows of length 0 have loss 0.
            reduction: ``none`` (batch,), ``sum``, ``mean`` (over rows, empty ones included) or
                ``token_mean`` (sum over rows / number of unmasked positions).

        Returns:
            fp32 tensor, (batch,) for ``none``, () otherwise.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"invalid reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")
        emissions, mask, lengths = self._prepare(emissions, mask, check_finite=False)
        tags = self._check_tags_tensor(tags, mask, lengths)
        with torch.autocast(emissions.device.type, enabled=False):
            if emissions.size(1) == 0:
                nll = emissions.sum(dim=(1, 2))  # shape: (batch,) zeros that keep the graph
            else:
                safe = self._safe_mask(mask)
                em_t, tags_t, safe_t = emissions.transpose(0, 1), tags.transpose(0, 1), safe.transpose(0, 1)
                # shape: (batch,)
                nll = self._compute_normalizer(em_t, safe_t) - self._compute_score(em_t, tags_t, safe_t)
                nll = torch.where(lengths > 0, nll, torch.zeros_like(nll))
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean() if nll.numel() else nll.sum()
        return nll.sum() / lengths.sum().clamp(min=1)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z per row over all legal paths; (batch,) fp32, 0 for rows of length 0."""
        emissions, mask, lengths = self._prepare(emissions, mask, check_finite=False)
        if emissions.size(1) == 0:
            return emissions.sum(dim=(1, 2))
        with torch.autocast(emissions.device.type, enabled=False):
            log_z = self._compute_normalizer(emissions.transpose(0, 1), self._safe_mask(mask).transpose(0, 1))
        return torch.where(lengths > 0, log_z, torch.zeros_like(log_z))

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """Viterbi path per row (length = row length), never using a forbidden start, transition or end."""
        emissions, mask, lengths = self._prepare(emissions, mask, check_finite=True)
        if emissions.size(1) == 0:
            return [[] for _ in range(emissions.size(0))]
        with torch.autocast(emissions.device.type, enabled=False):
            paths = self._viterbi_decode(emissions.transpose(0, 1), self._safe_mask(mask).transpose(0, 1))
        return [path[:n] for path, n in zip(paths, lengths.tolist())]

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """P(tag at position t = k) by forward-backward in log space; (batch, seq, T) fp32, 0 on padding."""
        emissions, mask, lengths = self._prepare(emissions, mask, check_finite=True)
        if emissions.size(1) == 0:
            return emissions.clone()
        with torch.autocast(emissions.device.type, enabled=False):
            safe = self._safe_mask(mask)
            em_t, mask_t = emissions.transpose(0, 1), safe.transpose(0, 1)
            probs = self._marginals_scaled(em_t, mask_t)
            if not bool(torch.isfinite(probs).all()):  # a scale underflowed: redo in log space (exact)
                probs = self._marginals(em_t, mask_t)
            probs = probs.transpose(0, 1)
        return probs * mask.unsqueeze(-1)

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log P(tag at position t = k), differentiable (for distillation onto soft targets); (batch, seq, T)
        fp32, 0 on padding. Forward-backward in log space over the same constrained matrices as the loss."""
        emissions, mask, lengths = self._prepare(emissions, mask, check_finite=False)
        if emissions.size(1) == 0:
            return emissions.clone()
        with torch.autocast(emissions.device.type, enabled=False):
            log_probs = self._log_marginals(emissions.transpose(0, 1), self._safe_mask(mask).transpose(0, 1))
        return log_probs.transpose(0, 1) * mask.unsqueeze(-1)

    @torch.no_grad()
    def decode_with_scores(self, emissions: torch.Tensor, mask: torch.Tensor | None = None
                           ) -> list[tuple[list[int], list[float]]]:
        """Viterbi path per row with the marginal probability of each chosen tag (see :func:`span_confidence`)."""
        paths = self.decode(emissions, mask)
        if emissions.size(1) == 0:
            return [([], []) for _ in paths]
        probs = self.marginals(emissions, mask)  # shape: (batch, seq, T)
        lengths = torch.tensor([len(p) for p in paths], device=probs.device)
        padded = torch.zeros(probs.shape[:2], dtype=torch.long, device=probs.device)
        for b, path in enumerate(paths):
            padded[b, : len(path)] = torch.tensor(path, dtype=torch.long)
        # shape: (batch, seq)
        chosen = probs.gather(2, padded.unsqueeze(2)).squeeze(2).tolist()
        return [(path, row[:n]) for path, row, n in zip(paths, chosen, lengths.tolist())]

    # ------------------------------------------------------------------------------ torchcrf overrides
    # Time-first layout as in torchcrf: emissions (seq, batch, T), tags and mask (seq, batch), mask[0] all on.

    def _compute_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score of the given (legal) paths; (batch,). Vectorised over time, fp32, constrained matrices."""
        start, trans, end = self.constrained_transitions()
        maskf = mask.float()
        seq, batch = tags.shape
        rows = torch.arange(batch, device=tags.device)
        # shape: (seq, batch)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * maskf
        # shape: (seq - 1, batch)
        moved = trans[tags[:-1], tags[1:]] * maskf[1:]
        last = tags[mask.long().sum(0) - 1, rows]
        return start[tags[0]] + emitted.sum(0) + moved.sum(0) + end[last]

    def _compute_normalizer(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z over legal paths; (batch,). torchcrf's forward algorithm on the constrained matrices."""
        start, trans, end = self.constrained_transitions()
        return torch.logsumexp(self._alphas(emissions, mask, start, trans)[-1] + end, dim=1)

    def _alphas(self, emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, trans: torch.Tensor
                ) -> list[torch.Tensor]:
        """Forward log-scores per position, each (batch, T); past a row's end the last value is carried."""
        # shape: (batch, T)
        score = start + emissions[0]
        alphas = [score]
        for i in range(1, emissions.size(0)):
            # shape: (batch, T_from, T_to) -> (batch, T_to)
            nxt = torch.logsumexp(score.unsqueeze(2) + trans + emissions[i].unsqueeze(1), dim=1)
            score = torch.where(mask[i].unsqueeze(1), nxt, score)
            alphas.append(score)
        return alphas

    def _marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """exp(alpha + beta - log Z); (seq, batch, T). Uses the same PENALTY matrices as the loss, so the
        result equals d logZ / d emissions."""
        return torch.exp(self._log_marginals(emissions, mask))

    def _log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """alpha + beta - log Z; (seq, batch, T), time-first."""
        start, trans, end = self.constrained_transitions()
        alphas = self._alphas(emissions, mask, start, trans)
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)  # shape: (batch,)
        beta = end.expand_as(alphas[-1])  # shape: (batch, T) at the last position
        betas = [beta]
        for i in range(emissions.size(0) - 2, -1, -1):
            # shape: (batch, T_from, T_to) -> (batch, T_from)
            nxt = torch.logsumexp(trans + (emissions[i + 1] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[i + 1].unsqueeze(1), nxt, end.expand_as(nxt))
            betas.append(beta)
        betas.reverse()
        # shape: (seq, batch, T)
        return torch.stack(alphas) + torch.stack(betas) - log_z[None, :, None]

    def _marginals_scaled(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The marginals of :meth:`_marginals` by the scaled (Rabiner) forward-backward in probability space.

        Each step is a (batch, T) x (T, T) matrix product followed by a normalisation, instead of a logsumexp
        over (batch, T, T): several times faster on CPU, where this loop dominates decoding. Runs in fp64;
        per-position shifts of the emissions and of the transition matrices cancel in the normalisations.
        Forbidden moves have weight exp(PENALTY - max) = 0. Returns (seq, batch, T) float32 (NaN if a step
        underflows; :meth:`marginals` then falls back to log space).
        """
        start, trans, end = (t.double() for t in self.constrained_transitions())
        em = emissions.double()
        # shape: (seq, batch, T); exponent floor keeps every legal weight representable
        weights = torch.exp((em - em.amax(dim=2, keepdim=True)).clamp_min(-600.0))
        step = torch.exp(trans - trans.max())  # shape: (T_from, T_to)
        alpha = torch.exp(start - start.max()) * weights[0]
        alpha = alpha / alpha.sum(1, keepdim=True)
        alphas = [alpha]
        for i in range(1, em.size(0)):
            nxt = (alpha @ step) * weights[i]
            nxt = nxt / nxt.sum(1, keepdim=True)
            alpha = torch.where(mask[i].unsqueeze(1), nxt, alpha)
            alphas.append(alpha)
        finish = torch.exp(end - end.max()).expand_as(alpha)
        beta = finish
        betas = [beta]
        for i in range(em.size(0) - 2, -1, -1):
            nxt = (weights[i + 1] * beta) @ step.T
            nxt = nxt / nxt.sum(1, keepdim=True)
            beta = torch.where(mask[i + 1].unsqueeze(1), nxt, finish)
            betas.append(beta)
        betas.reverse()
        joint = torch.stack(alphas) * torch.stack(betas)  # shape: (seq, batch, T)
        return (joint / joint.sum(2, keepdim=True)).float()

    def _viterbi_decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best legal path per row (full padded length; callers cut to the row length).

        Forbidden moves score -inf here (no gradient needed), and the constructor proved that a legal path of
        every length exists, so the best path is always legal for finite emissions.
        """
        start, trans, end = self.constrained_transitions(fill=-math.inf)
        seq, batch = mask.shape
        score = start + emissions[0]  # shape: (batch, T)
        history = []
        for i in range(1, seq):
            # shape: (batch, T_from, T_to) -> (batch, T_to)
            nxt, idx = (score.unsqueeze(2) + trans + emissions[i].unsqueeze(1)).max(dim=1)
            score = torch.where(mask[i].unsqueeze(1), nxt, score)
            history.append(idx)
        best = (score + end).argmax(dim=1)  # shape: (batch,) tag at each row's last position
        # Backtrace for all rows at once: `cur` holds each row's tag at position i once i < length.
        cur = best
        path = torch.empty(seq, batch, dtype=torch.long, device=emissions.device)
        for i in range(seq - 1, 0, -1):
            path[i] = cur
            prev = history[i - 1].gather(1, cur.unsqueeze(1)).squeeze(1)
            cur = torch.where(mask[i], prev, cur)
        path[0] = cur
        return path.transpose(0, 1).tolist()

    # ------------------------------------------------------------------------------------------ checks

    def _prepare(self, emissions: torch.Tensor, mask: torch.Tensor | None, *, check_finite: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate; return fp32 emissions (batch, seq, T) zeroed on padding, bool mask, lengths (batch,)."""
        if not isinstance(emissions, torch.Tensor) or emissions.dim() != 3:
            got = emissions.dim() if isinstance(emissions, torch.Tensor) else type(emissions).__name__
            raise ValueError(f"emissions must be a 3-d tensor (batch, seq, tags), got {got}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(f"expected last dimension of emissions to be {self.num_tags} (tags), "
                             f"got {emissions.size(2)}")
        if not emissions.is_floating_point():
            raise ValueError(f"emissions must be floating point, got {emissions.dtype}")
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        elif mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must have shape (batch, seq) = {tuple(emissions.shape[:2])}, "
                             f"got {tuple(mask.shape)}")
        mask = mask.to(device=emissions.device, dtype=torch.bool)
        # shape: (batch, seq - 1); on after off = a hole or a late start
        holes = mask[:, 1:] & ~mask[:, :-1]
        if holes.any():
            row, pos = (int(v) for v in holes.nonzero()[0])
            raise ValueError(f"mask row {row} is not a left-aligned prefix: position {pos + 1} is on after an "
                             f"off position; put each row's valid positions first")
        emissions = emissions.float().masked_fill(~mask.unsqueeze(2), 0.0)
        if check_finite and not torch.isfinite(emissions).all():
            row, pos = (int(v) for v in (~torch.isfinite(emissions)).any(2).nonzero()[0])
            raise ValueError(f"emissions must be finite on unmasked positions, got NaN/inf at row {row} "
                             f"position {pos}")
        return emissions, mask, mask.sum(1)

    def _check_tags_tensor(self, tags: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Validate gold tags: in range and a legal path on every row. Returns (batch, seq) long, 0 on padding."""
        if not isinstance(tags, torch.Tensor) or tags.shape != mask.shape:
            got = tuple(tags.shape) if isinstance(tags, torch.Tensor) else type(tags).__name__
            raise ValueError(f"tags must be a tensor of shape (batch, seq) = {tuple(mask.shape)}, got {got}")
        if tags.is_floating_point() or tags.is_complex():
            raise ValueError(f"tags must be integer tag ids, got {tags.dtype}")
        tags = tags.to(device=mask.device, dtype=torch.long).masked_fill(~mask, 0)
        out = (tags < 0) | (tags >= self.num_tags)
        if out.any():
            row, pos = (int(v) for v in out.nonzero()[0])
            raise ValueError(f"tags row {row} position {pos}: id {int(tags[row, pos])} is outside "
                             f"[0, {self.num_tags}); use ids from the label scheme")
        if tags.size(1) == 0:
            return tags
        rows = torch.arange(tags.size(0), device=tags.device)
        nonempty = lengths > 0
        bad_start = nonempty & ~self.allowed_start[tags[:, 0]]
        bad_trans = mask[:, 1:] & ~self.allowed_trans[tags[:, :-1], tags[:, 1:]]  # shape: (batch, seq - 1)
        last = tags[rows, (lengths - 1).clamp(min=0)]
        bad_end = nonempty & ~self.allowed_end[last]
        fix = "fix the labels (e.g. a window that starts inside an entity must start with B-)"
        if bad_start.any():
            row = int(bad_start.nonzero()[0])
            raise ValueError(f"tags row {row} position 0: {self.tags[int(tags[row, 0])]!r} cannot start a "
                             f"sequence under the tag scheme; {fix}")
        if bad_trans.any():
            row, pos = (int(v) for v in bad_trans.nonzero()[0])
            a, b = self.tags[int(tags[row, pos])], self.tags[int(tags[row, pos + 1])]
            raise ValueError(f"tags row {row} position {pos + 1}: transition {a!r} -> {b!r} is forbidden by "
                             f"the tag scheme; {fix}")
        if bad_end.any():
            row = int(bad_end.nonzero()[0])
            raise ValueError(f"tags row {row} position {int(lengths[row]) - 1}: {self.tags[int(last[row])]!r} "
                             f"cannot end a sequence under the tag scheme; {fix}")
        return tags

    @staticmethod
    def _safe_mask(mask: torch.Tensor) -> torch.Tensor:
        """Mask with position 0 on for every row, so empty rows run through torchcrf-style loops harmlessly
        (their results are replaced by 0 afterwards); (batch, seq) bool."""
        safe = mask.clone()
        safe[:, 0] = True
        return safe


def span_confidence(position_probs: Sequence[float], start: int, end: int,
                    reduce: Literal["min", "mean"] = "min") -> float:
    """Confidence of a decoded entity covering positions ``[start, end)`` from per-position marginals.

    ``position_probs`` are the marginal probabilities of the decoded tags (``decode_with_scores``).
    ``"min"`` (default): the exact probability that the whole span is tagged as decoded is at most the
    smallest marginal, so ``min`` is the tightest bound from marginals alone and a span is never rated
    surer than its least sure token. ``"mean"`` is smoother but overstates spans with one doubtful token.
    """
    if reduce not in ("min", "mean"):
        raise ValueError(f"reduce must be 'min' or 'mean', got {reduce!r}")
    if not 0 <= start < end <= len(position_probs):
        raise ValueError(f"span [{start}, {end}) must be non-empty and inside [0, {len(position_probs)})")
    window = [float(p) for p in position_probs[start:end]]
    return min(window) if reduce == "min" else sum(window) / len(window)
