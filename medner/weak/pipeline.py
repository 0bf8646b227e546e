"""Weak-labelling config -> labelling functions -> aggregated weak records.

The config and its schema are in :mod:`medner.weak.config` (``configs/weak_labels/ccks2019.yaml`` is the worked example);
:class:`WeakPipeline` reads the lexicons it names and builds its labelling functions, in order. Every mistake
raises :class:`~medner.errors.ConfigError` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from medner.config import build_config
from medner.errors import ConfigError, MednerError
from medner.lexicon.build import build_lexicon, expand_path, read_config
from medner.lexicon.entry import LexiconEntry
from medner.lexicon.link import IcdLinker
from medner.lexicon.store import load_lexicon
from medner.types import Record
from medner.weak import rules
from medner.weak.aggregate import Outputs, apply_functions, make_aggregator
from medner.weak.base import LabellingFunction, LexiconLF
from medner.weak.config import (FUNCTION_KINDS, ExtentFunction, FunctionKind, FunctionSpec, ImagingFunction,
                                LabValueFunction, LexiconFunction, LymphNodeFunction, OperationFunction,
                                ProcedureFunction, TermRef, TumourSiteFunction, WeakConfig, read_weak_config)
from medner.weak.extent import ExtentLF

__all__ = ["WeakConfig", "WeakResult", "WeakPipeline", "read_weak_config", "FUNCTION_KINDS", "config_inputs"]

log = logging.getLogger(__name__)


def _err(path: Path, key: str, message: str, fix: str) -> ConfigError:
    return ConfigError(message, where=str(path), field=key, fix=fix)


def config_inputs(config: WeakConfig) -> list[Path]:
    """Every file ``config`` may read: the config, each lexicon's ``path``, and its ``build:`` config with that
    config's sources (an output must replace none of them)."""
    base = config.path.resolve().parent
    paths = [config.path]
    for name, spec in config.lexicons.items():
        paths.append(expand_path(spec.path, base, f"lexicons.{name}.path", config.path))
        if spec.build:
            build = expand_path(spec.build, base, f"lexicons.{name}.build", config.path)
            paths.append(build)
            try:
                paths.extend(source.path for source in read_config(build).sources)
            except (ConfigError, OSError):  # unreadable: building it fails later, before anything is written
                log.debug("cannot read the sources of %s", build, exc_info=True)
    return paths


@dataclass
class WeakResult:
    """Weak records (spans = aggregated weak spans), the per-LF outputs behind them, and the fitted model."""

    records: list[Record]
    outputs: list[Outputs]
    aggregator: Any


