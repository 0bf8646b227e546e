"""Weak-labelling config: YAML -> validated dataclasses (:class:`WeakConfig`), read by :func:`read_weak_config`.

Config (``configs/weak_labels/ccks2019.yaml`` is the worked example)::

    version: ccks2019-1
    labels: [疾病和诊断, 手术, ...]          # every LF output must be one of these
    lexicons:                               # named lexicon files (project TSV format)
      icd: {path: ../lexicons/build/lexicon_zh.tsv, build: lexicon_zh.yaml}   # built in memory if missing
      anatomy: {path: ../lexicons/anatomy.tsv}
    functions:                              # labelling functions, in order
      - name: icd10                         # unique; becomes Span.source
        kind: lexicon                       # lexicon | imaging | lab_value | lymph_node | procedure |
                                            # operation | tumour_site (medner/weak/rules.py) |
                                            # extent (medner/weak/extent.py)
        lexicon: icd
        sources: [icd10_national, ...]      # optional filter on the entries' source column
        label_map: {疾病和诊断: 疾病和诊断}    # lexicon label -> output label (others dropped)
        include_aliases: true               # false: official names only
        prefixes: laterality                # or a list of strings
        suffixes: [术后]
        block: {lexicon: symptoms}          # terms that are matched but never emitted
        block_matching: '(肿物|占位)$'      # ... and so are the entries whose term this regex finds
        min_length: 2
      - name: imaging
        kind: imaging
        label: 影像检查
        modalities: {lexicon: imaging, labels: [imaging_modality]}   # a term list: a list or a reference
      - name: site_lesion                   # SITE [多发] HEAD: 肝多发囊肿 (default heads: tumours, 腺癌 ...)
        kind: tumour_site
        label: 疾病和诊断
        sites: {lexicon: anatomy, labels: [anatomy]}
        heads: [囊肿, 结石, 溃疡]
      - name: diagnosis_extent              # widens the spans of functions named earlier in the list
        kind: extent
        label: 疾病和诊断
        base: [icd10, tumour_site]
        sites: [anatomy]                    # also: joiners, left, right (regexes), from_labels (labels of
                                            # base spans to widen, default its own: 胆囊切除术 + 后 -> diagnosis)
    aggregator:
      method: majority                      # the default method: majority | dawid_skene
      majority: {nested: true, nested_other: 0.5}   # options of each method (all optional)
      dawid_skene: {min_confidence: 0.5, prior_strength: 1.0}
    link: {lexicon: icd, labels: [疾病和诊断, 手术], min_score: 0.6}     # optional: ICD codes for uncoded spans

The keys each kind of function takes are the fields of its class below (:class:`LexiconFunction`,
:class:`ImagingFunction`, ...); :func:`medner.config.build_config` checks them, so an unknown key, a wrong type or
a missing required key fails naming the file and the dotted key (``functions[3].label_map``), and the cross-field
checks of :class:`WeakConfig` (a function's lexicon is one of ``lexicons:``, its labels are among ``labels:``,
names are unique, an extent function widens functions defined above it) name the key as well.

Paths: ``${VAR}`` / ``${VAR:-default}`` from the environment, then relative paths against the config's
directory (the convention of ``configs/lexicon_zh.yaml``), resolved when a lexicon is read. A term list is a YAML
list whose items are strings or references ``{lexicon: NAME, labels: [...]}`` (the terms of that lexicon,
optionally only those labels), or one reference. Lexicon functions also take ``not_before`` (a regex; see
:class:`~medner.weak.base.LexiconLF`), ``word_boundary`` and ``label_priority``; every function takes
``weight`` (its vote in majority voting, >= 0, default 1; `aggregator.majority.weights` overrides it by name).
"""
from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Union, get_args

from medner.config import NOT_IN_FILE, load_yaml_config
from medner.errors import ConfigError

__all__ = ["WeakConfig", "read_weak_config", "FUNCTION_KINDS", "FunctionKind", "FunctionSpec", "LexiconFunction",
           "ImagingFunction", "LabValueFunction", "LymphNodeFunction", "ProcedureFunction", "OperationFunction",
           "TumourSiteFunction", "ExtentFunction", "TermRef", "TermList", "LexiconFile", "AggregatorConfig",
           "MajorityOptions", "DawidSkeneOptions", "WeakLinkConfig", "check_functions"]


