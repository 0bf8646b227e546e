#!/usr/bin/env python
"""Training speed, fp32 vs bf16 autocast: tokens per second of LoRA + CRF training steps on CCKS 2019 windows.

    .venv/bin/python scripts/bench/bench_train_precision.py [--steps 12] [--threads 2] [--set KEY=VALUE ...]

Builds the tagger of configs/ccks2019.yaml twice from the same seed (one per precision), then runs the same
``--steps`` batches of 16 training windows through forward, backward and the optimiser step, one precision
after the other in one process, after one untimed warm-up step each. Prints wall seconds, tokens/s and the
mean loss of the timed steps (the two losses should agree to a few percent). bf16 is fast only on CPUs with
AMX/AVX512-bf16 units; elsewhere it is emulated and slower. Needs ../shared/data.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    if not (ROOT.parent / "shared" / "data" / "corpora" / "ccks2019_yidu").is_dir():
        print("../shared/data/corpora/ccks2019_yidu not found: this benchmark needs the CCKS 2019 files", file=sys.stderr)
        return 2
    import torch

    from medner.config import load_config
    from medner.model.device import autocast
    from medner.model.windows import collate
    from medner.training.finetune import Dist, build_optimizer, build_tagger, length_bucketed_batches, prepare_inputs

    torch.set_num_threads(args.threads)
    config = load_config(ROOT / "configs" / "ccks2019.yaml", args.set)
    inputs = prepare_inputs(config, Dist(), None)
    dataset, pad_id = inputs.dataset, inputs.tokenizer.pad_token_id or 0
    lengths = [len(ids) for ids in dataset["input_ids"]]
    batches = length_bucketed_batches(lengths, config.train.batch_size, config.seed)[: args.steps + 1]
    device = torch.device("cpu")
    results = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        torch.manual_seed(config.seed)
        tagger = build_tagger(config, inputs, device)
        tagger.train()
        optimizer = build_optimizer(tagger, config)
        tokens, losses, started = 0, [], 0.0
        for i, rows in enumerate(batches):
            if i == 1:  # step 0 warms up (allocations, kernels) and is not timed
                started = time.perf_counter()
            batch = collate([dataset[j] for j in rows], pad_id)
            with autocast(device, dtype):
                loss = tagger(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tagger.parameters(), config.train.clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= 1:
                tokens += int(batch["attention_mask"].sum())
                losses.append(loss.item())
        seconds = time.perf_counter() - started
        results[name] = tokens / seconds
        print(f"{name}: {args.steps} steps, {tokens} tokens in {seconds:.1f} s = {tokens / seconds:,.0f} tokens/s, "
              f"mean loss {sum(losses) / len(losses):.3f}")
    print(f"bf16 / fp32 speed: {results['bf16'] / results['fp32']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
