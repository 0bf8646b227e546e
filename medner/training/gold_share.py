"""Which training records' gold a run may read: all of them, none (weak mode), or a seeded share."""
from __future__ import annotations

import random

from medner.config import RunConfig
from medner.types import Record


def gold_share(config: RunConfig, train_records: list[Record]) -> tuple[list[Record], list[Record]]:
    """The training records whose gold the run may read, and the rest (texts whose gold is never read).

    Weak mode reads no gold; otherwise a sample of `supervision.gold_fraction` of the records (all at 1.0), drawn
    with `supervision.gold_seed` (else `seed`)."""
    sup = config.supervision
    if sup.mode == "weak":
        return [], list(train_records)
    seed = sample_seed(config)
    if seed is None:
        return list(train_records), []
    gold = random.Random(seed).sample(train_records, max(1, round(len(train_records) * sup.gold_fraction)))
    sampled = {id(r) for r in gold}
    return gold, [r for r in train_records if id(r) not in sampled]


def sample_seed(config: RunConfig) -> int | None:
    """The seed that draws the gold share: `supervision.gold_seed`, else `seed`; None when all the gold is read."""
    sup = config.supervision
    if sup.gold_fraction >= 1.0:
        return None
    return config.seed if sup.gold_seed is None else sup.gold_seed