@dataclass(frozen=True, kw_only=True)
class TermRef:
    """The terms of a lexicon of ``lexicons:``, optionally only the entries with these labels."""

    lexicon: str
    labels: tuple[str, ...] | None = None


#: a term list: one reference, or a list whose items are terms, references or lists of them (three lists deep at most)
_Terms3 = tuple[Union[str, TermRef], ...]
_Terms2 = tuple[Union[str, TermRef, _Terms3], ...]
TermList = Union[TermRef, tuple[Union[str, TermRef, _Terms2], ...]]


@dataclass(frozen=True, kw_only=True)
class LexiconFile:
    """A named lexicon file (project TSV format)."""

    path: str  # ${VAR} and relative paths resolved against the config's folder when it is read
    build: str | None = None  # a lexicon build config that makes it in memory when the file is missing

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("empty path", field="path", fix="give the lexicon file as `path:`")


def _check_weight(weight: float, key: str, name: str = "") -> None:
    """A vote weight is a finite number >= 0: a negative one would silently cancel the function's spans."""
    if not 0.0 <= weight < math.inf:
        raise ConfigError(f"{name + ': ' if name else ''}must be >= 0, got {weight}", field=key,
                          fix="give a vote weight of 0 or more (1: one vote; remove the function to silence it)")


# ------------------------------------------------------------------------------------------- functions
@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """The keys of every labelling function; each kind is a subclass with a ``kind`` field and its own keys."""

    name: str  # unique; becomes Span.source
    weight: float = 1.0  # its vote in majority voting

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("weak:"):
            raise ConfigError(f"name {self.name!r} is empty or starts with 'weak:' (the aggregators' prefix)",
                              field="name", fix="give each function a unique name")
        _check_weight(self.weight, "weight")


@dataclass(frozen=True, kw_only=True)
class LexiconFunction(FunctionSpec):
    """The terms of a lexicon (:class:`~medner.weak.base.LexiconLF`)."""

    kind: Literal["lexicon"] = "lexicon"
    lexicon: str  # a name under `lexicons:`
    label_map: dict[str, str | None]  # lexicon label -> corpus label (null or absent: dropped)
    sources: tuple[str, ...] | None = None  # only entries of these sources
    include_aliases: bool = True  # false: official names only
    prefixes: Literal["laterality"] | tuple[str, ...] = ()  # laterality: 左 右 双侧 ...
    suffixes: tuple[str, ...] = ()
    block: TermList | None = None  # matched but never emitted
    block_matching: str | None = None  # regex: entries whose term it finds are blocked
    min_length: int = 2
    word_boundary: bool = True
    label_priority: tuple[str, ...] = ()
    not_before: str | None = None  # regex: no match right before it

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.label_map:
            raise ConfigError("expected a mapping lexicon label -> corpus label", field="label_map",
                              fix="write e.g. `label_map: {anatomy: 解剖部位}`")


@dataclass(frozen=True, kw_only=True)
class RuleFunction(FunctionSpec):
    """A pattern rule that emits one label (:mod:`medner.weak.rules`, :mod:`medner.weak.extent`)."""

    label: str  # one of `labels:`


@dataclass(frozen=True, kw_only=True)
class ImagingFunction(RuleFunction):
    """``[laterality][region{1,3}[部]]modality[suffix]`` and complete exams (:func:`~medner.weak.rules.imaging_lf`)."""

    kind: Literal["imaging"] = "imaging"
    modalities: TermList
    exams: TermList | None = None
    regions: TermList | None = None
    laterality: TermList | None = None  # null: rules.LATERALITY; [] for none


@dataclass(frozen=True, kw_only=True)
class LabValueFunction(RuleFunction):
    """A lab test name followed by a value (:func:`~medner.weak.rules.lab_value_lf`)."""

    kind: Literal["lab_value"] = "lab_value"
    tests: TermList | None = None
    generic: bool = True  # also unknown names before a value


@dataclass(frozen=True, kw_only=True)
class LymphNodeFunction(RuleFunction):
    """Lymph-node stations (:func:`~medner.weak.rules.lymph_node_lf`)."""

    kind: Literal["lymph_node"] = "lymph_node"
    sites: TermList | None = None


@dataclass(frozen=True, kw_only=True)
class ProcedureFunction(RuleFunction):
    """``行…术`` patterns (:func:`~medner.weak.rules.procedure_lf`)."""

    kind: Literal["procedure"] = "procedure"
    triggers: tuple[str, ...] | None = None  # null: the rule's own triggers


