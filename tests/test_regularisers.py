"""Layer-wise learning-rate decay, FGM and R-Drop (`train.llrd`, `train.fgm_epsilon`, `train.rdrop_alpha`)."""
from __future__ import annotations

import json

import pytest
import torch

from medner.config import load_config
from medner.errors import ConfigError
from medner.model.windows import collate_windows
from medner.training.adversarial import FGM
from medner.training.finetune import Dist, build_optimizer, build_tagger, finetune, prepare_inputs
from tiny_model import write_config


def tagger_and_batch(tiny_corpus, tmp_path, *overrides: str):
    """A fresh tiny tagger (2 layers) as a run config with ``overrides`` builds it, and one batch of 8 windows."""
    config = load_config(write_config(tmp_path, tiny_corpus), list(overrides))
    inputs = prepare_inputs(config, Dist(), None)
    torch.manual_seed(0)
    tagger = build_tagger(config, inputs, torch.device("cpu"))
    return config, tagger, collate_windows(inputs.dataset, range(8), inputs.tokenizer.pad_token_id)


@pytest.mark.parametrize("adapters", ["lora", "full"])
def test_llrd_lowers_the_rate_by_one_factor_per_layer_down(tiny_corpus, tmp_path, adapters):
    extra = [] if adapters == "lora" else ["lora=null"]
    config, tagger, _ = tagger_and_batch(tiny_corpus, tmp_path, "train.llrd=0.5", *extra)
    rate = {id(p): group["lr"] for group in build_optimizer(tagger, config).param_groups for p in group["params"]}
    base, head = config.train.lr_encoder, config.train.lr_head
    head_ids = {id(p) for m in tagger.head_modules().values() for p in m.parameters()}
    seen = set()
    for name, param in tagger.named_parameters():
        if not param.requires_grad:
            assert id(param) not in rate
            continue
        if id(param) in head_ids:
            expected = head
        elif ".layer.1." in name:  # the top layer of two
            expected = base
        elif ".layer.0." in name:
            expected = base * 0.5
        else:
            assert "embeddings" in name, name
            expected = base * 0.25
        assert rate[id(param)] == pytest.approx(expected), name
        seen.add("embeddings" if "embeddings" in name else name.split(".layer.")[-1][:1])
    assert {"0", "1"} <= seen and (adapters == "lora" or "embeddings" in seen)
    config.train.llrd = 1.0  # off: the groups of a run without it (so its checkpoints resume as before)
    groups = build_optimizer(tagger, config).param_groups
    assert {g["lr"] for g in groups} == {base, head}
    assert {g["name"] for g in groups} <= {"encoder", "encoder-no-decay", "head", "head-no-decay"}


@pytest.mark.parametrize("key", ["llrd=0", "llrd=1.5", "fgm_epsilon=-1", "rdrop_alpha=-0.1"])
def test_bad_regulariser_settings_are_refused(tiny_corpus, tmp_path, key):
    with pytest.raises(ConfigError, match=f"train.{key.split('=')[0]}"):
        load_config(write_config(tmp_path, tiny_corpus), [f"train.{key}"])


@pytest.mark.parametrize("adapters", ["lora", "full"])
def test_fgm_moves_the_embeddings_uphill_by_the_first_order_amount(tiny_corpus, tmp_path, adapters):
    """Oracle: for a small epsilon the loss rises by epsilon * ||g_row|| summed over rows (the perturbation is
    epsilon along each row's normalised gradient), and the hook is gone afterwards."""
    extra = [] if adapters == "lora" else ["lora=null"]
    _, tagger, batch = tagger_and_batch(tiny_corpus, tmp_path, *extra)
    tagger.eval()  # no dropout: the passes differ only by the perturbation
    epsilon = 1e-3
    fgm = FGM(tagger.encoder, epsilon)
    with pytest.raises(RuntimeError, match="capture"):
        fgm.attack(lambda: tagger.loss(batch))
    with fgm.capture():
        clean = tagger.loss(batch)
    clean.backward()
    assert len(fgm._captured) == 1
    grad = fgm._captured[0].grad.detach().clone()
    adversarial = fgm.attack(lambda: tagger.loss(batch))
    expected_rise = epsilon * grad.flatten(1).norm(dim=1).sum().item()
    assert adversarial.item() > clean.item()
    assert adversarial.item() - clean.item() == pytest.approx(expected_rise, rel=0.05)
    trainable = [p for p in tagger.parameters() if p.requires_grad]
    clean_grads = [p.grad.clone() for p in trainable]
    adversarial.backward()  # the adversarial pass's gradients add to the clean pass's
    assert any(not torch.equal(p.grad, g) for p, g in zip(trainable, clean_grads))
    with torch.no_grad():
        assert tagger.loss(batch).item() == pytest.approx(clean.item(), abs=1e-6)  # no hook left behind