class WeakPipeline:
    """Lexicons and labelling functions of a :class:`WeakConfig`, ready to label records.

    ``functions`` (optional) replaces the config's ``functions`` list: function specs, or mappings in the config's
    schema (checked as the config's own, against its labels and lexicons), e.g. for a baseline; ``lexicons``
    (optional) gives already loaded lexicons by name (``other.lexicons``), so two pipelines over the same files
    read them once.
    """

    def __init__(self, config: WeakConfig, functions: Sequence[FunctionSpec | Mapping[str, Any]] | None = None,
                 lexicons: Mapping[str, tuple[LexiconEntry, ...]] | None = None) -> None:
        self.config = config
        self._lexicons: dict[str, tuple[LexiconEntry, ...]] = dict(lexicons or {})
        specs = config.functions if functions is None else self._check(functions)
        self.functions: list[LabellingFunction] = []
        for i, spec in enumerate(specs):  # in order: a composite (kind extent) uses the functions above it
            self.functions.append(self._build(spec, i))
        self.weights = {spec.name: spec.weight for spec in specs}
        self._linker: IcdLinker | None = None

    def _check(self, functions: Sequence[FunctionSpec | Mapping[str, Any]]) -> tuple[FunctionSpec, ...]:
        """Replacement functions, validated like the config's own list."""
        specs = tuple(spec if isinstance(spec, FunctionSpec) else
                      build_config(FunctionKind, dict(spec), self.config.path, key=f"functions[{i}]")
                      for i, spec in enumerate(functions))
        try:
            dataclasses.replace(self.config, functions=specs)  # the config's cross-field checks
        except ConfigError as exc:
            raise ConfigError(exc.message, where=exc.where or str(self.config.path), field=exc.field,
                              fix=exc.fix) from None
        return specs

    @property
    def linker(self) -> IcdLinker | None:
        """The ICD linker of the config's ``link:`` (built on first use), or None without ``link:``."""
        spec = self.config.link
        if spec is None:
            return None
        if self._linker is None:
            kwargs: dict[str, Any] = {}
            if spec.labels:
                kwargs["labels"] = spec.labels
            if spec.label_map:
                kwargs["label_map"] = dict(spec.label_map)
            if spec.min_score is not None:
                kwargs["min_score"] = spec.min_score
            try:
                self._linker = IcdLinker(self.lexicon(spec.lexicon), **kwargs)
            except (TypeError, ValueError) as exc:
                raise _err(self.config.path, "link", f"cannot build the ICD linker: {exc}",
                           "check `link:` (labels, label_map, min_score in (0, 1])") from None
        return self._linker

    @classmethod
    def from_config(cls, path: str | PathLike,
                    functions: Sequence[FunctionSpec | Mapping[str, Any]] | None = None) -> "WeakPipeline":
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
        path = expand_path(spec.path, base, f"lexicons.{name}.path", cfg.path)
        if path.exists():
            entries = load_lexicon(path).entries
        elif spec.build:
            build = expand_path(spec.build, base, f"lexicons.{name}.build", cfg.path)
            log.warning("%s not found: building lexicon %s in memory from %s (write it once with "
                        "`medner lexicon build %s -o %s` to save the time)", path, name, build, build, path)
            entries = tuple(build_lexicon(build).entries)
        else:
            raise _err(cfg.path, f"lexicons.{name}.path", f"lexicon file not found: {path}",
                       "fix the path, or add `build:` with the lexicon config that makes it")
        self._lexicons[name] = tuple(entries)
        return self._lexicons[name]

    def terms(self, ref: str | TermRef | Sequence[str | TermRef], key: str) -> list[str]:
        """The terms of a term list (a term, a lexicon reference, or a sequence of both)."""
        if isinstance(ref, str):
            return [ref]
        if isinstance(ref, TermRef):
            entries = self.lexicon(ref.lexicon)
            terms = [e.term for e in entries if ref.labels is None or e.label in ref.labels]
            if not terms:
                raise _err(self.config.path, key, f"lexicon {ref.lexicon!r} has no terms with labels "
                           f"{list(ref.labels or ())}", "check the lexicon name and labels")
            return terms
        out: list[str] = []
        for i, item in enumerate(ref):
            out.extend(self.terms(item, f"{key}[{i}]"))
        return out

    def _optional_terms(self, ref: Any, key: str) -> list[str]:
        """:meth:`terms` of an optional term list; null or empty: none."""
        return self.terms(ref, key) if ref else []

    # ------------------------------------------------------------------------------------ functions
    def _earlier(self, names: Sequence[str]) -> list[LabellingFunction]:
        """The functions built so far with these names (a composite LF's inputs; the config checked them)."""
        built = {lf.name: lf for lf in self.functions}
        return [built[n] for n in names]

    def _check_selection(self, spec: LexiconFunction, entries: Sequence[LexiconEntry], key: str) -> None:
        """Warn of `sources` or `label_map` keys the lexicon does not have: a typo selects nothing, silently.
        A warning, not an error: a source marked `optional` in the lexicon config may be absent on this machine."""
        have_sources = {e.source for e in entries}
        for source in sorted(set(spec.sources or ()) - have_sources):
            log.warning("%s: %s.sources: lexicon %r has no source %r (its sources: %s); a typo, or an optional source "
                        "missing here?", self.config.path, key, spec.lexicon, source, ", ".join(sorted(have_sources)))
        have_labels = {e.label for e in entries if spec.sources is None or e.source in spec.sources}
        for label in sorted(set(spec.label_map) - have_labels):
            log.warning("%s: %s.label_map: lexicon %r has no entries labelled %r%s (its labels: %s)", self.config.path,
                        key, spec.lexicon, label, " in the sources chosen" if spec.sources else "",
                        ", ".join(sorted(have_labels)))

    def _build(self, spec: FunctionSpec, index: int) -> LabellingFunction:
        key = f"functions[{index}]"
        name = spec.name
        path = self.config.path
        try:
            if isinstance(spec, LexiconFunction):
                entries = self.lexicon(spec.lexicon)
                self._check_selection(spec, entries, key)
                lf: LabellingFunction = LexiconLF(
                    name, entries, label_map=dict(spec.label_map), sources=spec.sources,
                    block=self._optional_terms(spec.block, f"{key}.block"), block_matching=spec.block_matching,
                    include_aliases=spec.include_aliases,
                    prefixes=tuple(rules.LATERALITY) if spec.prefixes == "laterality" else spec.prefixes,
                    suffixes=spec.suffixes, min_length=spec.min_length, label_priority=spec.label_priority,
                    word_boundary=spec.word_boundary, not_before=spec.not_before)
            elif isinstance(spec, ImagingFunction):
                side = {} if spec.laterality is None else {
                    "laterality": tuple(self._optional_terms(spec.laterality, f"{key}.laterality"))}
                lf = rules.imaging_lf(name, spec.label, self.terms(spec.modalities, f"{key}.modalities"),
                                      self._optional_terms(spec.regions, f"{key}.regions"),
                                      exams=self._optional_terms(spec.exams, f"{key}.exams"), **side)
            elif isinstance(spec, LabValueFunction):
                lf = rules.lab_value_lf(name, spec.label, self._optional_terms(spec.tests, f"{key}.tests"),
                                        generic=spec.generic)
            elif isinstance(spec, LymphNodeFunction):
                lf = rules.lymph_node_lf(name, spec.label, self._optional_terms(spec.sites, f"{key}.sites"))
            elif isinstance(spec, ProcedureFunction):
                lf = rules.procedure_lf(name, spec.label, **({"triggers": spec.triggers} if spec.triggers else {}))
            elif isinstance(spec, OperationFunction):
                lf = rules.operation_lf(name, spec.label, self.terms(spec.sites, f"{key}.sites"))
            elif isinstance(spec, TumourSiteFunction):
                heads = self._optional_terms(spec.heads, f"{key}.heads")
                lf = rules.tumour_site_lf(name, spec.label, self.terms(spec.sites, f"{key}.sites"),
                                          **({"heads": tuple(heads)} if heads else {}))
            elif isinstance(spec, ExtentFunction):
                sides = {side: getattr(spec, side) or "" for side in ("left", "right")
                         if getattr(spec, side) is not None}
                lf = ExtentLF(name, spec.label, self._earlier(spec.base), sites=self._earlier(spec.sites),
                              **({"joiners": spec.joiners} if spec.joiners is not None else {}),
                              from_labels=spec.from_labels or None, **sides)
            else:  # pragma: no cover - the config's schema knows every kind
                raise AssertionError(type(spec).__name__)
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
        """The config's aggregator, or ``method``, with the config's options for that method plus ``options``;
        majority ``weights`` (of the config or ``options``) are merged over each function's own ``weight``."""
        method = method or self.config.aggregator.method
        cfg = self.config.aggregator.options(method)
        cfg.update(options)
        if method == "majority":  # the weights given override the functions' own, one by one
            cfg["weights"] = {**self.weights, **(cfg.get("weights") or {})}
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