@dataclass(frozen=True, kw_only=True)
class OperationFunction(RuleFunction):
    """Operations named by what and where (:func:`~medner.weak.rules.operation_lf`)."""

    kind: Literal["operation"] = "operation"
    sites: TermList


@dataclass(frozen=True, kw_only=True)
class TumourSiteFunction(RuleFunction):
    """``SITE [多发] HEAD`` (:func:`~medner.weak.rules.tumour_site_lf`)."""

    kind: Literal["tumour_site"] = "tumour_site"
    sites: TermList
    heads: TermList | None = None  # null: tumours (癌, 腺癌 ...)


@dataclass(frozen=True, kw_only=True)
class ExtentFunction(RuleFunction):
    """Widens the spans of functions defined above it (:class:`~medner.weak.extent.ExtentLF`)."""

    kind: Literal["extent"] = "extent"
    base: tuple[str, ...]  # names of functions above this one
    sites: tuple[str, ...] = ()  # names of functions above this one whose spans may be joined
    joiners: tuple[str, ...] | None = None
    left: str | None = None  # regex; null: the diagnosis default
    right: str | None = None
    from_labels: tuple[str, ...] | None = None  # labels of the base spans it widens; null: its own label


#: a labelling function: the kind picks the class (and so the keys it takes)
FunctionKind = Union[LexiconFunction, ImagingFunction, LabValueFunction, LymphNodeFunction, ProcedureFunction,
                     OperationFunction, TumourSiteFunction, ExtentFunction]
#: kind -> its class
FUNCTION_KINDS: dict[str, type[FunctionSpec]] = {cls.kind: cls for cls in get_args(FunctionKind)}


# ------------------------------------------------------------------------------------------ aggregator
@dataclass(frozen=True, kw_only=True)
class MajorityOptions:
    """Options of :class:`~medner.weak.aggregate.MajorityVote`; null: its default."""

    weights: dict[str, float] | None = None  # function name -> vote, over each function's own `weight`
    min_votes: float | None = None
    nested: bool | None = None
    nested_other: float | None = None

    def __post_init__(self) -> None:
        for name, weight in (self.weights or {}).items():
            _check_weight(weight, "weights", repr(name))
        if self.nested_other is not None and not 0.0 <= self.nested_other <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.nested_other}", field="nested_other",
                              fix="give the weight of other-label nested votes, 0 to 1")


@dataclass(frozen=True, kw_only=True)
class DawidSkeneOptions:
    """Options of :class:`~medner.weak.aggregate.DawidSkene`; null: its default."""

    min_confidence: float | None = None
    max_iter: int | None = None
    tol: float | None = None
    smoothing: float | None = None
    prior_strength: float | None = None

    def __post_init__(self) -> None:
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.min_confidence}", field="min_confidence",
                              fix="give the lowest mean posterior of an output span, 0 to 1")


@dataclass(frozen=True, kw_only=True)
class AggregatorConfig:
    """The default aggregation method, and the options of each method."""

    method: Literal["majority", "dawid_skene"]
    majority: MajorityOptions = field(default_factory=MajorityOptions)
    dawid_skene: DawidSkeneOptions = field(default_factory=DawidSkeneOptions)

    def options(self, method: str | None = None) -> dict[str, Any]:
        """The options set for ``method`` (default: :attr:`method`), as keyword arguments."""
        chosen = getattr(self, method or self.method)
        return {f.name: getattr(chosen, f.name) for f in fields(chosen) if getattr(chosen, f.name) is not None}