@pytest.mark.parametrize("crf", [True, False])
def test_rdrop_adds_the_symmetric_kl_of_two_dropout_passes(tiny_corpus, tmp_path, crf):
    extra = [] if crf else ["crf.enabled=false", "crf.transition_weights={}"]
    _, tagger, batch = tagger_and_batch(tiny_corpus, tmp_path, "head.dropout=0.3", *extra)
    mask = batch["label_mask"].bool()
    args = (batch["input_ids"], batch["attention_mask"], batch["label_index"])
    tagger.train()
    a, b = tagger.emissions(*args), tagger.emissions(*args)
    # the oracle: KL between the per-token tag distributions, computed directly
    log_p, log_q = tagger.log_tag_marginals(a, mask), tagger.log_tag_marginals(b, mask)
    kl = lambda x, y: (x.exp() * (x - y)).sum(-1)  # noqa: E731
    expected = ((kl(log_p, log_q) + kl(log_q, log_p)) / 2)[mask].mean()
    assert tagger.symmetric_kl(a, b, mask).item() == pytest.approx(expected.item(), rel=1e-4)
    assert expected.item() > 0 and tagger.symmetric_kl(a, a, mask).item() == pytest.approx(0.0, abs=1e-7)

    tagger.rdrop_alpha = 2.0
    torch.manual_seed(5)
    combined = tagger.loss(batch)
    torch.manual_seed(5)
    a, b = tagger.emissions(*args), tagger.emissions(*args)
    plain = (tagger._gold_loss(a, batch["tags"], mask) + tagger._gold_loss(b, batch["tags"], mask)) / 2
    assert combined.item() == pytest.approx((plain + 2.0 * tagger.symmetric_kl(a, b, mask)).item(), rel=1e-5)
    tagger.eval()  # R-Drop is a training loss only: in eval mode one pass, as without it
    tagger.rdrop_alpha = 0.0
    without = tagger.loss(batch).item()
    tagger.rdrop_alpha = 2.0
    assert tagger.loss(batch).item() == pytest.approx(without, abs=1e-6)


def test_fgm_with_rdrop_sums_the_gradients_of_both_passes(tiny_corpus, tmp_path):
    _, tagger, batch = tagger_and_batch(tiny_corpus, tmp_path, "head.dropout=0.3")
    tagger.train()
    tagger.rdrop_alpha = 1.0
    fgm = FGM(tagger.encoder, 1.0)
    with fgm.capture():
        loss = tagger.loss(batch)
    loss.backward()
    assert len(fgm._captured) == 2  # the encoder ran twice
    total = fgm._captured[0].grad + fgm._captured[1].grad
    expected = total / total.flatten(1).norm(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(fgm.perturbation(), expected)


def test_a_run_with_every_regulariser_trains_and_learns(tiny_corpus, tmp_path, monkeypatch):
    """The training loop really takes the adversarial pass and the R-Drop term, and still learns."""
    from medner.model.tagger import Tagger

    calls = {"attack": 0, "kl": 0}

    def counted(method, key):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return method(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(FGM, "attack", counted(FGM.attack, "attack"))
    monkeypatch.setattr(Tagger, "symmetric_kl", counted(Tagger.symmetric_kl, "kl"))
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=4),
                         ["train.llrd=0.8", "train.fgm_epsilon=0.05", "train.rdrop_alpha=1.0"])
    run = finetune(config, progress=False)
    steps = 4 * -(-48 // 8)  # 4 epochs of at least 6 batches (48 records, some cut into several windows)
    assert calls["attack"] >= steps and calls["kl"] >= 2 * steps  # the clean and the adversarial pass
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert max(r["dev_f1"] for r in rows if "dev_f1" in r) > 0.5
