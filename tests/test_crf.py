"""Tests for medner.model.crf.ConstrainedCRF.

Oracles: brute-force enumeration of every allowed tag path on tiny inputs, autograd (d logZ / d emissions
equals the marginals), and plain pytorch-crf when nothing is forbidden.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torchcrf

from medner.errors import ConfigError
from medner.model.crf import PENALTY, ConstrainedCRF, parse_transition_key, span_confidence

TAGS = ["O", "B-A", "I-A", "B-B", "I-B"]


def bio_allowed(tags: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand-written BIO constraints (the test's own oracle; medner.labels is not imported)."""
    n = len(tags)
    start = np.array([not t.startswith("I-") for t in tags])
    trans = np.ones((n, n), dtype=bool)
    for j, to in enumerate(tags):
        if to.startswith("I-"):
            kind = to[2:]
            for i, frm in enumerate(tags):
                trans[i, j] = frm in (f"B-{kind}", f"I-{kind}")
    end = np.ones(n, dtype=bool)
    return start, trans, end


def random_allowed(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random constraints (also on START/END) that keep tag 0 as an always-legal fallback."""
    start = rng.random(n) < 0.6
    trans = rng.random((n, n)) < 0.6
    end = rng.random(n) < 0.6
    start[0] = trans[0, 0] = end[0] = True
    return start, trans, end


def make_crf(allowed=None, seed: int = 0, **kwargs) -> ConstrainedCRF:
    """A CRF over TAGS with random non-zero transition parameters."""
    allowed = allowed if allowed is not None else bio_allowed(TAGS)
    crf = ConstrainedCRF(TAGS, *allowed, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        crf.start_transitions.copy_(torch.randn(len(TAGS), generator=gen))
        crf.transitions.copy_(torch.randn(len(TAGS), len(TAGS), generator=gen))
        crf.end_transitions.copy_(torch.randn(len(TAGS), generator=gen))
    return crf


def path_score(crf: ConstrainedCRF, em: torch.Tensor, path: tuple[int, ...]) -> float:
    """Unconstrained score of one path: start + emissions + transitions + end (em: (len, tags))."""
    s = crf.start_transitions[path[0]].item() + crf.end_transitions[path[-1]].item()
    s += sum(em[t, k].item() for t, k in enumerate(path))
    s += sum(crf.transitions[a, b].item() for a, b in zip(path, path[1:]))
    return s


def is_allowed(allowed, path) -> bool:
    start, trans, end = allowed
    return bool(start[path[0]] and end[path[-1]] and all(trans[a, b] for a, b in zip(path, path[1:])))


def enumerate_row(crf, allowed, em: torch.Tensor):
    """(logZ, best path, marginals (len, tags), {path: score}) over every allowed path of em: (len, tags)."""
    length, n = em.shape
    scores = {p: path_score(crf, em, p) for p in itertools.product(range(n), repeat=length)
              if is_allowed(allowed, p)}
    log_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0).item()
    best = max(scores, key=scores.get)
    marg = np.zeros((length, n))
    for p, s in scores.items():
        for t, k in enumerate(p):
            marg[t, k] += math.exp(s - log_z)
    return log_z, list(best), marg, scores


def tiny_batch(seed: int, lengths=(4, 3, 1, 0)):
    gen = torch.Generator().manual_seed(seed)
    seq = max(lengths)
    em = 2.0 * torch.randn(len(lengths), seq, len(TAGS), generator=gen)
    mask = torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]
    return em, mask


# ---------------------------------------------------------------------------------------------- oracles

@pytest.mark.parametrize("scheme", ["bio", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brute_force_partition_viterbi_nll_marginals(scheme, seed):
    rng = np.random.default_rng(seed)
    allowed = bio_allowed(TAGS) if scheme == "bio" else random_allowed(len(TAGS), rng)
    crf = make_crf(allowed, seed=seed)
    em, mask = tiny_batch(seed)
    lengths = mask.sum(1).tolist()

    log_z = crf.log_partition(em, mask)
    paths = crf.decode(em, mask)
    marg = crf.marginals(em, mask)
    assert log_z.dtype == torch.float32 and marg.shape == em.shape

    gold = torch.zeros(mask.shape, dtype=torch.long)
    expected_nll = []
    for b, length in enumerate(lengths):
        if length == 0:  # documented: an empty row has logZ 0, no path, zero marginals, zero loss
            assert log_z[b].item() == 0.0 and paths[b] == []
            assert torch.all(marg[b] == 0)
            expected_nll.append(0.0)
            continue
        oracle_z, oracle_best, oracle_marg, scores = enumerate_row(crf, allowed, em[b, :length])
        assert log_z[b].item() == pytest.approx(oracle_z, abs=1e-4)
        assert paths[b] == oracle_best
        np.testing.assert_allclose(marg[b, :length].numpy(), oracle_marg, atol=1e-5)
        assert torch.all(marg[b, length:] == 0)
        # a random allowed gold path (padding positions hold garbage the CRF must ignore)
        gold_path = list(scores)[int(rng.integers(len(scores)))]
        gold[b, :length] = torch.tensor(gold_path)
        gold[b, length:] = -100
        expected_nll.append(oracle_z - scores[gold_path])

    nll = crf(em, gold, mask, reduction="none")
    np.testing.assert_allclose(nll.detach().numpy(), expected_nll, atol=1e-4)
    assert crf(em, gold, mask, reduction="sum").item() == pytest.approx(sum(expected_nll), abs=1e-3)
    assert crf(em, gold, mask, reduction="mean").item() == pytest.approx(np.mean(expected_nll), abs=1e-3)
    assert crf(em, gold, mask, reduction="token_mean").item() == pytest.approx(
        sum(expected_nll) / sum(lengths), abs=1e-3)


def test_marginals_equal_gradient_of_log_partition():
    crf = make_crf(seed=3)
    em, mask = tiny_batch(3, lengths=(7, 5, 2))
    em.requires_grad_(True)
    crf.log_partition(em, mask).sum().backward()
    torch.testing.assert_close(crf.marginals(em.detach(), mask), em.grad, atol=1e-5, rtol=1e-4)
    # rows are distributions over tags on valid positions
    torch.testing.assert_close(em.grad.sum(-1), mask.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_log_marginals_match_brute_force_and_are_differentiable(seed):
    rng = np.random.default_rng(seed)
    allowed = bio_allowed(TAGS)
    crf = make_crf(allowed, seed=seed)
    em, mask = tiny_batch(seed)
    em.requires_grad_(True)
    log_marg = crf.log_marginals(em, mask)
    for b, length in enumerate(mask.sum(1).tolist()):
        if length == 0:
            assert torch.all(log_marg[b] == 0)
            continue
        oracle = enumerate_row(crf, allowed, em[b, :length].detach())[2]
        np.testing.assert_allclose(log_marg[b, :length].exp().detach().numpy(), oracle, atol=1e-5)
    # gradients flow to the emissions and the transitions (a distillation loss trains both)
    target = torch.softmax(torch.tensor(rng.normal(size=em.shape), dtype=torch.float32), -1) * mask.unsqueeze(-1)
    loss = -(target * crf.log_marginals(em, mask).clamp_min(-1e4)).sum()
    loss.backward()
    assert em.grad is not None and torch.isfinite(em.grad).all() and em.grad.abs().sum() > 0
    assert crf.transitions.grad is not None and crf.transitions.grad.abs().sum() > 0


def test_decode_with_scores_reports_marginal_of_chosen_tag():
    crf = make_crf(seed=4)
    em, mask = tiny_batch(4)
    marg = crf.marginals(em, mask)
    out = crf.decode_with_scores(em, mask)
    assert [p for p, _ in out] == crf.decode(em, mask)
    for b, (path, probs) in enumerate(out):
        assert len(probs) == len(path) == int(mask[b].sum())
        assert probs == pytest.approx([marg[b, t, k].item() for t, k in enumerate(path)])


def test_equals_pytorch_crf_when_nothing_is_forbidden():
    n = len(TAGS)
    ones = (np.ones(n, bool), np.ones((n, n), bool), np.ones(n, bool))
    crf = make_crf(ones, seed=5)
    plain = torchcrf.CRF(n, batch_first=True)
    plain.load_state_dict(crf.state_dict(), strict=False)  # same parameter names and layout
    em, mask = tiny_batch(5, lengths=(6, 4, 1))
    tags = torch.randint(0, n, mask.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(crf(em, tags, mask, reduction="none"), -plain(em, tags, mask, reduction="none"))
    assert crf.decode(em, mask) == plain.decode(em, mask)


# ---------------------------------------------------------------------------------------- hard constraints

def illegal_moves(path: list[int], allowed) -> list[str]:
    start, trans, end = allowed
    bad = [f"start {TAGS[path[0]]}"] if path and not start[path[0]] else []
    bad += [f"{TAGS[a]}->{TAGS[b]}" for a, b in zip(path, path[1:]) if not trans[a, b]]
    bad += [f"end {TAGS[path[-1]]}"] if path and not end[path[-1]] else []
    return bad


@pytest.mark.parametrize("scheme", ["bio", "random"])
def test_decode_never_emits_illegal_transition_under_adversarial_scores(scheme):
    allowed = bio_allowed(TAGS) if scheme == "bio" else random_allowed(len(TAGS), np.random.default_rng(9))
    crf = make_crf(allowed, seed=6)
    with torch.no_grad():  # parameters that "learned" to love forbidden moves cannot buy them
        crf.start_transitions.masked_fill_(torch.from_numpy(~allowed[0]), 1e6)
        crf.transitions.masked_fill_(torch.from_numpy(~allowed[1]), 1e6)
        crf.end_transitions.masked_fill_(torch.from_numpy(~allowed[2]), 1e6)
    i_tags = [k for k, t in enumerate(TAGS) if t.startswith("I-")]
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(0, 30, (8,), generator=gen)
        lengths[0] = 30
        em = 20.0 * torch.randn(8, 30, len(TAGS), generator=gen)
        em[:, :, i_tags] += 200.0  # strongly prefer I-X everywhere, including position 0 and after O
        mask = torch.arange(30)[None, :] < lengths[:, None]
        paths = crf.decode(em, mask)
        for b, path in enumerate(paths):
            assert len(path) == lengths[b]
            assert illegal_moves(path, allowed) == [], (seed, b)
        # marginals put no mass on forbidden start tags
        marg = crf.marginals(em, mask)
        assert torch.all(marg[lengths > 0][:, 0][:, torch.from_numpy(~allowed[0])] == 0)


def test_constraint_is_applied_on_top_of_parameters():
    crf = make_crf(seed=7)
    em, mask = tiny_batch(7, lengths=(5, 3))
    before = crf.log_partition(em, mask)
    o, i_a = TAGS.index("O"), TAGS.index("I-A")
    with torch.no_grad():
        crf.transitions[o, i_a] = 1e3  # a forbidden entry: its value must not matter
    torch.testing.assert_close(crf.log_partition(em, mask), before)
    start, trans, end = crf.constrained_transitions()
    assert trans[o, i_a].item() == PENALTY and start[i_a].item() == PENALTY
    # and the forbidden entry gets no gradient at all
    gold = torch.tensor([[0, 1, 2, 0, 3], [3, 4, 0, 0, 0]])
    crf(em, gold, mask).backward()
    assert crf.transitions.grad[o, i_a].item() == 0.0
    assert crf.start_transitions.grad[i_a].item() == 0.0


def test_gold_path_with_forbidden_transition_is_rejected():
    crf = make_crf()
    em, mask = tiny_batch(0, lengths=(3, 3))
    o, b_a, i_a, i_b = (TAGS.index(t) for t in ("O", "B-A", "I-A", "I-B"))
    with pytest.raises(ValueError, match=r"row 1 position 0.*'I-A'"):
        crf(em, torch.tensor([[o, o, o], [i_a, i_a, o]]), mask)
    with pytest.raises(ValueError, match=r"row 0 position 2.*'B-A' -> 'I-B'"):
        crf(em, torch.tensor([[o, b_a, i_b], [o, o, o]]), mask)
    with pytest.raises(ValueError, match="outside"):
        crf(em, torch.tensor([[o, 7, o], [o, o, o]]), mask)


def test_constraints_without_any_legal_path_are_rejected():
    start, trans, end = bio_allowed(TAGS)
    with pytest.raises(ValueError, match="length 1"):
        ConstrainedCRF(TAGS, start, trans, np.zeros(len(TAGS), bool))
    only_b = np.array([t.startswith("B-") for t in TAGS])  # start/end only on B-, and B- -> B- forbidden
    no_bb = trans.copy()
    no_bb[np.ix_(only_b, only_b)] = False
    no_bb[:, 0] = False
    with pytest.raises(ValueError, match="length 2"):
        ConstrainedCRF(TAGS, only_b, no_bb, only_b)


@pytest.mark.parametrize("bad, match", [
    (dict(allowed_start=np.ones(4, bool)), "allowed_start"),
    (dict(allowed_trans=np.ones((5, 4), bool)), "allowed_trans"),
    (dict(allowed_end=np.array([1, 1, 1, 1, 2])), "allowed_end"),
    (dict(tags=["O", "B-A", "I-A", "B-B", "O"]), "duplicate"),
    (dict(tags=["O", "B-A", "I-A", "B-B", "START"]), "reserved"),
    (dict(transition_mode="learned"), "transition_mode"),
])
def test_constructor_rejects_bad_arguments(bad, match):
    start, trans, end = bio_allowed(TAGS)
    kwargs = dict(tags=TAGS, allowed_start=start, allowed_trans=trans, allowed_end=end) | bad
    with pytest.raises(ValueError, match=match):
        ConstrainedCRF(**kwargs)


def test_inputs_are_validated():
    crf = make_crf()
    em, mask = tiny_batch(0, lengths=(3, 2))
    with pytest.raises(ValueError, match="left-aligned"):
        crf.decode(em, torch.tensor([[True, False, True], [True, True, False]]))
    with pytest.raises(ValueError, match="left-aligned"):
        crf.log_partition(em, torch.tensor([[False, True, True], [True, True, False]]))
    with pytest.raises(ValueError, match="last dimension"):
        crf.decode(em[..., :4], mask)
    with pytest.raises(ValueError, match="mask"):
        crf.decode(em, mask[:, :2])
    with pytest.raises(ValueError, match="reduction"):
        crf(em, torch.zeros(2, 3, dtype=torch.long), mask, reduction="avg")
    bad = em.clone()
    bad[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        crf.decode(bad, mask)
    bad[1, 0, 2] = 0.0
    bad[1, 2, :] = float("nan")  # padding may hold anything
    assert crf.decode(bad, mask) == crf.decode(em, mask)
    assert torch.isfinite(crf(bad, torch.zeros(2, 3, dtype=torch.long), mask)).item()


def test_all_empty_batch_and_zero_length_sequence():
    crf = make_crf()
    em = torch.randn(3, 4, len(TAGS))
    mask = torch.zeros(3, 4, dtype=torch.bool)
    assert crf.decode(em, mask) == [[], [], []]
    assert torch.all(crf.log_partition(em, mask) == 0)
    loss = crf(em.requires_grad_(True), torch.zeros(3, 4, dtype=torch.long), mask, reduction="token_mean")
    assert loss.item() == 0.0
    assert crf.decode_with_scores(torch.zeros(2, 0, len(TAGS))) == [([], []), ([], [])]


# ------------------------------------------------------------------------------------------------- priors

def test_parse_transition_key():
    assert parse_transition_key(" B-A ->I-A ", TAGS) == (1, 2)
    assert parse_transition_key("START -> B-B", TAGS) == (None, 3)
    assert parse_transition_key("I-B -> END", TAGS) == (4, None)
    for key in ("B-A I-A", "B-A -> I-A -> O", "START -> END", "END -> O", "O -> START"):
        with pytest.raises(ValueError):
            parse_transition_key(key, TAGS)


def test_priors_initialise_learnable_transitions_deterministically():
    weights = {"B-A -> I-A": 1.5, "O -> B-B": 0.8, "START -> B-A": -0.25, "I-B -> END": 2.0}
    a = ConstrainedCRF(TAGS, *bio_allowed(TAGS), transition_weights=weights)
    b = ConstrainedCRF(TAGS, *bio_allowed(TAGS), transition_weights=weights)
    assert a.transitions[1, 2].item() == 1.5 and a.transitions[0, 3].item() == pytest.approx(0.8)
    assert a.start_transitions[1].item() == -0.25 and a.end_transitions[4].item() == 2.0
    assert a.transitions.abs().sum().item() == pytest.approx(2.3)  # everything else starts at 0
    assert a.transitions.requires_grad
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    a.reset_parameters()
    assert a.transitions[1, 2].item() == 1.5


def test_unknown_tag_in_prior_lists_valid_tags():
    with pytest.raises(ValueError, match=r"B-C.*valid tags: O, B-A, I-A, B-B, I-B") as info:
        ConstrainedCRF(TAGS, *bio_allowed(TAGS), transition_weights={"O -> B-C": 1.0})
    assert isinstance(info.value, ConfigError)  # the CLI prints it as one line
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("weights, match", [
    ({"O -> I-A": 1.0}, "forbids"),
    ({"START -> I-B": 1.0}, "forbids"),
    ({"B-A -> I-B": 1.0}, "forbids"),
    ({"O -> B-A": float("nan")}, "finite"),
    ({"O -> B-A": "high"}, "number"),
    ({"O -> B-A": 1.0, "O->B-A": 2.0}, "twice"),
])
def test_bad_priors_are_rejected(weights, match):
    with pytest.raises(ValueError, match=match):
        ConstrainedCRF(TAGS, *bio_allowed(TAGS), transition_weights=weights)


def test_forbidden_end_prior_is_rejected():
    start, trans, end = bio_allowed(TAGS)
    end[TAGS.index("B-A")] = False
    with pytest.raises(ValueError, match="forbids"):
        ConstrainedCRF(TAGS, start, trans, end, transition_weights={"B-A -> END": 1.0})


def one_step(crf: ConstrainedCRF) -> None:
    em, mask = tiny_batch(11, lengths=(4, 3))
    em = torch.nn.Parameter(em)  # an encoder stands behind the emissions; the optimiser sees both
    opt = torch.optim.Adam([em, *crf.parameters()], lr=0.1)
    gold = torch.tensor([[1, 2, 0, 3], [3, 4, 4, 0]])
    crf(em, gold, mask).backward()
    opt.step()


def test_fixed_mode_keeps_transitions_constant():
    weights = {"B-A -> I-A": 1.5, "START -> B-A": 0.5}
    crf = ConstrainedCRF(TAGS, *bio_allowed(TAGS), transition_weights=weights, transition_mode="fixed")
    crf.requires_grad_(True)  # e.g. peft modules_to_save: a fixed prior must stay fixed anyway
    assert list(crf.parameters()) == []
    assert not crf.transitions.requires_grad
    before = {k: v.clone() for k, v in crf.state_dict().items()}
    one_step(crf)
    for k, v in crf.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert crf.transitions[1, 2].item() == 1.5 and crf.transitions.abs().sum().item() == 1.5
    assert set(before) >= {"start_transitions", "transitions", "end_transitions"}


def test_init_mode_learns_transitions():
    crf = ConstrainedCRF(TAGS, *bio_allowed(TAGS), transition_weights={"B-A -> I-A": 1.5})
    before = crf.transitions.detach().clone()
    one_step(crf)
    allowed = torch.from_numpy(bio_allowed(TAGS)[1])
    assert not torch.equal(crf.transitions[allowed], before[allowed])
    assert torch.equal(crf.transitions[~allowed], before[~allowed])  # forbidden entries get no gradient


# ------------------------------------------------------------------------------------------ precision

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_emissions_give_finite_fp32_results(dtype):
    crf = make_crf(seed=8)
    em32, mask = tiny_batch(8, lengths=(6, 2, 0))
    em32 = 10 * em32
    em = em32.to(dtype).requires_grad_(True)
    gold = torch.tensor([[0, 1, 2, 2, 0, 3], [3, 4, 0, 0, 0, 0], [0] * 6])
    nll = crf(em, gold, mask, reduction="none")
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()
    nll.sum().backward()
    assert em.grad.dtype == dtype and torch.isfinite(em.grad.float()).all()
    assert crf.log_partition(em, mask).dtype == torch.float32
    assert crf.marginals(em, mask).dtype == torch.float32
    torch.testing.assert_close(crf.log_partition(em, mask), crf.log_partition(em.detach().float(), mask))
    # a module cast to low precision still computes in fp32
    crf.to(dtype)
    assert crf.log_partition(em, mask).dtype == torch.float32
    for path in crf.decode(em, mask):
        assert illegal_moves(path, bio_allowed(TAGS)) == []


# ------------------------------------------------------------------------------------------- training

def test_tiny_training_recovers_gold_tags():
    """Emissions from a per-token embedding; context (B vs I) must come from the CRF transitions."""
    torch.manual_seed(0)
    # token ids: 0 = filler (O); 1 = entity-A char; 2 = entity-B char. A run of 1s is B-A I-A ..., of 2s B-B I-B ...
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 3, (64, 12), generator=gen)
    lengths = torch.randint(1, 13, (64,), generator=gen)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    gold = torch.zeros_like(tokens)
    for b in range(64):
        for t in range(12):
            tok = int(tokens[b, t])
            if tok == 0:
                continue
            inside = t > 0 and int(tokens[b, t - 1]) == tok
            gold[b, t] = TAGS.index(("I-" if inside else "B-") + "AB"[tok - 1])
    emb = torch.nn.Embedding(3, len(TAGS))
    crf = ConstrainedCRF(TAGS, *bio_allowed(TAGS))
    opt = torch.optim.Adam([*emb.parameters(), *crf.parameters()], lr=0.05)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = crf(emb(tokens), gold, mask)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.05 * first
    paths = crf.decode(emb(tokens).detach(), mask)
    assert paths == [gold[b, : lengths[b]].tolist() for b in range(64)]


# ------------------------------------------------------------------------------------ span confidence

def test_span_confidence():
    probs = [0.9, 0.5, 0.8, 0.99]
    assert span_confidence(probs, 1, 3) == 0.5
    assert span_confidence(probs, 1, 3, reduce="mean") == pytest.approx(0.65)
    assert span_confidence(probs, 3, 4) == 0.99
    for start, end in ((2, 2), (-1, 2), (0, 5)):
        with pytest.raises(ValueError):
            span_confidence(probs, start, end)
    with pytest.raises(ValueError, match="reduce"):
        span_confidence(probs, 0, 1, reduce="max")


def test_scaled_marginals_match_float64_log_space_on_long_ragged_input():
    """The fast (scaled, probability-space) forward-backward equals the log-space one run in float64."""
    crf = make_crf(seed=3)
    torch.manual_seed(3)
    emissions = torch.randn(300, 4, crf.num_tags) * 4  # time-first, as the internals take it
    lengths = torch.tensor([300, 120, 1, 57])
    mask = torch.arange(300).unsqueeze(1) < lengths.unsqueeze(0)
    with torch.no_grad():
        reference = crf._marginals(emissions.double(), mask)
        fast = crf._marginals_scaled(emissions, mask).double()
    valid = mask.unsqueeze(-1)
    assert torch.allclose(fast * valid, reference * valid, atol=1e-6)
    assert torch.allclose((fast * valid).sum(-1), valid.squeeze(-1).double())


def test_marginals_fall_back_to_log_space_when_scaling_underflows(monkeypatch):
    crf = make_crf(seed=4)
    emissions = torch.randn(2, 6, crf.num_tags)
    expected = crf.marginals(emissions)
    monkeypatch.setattr(crf, "_marginals_scaled", lambda em, mask: torch.full_like(em, float("nan")))
    torch.testing.assert_close(crf.marginals(emissions), expected, atol=1e-5, rtol=0)