@dataclass(frozen=True, kw_only=True)
class WeakLinkConfig:
    """ICD codes for weak spans that carry none (:class:`~medner.lexicon.link.IcdLinker`)."""

    lexicon: str  # a name under `lexicons:`
    labels: tuple[str, ...] | None = None  # span labels to link; null: the linker's default
    label_map: dict[str, str] | None = None  # span label -> lexicon label
    min_score: float | None = None  # lowest fuzzy similarity accepted, in (0, 1]

    def __post_init__(self) -> None:
        if self.min_score is not None and not 0.0 < self.min_score <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.min_score}", field="min_score",
                              fix="give the lowest similarity accepted, e.g. 0.6")


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True, kw_only=True)
class WeakConfig:
    """A validated weak-labelling config; ``path`` is the config file (not a key of it)."""

    path: Path = field(metadata=NOT_IN_FILE)
    version: str = "0"
    description: str = ""
    labels: tuple[str, ...]  # the corpus labels: every function's output is one of them
    lexicons: dict[str, LexiconFile] = field(default_factory=dict)
    functions: tuple[FunctionKind, ...]
    aggregator: AggregatorConfig = field(default_factory=lambda: AggregatorConfig(method="dawid_skene"))
    link: WeakLinkConfig | None = None

    def __post_init__(self) -> None:
        if not self.labels or not all(self.labels):
            raise ConfigError("expected a non-empty list of label names", field="labels", fix="list the corpus labels")
        if not self.functions:
            raise ConfigError("expected a non-empty list", field="functions", fix="list the labelling functions")
        check_functions(self.functions, self.labels, self.lexicons)
        names = {fn.name for fn in self.functions}
        stray = sorted(set(self.aggregator.majority.weights or {}) - names)
        if stray:
            raise ConfigError(f"{stray[0]!r} is not the name of a labelling function ({sorted(names)})",
                              field="aggregator.majority.weights", fix="give weights by function name")
        link = self.link
        if link is not None:
            if link.lexicon not in self.lexicons:
                raise ConfigError(f"{link.lexicon!r} is not a lexicon of `lexicons:` ({sorted(self.lexicons)})",
                                  field="link.lexicon", fix="name the ICD lexicon, or remove `link:`")
            bad = [x for x in link.labels or () if x not in self.labels]
            if bad:
                raise ConfigError(f"{bad[0]!r} is not one of `labels` {list(self.labels)}", field="link.labels",
                                  fix="list corpus labels")


def check_functions(functions: Sequence[FunctionSpec], labels: Collection[str], lexicons: Collection[str]) -> None:
    """Cross-field checks of a function list: unique names, known lexicons and labels, extent functions that widen
    functions defined above them; errors name the key (``functions[3].label_map``)."""
    names: list[str] = []
    for i, fn in enumerate(functions):
        key = f"functions[{i}]"
        if fn.name in names:
            raise ConfigError(f"name {fn.name!r} is duplicated", field=f"{key}.name", fix="give each function a unique name")
        if isinstance(fn, LexiconFunction):
            if fn.lexicon not in lexicons:
                raise ConfigError(f"{fn.lexicon!r} is not a lexicon of `lexicons:` ({sorted(lexicons)})",
                                  field=f"{key}.lexicon", fix="name one of the lexicons")
            bad = [v for v in fn.label_map.values() if v is not None and v not in labels]
            if bad:
                raise ConfigError(f"{bad[0]!r} is not one of `labels` {list(labels)}", field=f"{key}.label_map",
                                  fix="map lexicon labels to corpus labels (or null to drop them)")
        elif isinstance(fn, RuleFunction) and fn.label not in labels:
            raise ConfigError(f"{fn.label!r} is not one of `labels` {list(labels)}", field=f"{key}.label",
                              fix="set `label:` to one of the corpus labels")
        for ref_key, ref in _term_refs(fn):
            if ref.lexicon not in lexicons:
                raise ConfigError(f"{ref.lexicon!r} is not a lexicon of `lexicons:` ({sorted(lexicons)})",
                                  field=f"{key}.{ref_key}", fix="name one of the lexicons")
        if isinstance(fn, ExtentFunction):
            for side in ("base", "sites"):
                missing = [n for n in getattr(fn, side) if n not in names]
                if missing or (side == "base" and not fn.base):
                    raise ConfigError(f"{missing} are not functions defined above this one ({names})"
                                      if missing else "expected at least one function name", field=f"{key}.{side}",
                                      fix="list functions that come earlier in `functions:`")
        names.append(fn.name)


def _term_refs(fn: FunctionSpec) -> Iterator[tuple[str, TermRef]]:
    """(dotted key, reference) of every lexicon reference in ``fn``'s term lists."""

    def walk(value: Any, key: str) -> Iterator[tuple[str, TermRef]]:
        if isinstance(value, TermRef):
            yield f"{key}.lexicon", value
        elif isinstance(value, tuple):
            for j, item in enumerate(value):
                yield from walk(item, f"{key}[{j}]")

    for f in fields(fn):
        yield from walk(getattr(fn, f.name), f.name)


def read_weak_config(path: str | PathLike) -> WeakConfig:
    """Parse and check a weak-labelling config (keys, kinds, names, cross references); lexicons are read later."""
    path = Path(path)
    return load_yaml_config(path, WeakConfig, extra={"path": path})
