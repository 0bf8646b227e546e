"""Weak-labelling config -> labelling functions -> aggregated weak records.

Config (``configs/weak_ccks2019.yaml`` is the worked example)::

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

Paths: ``${VAR}`` / ``${VAR:-default}`` from the environment, then relative paths against the config's
directory (the convention of ``configs/lexicon_zh.yaml``). A term list is a YAML list whose items are
strings or references ``{lexicon: NAME, labels: [...]}`` (the terms of that lexicon, optionally only those
labels), or one reference. Lexicon functions also take ``not_before`` (a regex; see
:class:`~medner.weak.base.LexiconLF`), ``word_boundary`` and ``label_priority``; every function takes
``weight`` (its vote in majority voting, default 1).
Every mistake raises :class:`~medner.errors.ConfigError` naming the file and the key.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from medner.config import read_yaml
from medner.errors import ConfigError, MednerError
from medner.lexicon.build import build_lexicon, expand_path
from medner.lexicon.entry import LexiconEntry
from medner.lexicon.link import IcdLinker
from medner.lexicon.store import load_lexicon
from medner.types import Record
from medner.weak import rules
from medner.weak.aggregate import AGGREGATORS, Outputs, apply_functions, make_aggregator
from medner.weak.base import LabellingFunction, LexiconLF
from medner.weak.extent import ExtentLF

__all__ = ["WeakConfig", "WeakResult", "WeakPipeline", "read_weak_config", "FUNCTION_KINDS"]

log = logging.getLogger(__name__)

_TOP_KEYS = {"version", "description", "labels", "lexicons", "functions", "aggregator", "link"}
_LINK_KEYS = {"lexicon", "labels", "label_map", "min_score"}
_LEXICON_KEYS = {"path", "build"}
_COMMON = {"name", "kind", "weight"}
FUNCTION_KINDS: dict[str, set[str]] = {
    "lexicon": {"lexicon", "sources", "label_map", "include_aliases", "prefixes", "suffixes", "block",
                "block_matching", "min_length", "word_boundary", "label_priority", "not_before"},
    "imaging": {"label", "modalities", "exams", "regions", "laterality"},
    "lab_value": {"label", "tests", "generic"},
    "lymph_node": {"label", "sites"},
    "procedure": {"label", "triggers"},
    "operation": {"label", "sites"},
    "tumour_site": {"label", "sites", "heads"},
    "extent": {"label", "base", "sites", "joiners", "left", "right", "from_labels"},
}
_AGG_KEYS = {"majority": {"weights", "min_votes", "nested", "nested_other"},
             "dawid_skene": {"min_confidence", "max_iter", "tol", "smoothing", "prior_strength"}}


@dataclass(frozen=True)
class WeakConfig:
    """A validated weak-labelling config; ``functions`` and ``aggregator`` stay as (checked) mappings."""

    path: Path
    version: str
    labels: tuple[str, ...]
    lexicons: Mapping[str, Mapping[str, Any]]
    functions: tuple[Mapping[str, Any], ...]
    aggregator: Mapping[str, Any] = field(default_factory=lambda: {"method": "dawid_skene"})
    description: str = ""
    link: Mapping[str, Any] | None = None


def _err(path: Path, key: str, message: str, fix: str) -> ConfigError:
    return ConfigError(message, where=str(path), field=key, fix=fix)


def read_weak_config(path: str | PathLike) -> WeakConfig:
    """Parse and check a weak-labelling config (keys, kinds, names); lexicon files are read later."""
    path = Path(path)
    tree = read_yaml(path)
    if not isinstance(tree, dict):
        raise ConfigError("expected a mapping with `functions:`", where=str(path), fix="see configs/weak_ccks2019.yaml")
    unknown = sorted(set(tree) - _TOP_KEYS)
    if unknown:
        raise _err(path, unknown[0], f"unknown key(s) {unknown}; valid: {sorted(_TOP_KEYS)}",
                   "remove or rename the key")
    labels = tree.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise _err(path, "labels", "expected a non-empty list of label names", "list the corpus labels")
    lexicons = tree.get("lexicons") or {}
    if not isinstance(lexicons, dict):
        raise _err(path, "lexicons", "expected a mapping of name -> {path: ...}", "see configs/weak_ccks2019.yaml")
    for name, spec in lexicons.items():
        if not isinstance(spec, dict) or not spec.get("path"):
            raise _err(path, f"lexicons.{name}.path", "missing", "give the lexicon file as `path:`")
        extra = sorted(set(spec) - _LEXICON_KEYS)
        if extra:
            raise _err(path, f"lexicons.{name}.{extra[0]}", f"unknown key(s) {extra}; valid: {sorted(_LEXICON_KEYS)}",
                       "remove or rename the key")
    functions = tree.get("functions")
    if not isinstance(functions, list) or not functions:
        raise _err(path, "functions", "expected a non-empty list", "list the labelling functions")
    names: set[str] = set()
    for i, fn in enumerate(functions):
        key = f"functions[{i}]"
        if not isinstance(fn, dict):
            raise _err(path, key, "expected a mapping", "give name, kind and the kind's keys")
        for required in ("name", "kind"):
            if not fn.get(required):
                raise _err(path, f"{key}.{required}", "missing", f"add `{required}:`")
        kind = fn["kind"]
        if kind not in FUNCTION_KINDS:
            raise _err(path, f"{key}.kind", f"unknown kind {kind!r}; valid: {sorted(FUNCTION_KINDS)}",
                       "use one of the valid kinds")
        allowed = _COMMON | FUNCTION_KINDS[kind]
        extra = sorted(set(fn) - allowed)
        if extra:
            raise _err(path, f"{key}.{extra[0]}", f"unknown key(s) {extra} for kind {kind}; valid: {sorted(allowed)}",
                       "remove or rename the key")
        if fn["name"] in names or str(fn["name"]).startswith("weak:"):
            raise _err(path, f"{key}.name", f"name {fn['name']!r} is duplicated or starts with 'weak:'",
                       "give each function a unique name")
        names.add(fn["name"])
        if kind == "lexicon" and fn.get("lexicon") not in lexicons:
            raise _err(path, f"{key}.lexicon", f"{fn.get('lexicon')!r} is not a lexicon of `lexicons:` "
                       f"({sorted(lexicons)})", "name one of the lexicons")
        if kind != "lexicon" and fn.get("label") not in labels:
            raise _err(path, f"{key}.label", f"{fn.get('label')!r} is not one of `labels` {labels}",
                       "set `label:` to one of the corpus labels")
        if kind == "lexicon":
            label_map = fn.get("label_map")
            if not isinstance(label_map, dict) or not label_map:
                raise _err(path, f"{key}.label_map", "expected a mapping lexicon label -> corpus label",
                           "write e.g. `label_map: {anatomy: 解剖部位}`")
            bad = [v for v in label_map.values() if v is not None and v not in labels]
            if bad:
                raise _err(path, f"{key}.label_map", f"{bad[0]!r} is not one of `labels` {labels}",
                           "map lexicon labels to corpus labels (or null to drop them)")
    aggregator = tree.get("aggregator") or {"method": "dawid_skene"}
    if not isinstance(aggregator, dict) or aggregator.get("method") not in AGGREGATORS:
        raise _err(path, "aggregator.method", f"expected one of {list(AGGREGATORS)}, got "
                   f"{aggregator.get('method') if isinstance(aggregator, dict) else aggregator!r}",
                   "set `aggregator: {method: majority}` or dawid_skene")
    extra = sorted(set(aggregator) - {"method", *AGGREGATORS})
    if extra:
        raise _err(path, f"aggregator.{extra[0]}", f"unknown key(s) {extra}; valid: method, "
                   f"{', '.join(AGGREGATORS)} (options of each method)", "put options under the method's name")
    for name in AGGREGATORS:
        options = aggregator.get(name) or {}
        if not isinstance(options, dict):
            raise _err(path, f"aggregator.{name}", "expected a mapping of options", "write e.g. `majority: {}`")
        extra = sorted(set(options) - _AGG_KEYS[name])
        if extra:
            raise _err(path, f"aggregator.{name}.{extra[0]}", f"unknown key(s) {extra}; valid: "
                       f"{sorted(_AGG_KEYS[name])}", "remove or rename the key")
    link = tree.get("link")
    if link is not None:
        if not isinstance(link, dict) or link.get("lexicon") not in lexicons:
            raise _err(path, "link.lexicon", "expected `link: {lexicon: NAME, labels: [...]}` naming a lexicon of "
                       f"`lexicons:` ({sorted(lexicons)})", "name the ICD lexicon, or remove `link:`")
        extra = sorted(set(link) - _LINK_KEYS)
        if extra:
            raise _err(path, f"link.{extra[0]}", f"unknown key(s) {extra}; valid: {sorted(_LINK_KEYS)}",
                       "remove or rename the key")
        bad = [x for x in link.get("labels", []) if x not in labels]
        if bad:
            raise _err(path, "link.labels", f"{bad[0]!r} is not one of `labels` {labels}", "list corpus labels")
    return WeakConfig(path=path, version=str(tree.get("version", "0")), labels=tuple(labels), lexicons=lexicons,
                      functions=tuple(functions), aggregator=aggregator, description=str(tree.get("description", "")),
                      link=link)


@dataclass
class WeakResult:
    """Weak records (spans = aggregated weak spans), the per-LF outputs behind them, and the fitted model."""

    records: list[Record]
    outputs: list[Outputs]
    aggregator: Any


class WeakPipeline:
    """Lexicons and labelling functions of a :class:`WeakConfig`, ready to label records.

    ``functions`` (optional) replaces the config's ``functions`` list (same schema), e.g. for a baseline;
    ``lexicons`` (optional) gives already loaded lexicons by name (``other.lexicons``), so two pipelines
    over the same files read them once.
    """

    def __init__(self, config: WeakConfig, functions: Sequence[Mapping[str, Any]] | None = None,
                 lexicons: Mapping[str, tuple[LexiconEntry, ...]] | None = None) -> None:
        self.config = config
        self._lexicons: dict[str, tuple[LexiconEntry, ...]] = dict(lexicons or {})
        specs = tuple(functions) if functions is not None else config.functions
        self.functions: list[LabellingFunction] = []
        for i, spec in enumerate(specs):  # in order: a composite (kind extent) uses the functions above it
            self.functions.append(self._build(spec, i))
        self.weights = {spec["name"]: float(spec.get("weight", 1.0)) for spec in specs}
        self._linker: IcdLinker | None = None

    @property
    def linker(self) -> IcdLinker | None:
        """The ICD linker of the config's ``link:`` (built on first use), or None without ``link:``."""
        spec = self.config.link
        if spec is None:
            return None
        if self._linker is None:
            kwargs: dict[str, Any] = {}
            if spec.get("labels"):
                kwargs["labels"] = tuple(spec["labels"])
            if spec.get("label_map"):
                kwargs["label_map"] = dict(spec["label_map"])
            if spec.get("min_score") is not None:
                kwargs["min_score"] = float(spec["min_score"])
            try:
                self._linker = IcdLinker(self.lexicon(str(spec["lexicon"])), **kwargs)
            except (TypeError, ValueError) as exc:
                raise _err(self.config.path, "link", f"cannot build the ICD linker: {exc}",
                           "check `link:` (labels, label_map, min_score in (0, 1])") from None
        return self._linker

    @classmethod
    def from_config(cls, path: str | PathLike, functions: Sequence[Mapping[str, Any]] | None = None) -> "WeakPipeline":
        return cls(read_weak_config(path), functions)

    # ------------------------------------------------------------------------------------- lexicons
    @property
    def lexicons(self) -> dict[str, tuple[LexiconEntry, ...]]:
        """The lexicons loaded so far, by name."""
        return dict(self._lexicons)

    def lexicon(self, name: str) -> tuple[LexiconEntry, ...]:
        """Entries of the named lexicon (read once; built in memory from ``build`` when the file is missing)."""
        if name in self._lexicons:
            return self._lexicons[name]
        cfg = self.config
        spec = cfg.lexicons.get(name)
        if spec is None:
            raise _err(cfg.path, "lexicons", f"no lexicon named {name!r} (have {sorted(cfg.lexicons)})",
                       "add it under `lexicons:`")
        base = cfg.path.resolve().parent
        path = expand_path(str(spec["path"]), base, f"lexicons.{name}.path", cfg.path)
        if path.exists():
            entries = load_lexicon(path).entries
        elif spec.get("build"):
            build = expand_path(str(spec["build"]), base, f"lexicons.{name}.build", cfg.path)
            log.warning("%s not found: building lexicon %s in memory from %s (write it once with "
                        "`medner lexicon build %s -o %s` to save the time)", path, name, build, build, path)
            entries = tuple(build_lexicon(build).entries)
        else:
            raise _err(cfg.path, f"lexicons.{name}.path", f"lexicon file not found: {path}",
                       "fix the path, or add `build:` with the lexicon config that makes it")
        self._lexicons[name] = tuple(entries)
        return self._lexicons[name]

    def terms(self, ref: Any, key: str) -> list[str]:
        """A term list: a YAML list whose items are strings or references ``{lexicon: NAME, labels: [...]}``,
        or one such reference."""
        if isinstance(ref, list):
            out: list[str] = []
            for i, item in enumerate(ref):
                out.extend([item] if isinstance(item, str) else self.terms(item, f"{key}[{i}]"))
            return out
        if isinstance(ref, dict) and set(ref) <= {"lexicon", "labels"} and ref.get("lexicon"):
            labels = ref.get("labels")
            entries = self.lexicon(str(ref["lexicon"]))
            terms = [e.term for e in entries if labels is None or e.label in labels]
            if not terms:
                raise _err(self.config.path, key, f"lexicon {ref['lexicon']!r} has no terms with labels {labels}",
                           "check the lexicon name and labels")
            return terms
        raise _err(self.config.path, key, f"expected a term, a list, or {{lexicon: NAME, labels: [...]}}, got "
                   f"{type(ref).__name__}", "write a term list or a lexicon reference")

    # ------------------------------------------------------------------------------------ functions
    def _earlier(self, names: Any, key: str) -> list[LabellingFunction]:
        """The functions built so far whose names are listed in ``names`` (a composite LF's inputs)."""
        built = {lf.name: lf for lf in self.functions}
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _err(self.config.path, key, f"expected a list of function names, got {names!r}",
                       "list the names of functions defined above this one")
        missing = [n for n in names if n not in built]
        if missing:
            raise _err(self.config.path, key, f"{missing} are not functions defined above this one "
                       f"({sorted(built)})", "list functions that come earlier in `functions:`")
        return [built[n] for n in names]

    def _build(self, spec: Mapping[str, Any], index: int) -> LabellingFunction:
        key = f"functions[{index}]"
        name, kind = str(spec["name"]), spec["kind"]
        path = self.config.path
        try:
            if kind == "lexicon":
                prefixes = spec.get("prefixes", ())
                if prefixes == "laterality":
                    prefixes = rules.LATERALITY
                block = self.terms(spec["block"], f"{key}.block") if spec.get("block") else ()
                lf: LabellingFunction = LexiconLF(
                    name, self.lexicon(str(spec["lexicon"])), label_map=dict(spec["label_map"]),
                    sources=spec.get("sources"), block=block, block_matching=spec.get("block_matching"),
                    include_aliases=bool(spec.get("include_aliases", True)), prefixes=tuple(prefixes),
                    suffixes=tuple(spec.get("suffixes", ())), min_length=int(spec.get("min_length", 2)),
                    label_priority=tuple(spec.get("label_priority", ())),
                    word_boundary=bool(spec.get("word_boundary", True)), not_before=spec.get("not_before"))
            elif kind == "imaging":
                lf = rules.imaging_lf(name, spec["label"], self.terms(spec.get("modalities"), f"{key}.modalities"),
                                      self.terms(spec["regions"], f"{key}.regions") if spec.get("regions") else (),
                                      exams=self.terms(spec["exams"], f"{key}.exams") if spec.get("exams") else ())
            elif kind == "lab_value":
                lf = rules.lab_value_lf(name, spec["label"],
                                        self.terms(spec["tests"], f"{key}.tests") if spec.get("tests") else (),
                                        generic=bool(spec.get("generic", True)))
            elif kind == "lymph_node":
                lf = rules.lymph_node_lf(name, spec["label"],
                                         self.terms(spec["sites"], f"{key}.sites") if spec.get("sites") else ())
            elif kind == "procedure":
                triggers = spec.get("triggers")
                lf = rules.procedure_lf(name, spec["label"], **({"triggers": tuple(triggers)} if triggers else {}))
            elif kind == "operation":
                lf = rules.operation_lf(name, spec["label"], self.terms(spec.get("sites"), f"{key}.sites"))
            elif kind == "tumour_site":
                heads = spec.get("heads")
                lf = rules.tumour_site_lf(name, spec["label"], self.terms(spec.get("sites"), f"{key}.sites"),
                                          **({"heads": tuple(self.terms(heads, f"{key}.heads"))} if heads else {}))
            elif kind == "extent":
                joiners = spec.get("joiners")
                lf = ExtentLF(name, spec["label"], self._earlier(spec.get("base"), f"{key}.base"),
                              sites=self._earlier(spec.get("sites") or [], f"{key}.sites"),
                              **({"joiners": tuple(joiners)} if joiners is not None else {}),
                              from_labels=tuple(spec["from_labels"]) if spec.get("from_labels") else None,
                              **{side: str(spec[side] or "") for side in ("left", "right") if side in spec})
            else:  # pragma: no cover - read_weak_config checked the kind
                raise AssertionError(kind)
        except MednerError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise _err(path, key, f"cannot build labelling function {name!r}: {exc}",
                       "check the function's keys against the config documentation") from None
        emitted = set(getattr(lf, "labels", ()) or ())
        stray = sorted(emitted - set(self.config.labels))
        if stray:
            raise _err(path, key, f"labelling function {name!r} would emit {stray}, not in `labels`",
                       "fix its label_map or label")
        return lf

    # -------------------------------------------------------------------------------------- running
    def outputs(self, records: Iterable[Record]) -> list[Outputs]:
        """The spans of every labelling function on every record."""
        return [apply_functions(r, self.functions) for r in records]

    def make_aggregator(self, method: str | None = None, **options: Any):
        """The config's aggregator, or ``method``, with the config's options for that method plus ``options``."""
        method = method or self.config.aggregator["method"]
        cfg = dict(self.config.aggregator.get(method) or {})
        cfg.update(options)
        if method == "majority":
            cfg.setdefault("weights", self.weights)
        return make_aggregator(method, self.functions, **cfg)

    def label(self, records: Sequence[Record], method: str | None = None,
              outputs: Sequence[Outputs] | None = None, *, link: bool = True) -> WeakResult:
        """Run the LFs (unless ``outputs`` are given), fit the aggregator on these records (no gold is used)
        and return records whose spans are the weak spans; with the config's ``link:`` (and ``link=True``),
        weak spans of the linked labels that carry no code get one from the ICD linker."""
        records = list(records)
        outs = list(outputs) if outputs is not None else self.outputs(records)
        aggregator = self.make_aggregator(method)
        aggregator.fit(records, outs)
        predicted = aggregator.predict(records, outs)
        linker = self.linker if link else None
        if linker is not None:  # codes for spans no coded source proposed (rules, crawled lists)
            predicted = [linker.link_spans(r.text, spans) for r, spans in zip(records, predicted)]
        weak = [r.with_spans(spans) for r, spans in zip(records, predicted)]
        return WeakResult(records=weak, outputs=outs, aggregator=aggregator)
