"""Merge lexicon sources listed in a YAML config into one versioned lexicon TSV plus a JSON sidecar.

Config (``configs/lexicon_zh.yaml`` is the worked example)::

    version: zh-1                      # written into the file header
    label_priority: [疾病和诊断, 手术]   # copied to the sidecar for matchers
    sources:                           # in order of precedence
      - name: icd10_national           # unique; becomes the entries' `source`
        kind: icd10_xlsx               # icd10_xlsx | icd9cm3_xlsx | csv | po | list | tsv
        path: ${MEDNER_SHARED:-../../shared/data}/lexicons/.../icd10_national_clinical_v1.1.xlsx
        label: 疾病和诊断
        aliases: true                  # derive aliases (medner.lexicon.normalize)
        strict: false                  # true: the first bad row is an error; false: skip and count bad rows;
                                       # unset: as false, but a stray csv quote (it hides later rows) is an error
        exclude_codes: ^[RVWXYZ]       # optional regex: rows whose code it finds are skipped (counted)

The schema is :class:`LexiconConfig`; the keys a source takes are the fields of its kind's class
(:class:`Icd10XlsxSource`, :class:`CsvSource`, ... below), validated by :func:`medner.config.build_config`.

Paths: ``${VAR}`` and ``${VAR:-default}`` are replaced from the environment first (an unset ``${VAR}``
without a default is an error); a path that is still relative is resolved against the directory of the
config file. So ``${MEDNER_SHARED:-../../shared/data}`` in ``configs/`` means "``$MEDNER_SHARED`` when set,
else ``../shared/data`` next to the repository".

Merging: official names first, source by source in config order, keeping the first entry for each
(term, label) — later sources' entries for the same pair are counted as ``shadowed``; then aliases (fewest
rule steps first, then config order), kept only for a (term, label) not yet present, so an official name
always beats an alias -- except that an alias with a code replaces an official name without one (the
crawled list's ``直肠癌`` gives way to ``直肠癌`` derived from ``直肠恶性肿瘤``, code C20), counted as
``replaced_by_coded_alias`` for the list. Entries are written sorted and unique (:mod:`medner.lexicon.store`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Union

from medner.config import NOT_IN_FILE, load_yaml_config, yaml_key
from medner.errors import ConfigError, LexiconError
from medner.files import atomic_write_text, refuse_output_over_input
from medner.lexicon.entry import LexiconEntry, LoadResult
from medner.lexicon.loaders import LOADERS
from medner.lexicon.normalize import RULE_NAMES, aliases
from medner.lexicon.store import FORMAT_VERSION, fingerprint_of, render, write_lexicon

__all__ = ["SourceSpec", "SourceKind", "Icd10XlsxSource", "Icd9cm3XlsxSource", "CsvSource", "PoSource", "ListSource",
           "TsvSource", "LexiconConfig", "BuildResult", "read_config", "load_source", "merge", "build_lexicon",
           "expand_path", "sidecar_path"]

log = logging.getLogger(__name__)

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
#: SourceSpec fields that are not loader options
_NOT_OPTIONS = frozenset({"name", "kind", "path", "path_as_written", "label", "strict", "aliases", "alias_rules",
                          "optional"})


@dataclass(frozen=True)
class SourceSpec:
    """One source entry of the config; each kind is a subclass with a ``kind`` field and the keys of its loader.

    :attr:`options` are passed to the loader; options left null take the loader's default
    (:mod:`medner.lexicon.loaders`).
    """

    name: str  # unique; becomes the entries' `source`
    path_as_written: str = field(metadata=yaml_key("path"))  # YAML `path`, as written (${VAR} not yet replaced)
    label: str | None = None  # label of every entry (project TSVs carry their own)
    strict: bool | None = None  # true: the first bad row is an error; false: bad rows are skipped and counted;
    #   unset: as false, but a row that may hide the rows after it (a stray quote in a csv) is an error
    aliases: bool = False  # derive aliases (medner.lexicon.normalize)
    alias_rules: tuple[str, ...] | None = None  # only these alias rules; null = all
    optional: bool = False  # a missing file is skipped with a warning
    encoding: str | None = None
    code_system: str | None = None  # icd10 | icd9cm3 | none
    code_pattern: str | None = None  # regex a valid code matches
    path: Path = field(default=Path(), metadata=NOT_IN_FILE)  # resolved by read_config

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[\w.\-]+", self.name):
            raise ConfigError(f"name {self.name!r} holds characters other than letters, digits . - _", field="name",
                              fix="give each source a simple name")
        if not self.path_as_written:
            raise ConfigError("empty path", field="path", fix="name the source's file in `path:`")
        bad = sorted(set(self.alias_rules or ()) - set(RULE_NAMES))
        if bad:
            raise ConfigError(f"unknown alias rule(s) {bad}; valid: {list(RULE_NAMES)}", field="alias_rules",
                              fix="list valid rule names")

    @property
    def options(self) -> dict[str, Any]:
        """The loader's keyword arguments: the kind's own keys (and encoding, code_system, code_pattern) set."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in _NOT_OPTIONS and getattr(self, f.name) is not None}


def _require_label(spec: SourceSpec) -> None:
    if not spec.label:
        raise ConfigError(f"a {getattr(spec, 'kind', '')} source needs a label: its rows carry none", field="label",
                          fix="add `label:` (e.g. 疾病和诊断) to this source")


@dataclass(frozen=True)
class Icd10XlsxSource(SourceSpec):
    """国家临床版 ICD-10 workbook (sheet 全部: 主要编码, 附加编码, 疾病名称)."""

    kind: Literal["icd10_xlsx"] = "icd10_xlsx"
    sheet: str | None = None
    columns: dict[str, str | list[str] | None] | None = None  # name, code, extra_code?: header names
    category_labels: dict[str, str | None] | None = None
    exclude_codes: str | None = None  # regex: rows whose code it finds are skipped (counted)


@dataclass(frozen=True)
class Icd9cm3XlsxSource(SourceSpec):
    """国家临床版 ICD-9-CM-3 workbook (sheet 所有条目: 主要编码, 附加编码, 手术名称, 类别)."""

    kind: Literal["icd9cm3_xlsx"] = "icd9cm3_xlsx"
    sheet: str | None = None
    columns: dict[str, str | list[str] | None] | None = None
    category_labels: dict[str, str | None] | None = None  # 类别 -> label (null: skip the row); a category not
    #   listed keeps `label` (warned), an empty one (a merged cell) is a bad row
    exclude_codes: str | None = None


@dataclass(frozen=True)
class CsvSource(SourceSpec):
    """Delimited file with a header naming a code and a name column."""

    kind: Literal["csv"] = "csv"
    delimiter: str | None = None  # null: sniffed among , TAB ; |
    columns: dict[str, str | list[str] | None] | None = None
    code_format: Literal["dotted", "given"] | None = None  # given (default): codes as written; dotted: A000 -> A00.0
    exclude_codes: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_label(self)


@dataclass(frozen=True)
class PoSource(SourceSpec):
    """gettext catalogue (GNU Health): code from msgctxt, name = msgstr."""

    kind: Literal["po"] = "po"
    context: str | None = None  # regex on msgctxt with a `code` group
    code_format: Literal["dotted", "given"] | None = None  # dotted: J155 -> J15.5
    exclude_codes: str | None = None


@dataclass(frozen=True)
class ListSource(SourceSpec):
    """One term a line."""

    kind: Literal["list"] = "list"

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_label(self)


@dataclass(frozen=True)
class TsvSource(SourceSpec):
    """The project's lexicon TSV (medner.lexicon.store)."""

    kind: Literal["tsv"] = "tsv"
    exclude_codes: str | None = None


#: a source entry: the kind picks the class (and so the keys it takes)
SourceKind = Union[Icd10XlsxSource, Icd9cm3XlsxSource, CsvSource, PoSource, ListSource, TsvSource]


@dataclass(frozen=True)
class LexiconConfig:
    """A validated lexicon build config; ``path`` is the config file (not a key of it)."""

    path: Path = field(metadata=NOT_IN_FILE)
    version: str = "0"  # written into the lexicon's header
    sources: tuple[SourceKind, ...] = ()  # in order of precedence
    label_priority: tuple[str, ...] = ()  # copied to the sidecar for matchers
    description: str = ""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("expected a non-empty list", field="sources",
                              fix="list the sources, each with name, kind, path")
        seen: set[str] = set()
        for i, spec in enumerate(self.sources):
            if spec.name in seen:
                raise ConfigError(f"name {spec.name!r} is duplicated", field=f"sources[{i}].name",
                                  fix="give each source a unique name")
            seen.add(spec.name)
        if not re.fullmatch(r"[\w.\-+]+", self.version):
            raise ConfigError(f"version {self.version!r} may only hold letters, digits and . - + _", field="version",
                              fix="write a simple version such as zh-1")


@dataclass
class BuildResult:
    entries: list[LexiconEntry]
    fingerprint: str
    sidecar: dict[str, Any]
    path: Path | None = None


def expand_path(value: str, base: Path, key: str, config: Path) -> Path:
    """Replace ``${VAR}`` / ``${VAR:-default}``, then resolve a relative path against ``base``."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        if name in os.environ and os.environ[name] != "":
            return os.environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set", where=str(config), field=key,
                              fix=f"export {name}=... or write ${{{name}:-default}}")
        return default

    expanded = os.path.expanduser(_VAR.sub(repl, value))
    path = Path(expanded)
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def read_config(path: str | PathLike) -> LexiconConfig:
    """Parse and validate a lexicon build config; every error names the file and the key. Source paths are
    resolved (``${VAR}``, then relative to the config's folder); whether the files exist is checked at build."""
    path = Path(path)
    config = load_yaml_config(path, LexiconConfig, extra={"path": path})
    base = path.resolve().parent
    return dataclasses.replace(config, sources=tuple(
        dataclasses.replace(spec, path=expand_path(spec.path_as_written, base, f"sources[{i}].path", path))
        for i, spec in enumerate(config.sources)))


def load_source(spec: SourceSpec, *, strict: bool | None = None) -> LoadResult:
    """Run the loader for ``spec`` (``strict`` overrides the spec's own setting when given); a source without
    ``label`` gets its loader's default (疾病和诊断 for ICD-10 files, 手术 for ICD-9-CM-3)."""
    loader = LOADERS[spec.kind]
    label = {} if spec.label is None else {"label": spec.label}
    return loader(spec.path, source=spec.name, strict=spec.strict if strict is None else strict, **label,
                  **dict(spec.options))


def merge(config: LexiconConfig, results: Mapping[str, LoadResult]) -> tuple[list[LexiconEntry], dict[str, Any]]:
    """Merge loaded sources (see the module docstring); returns entries and per-source merge counts."""
    kept: dict[tuple[str, str], LexiconEntry] = {}
    stats: dict[str, dict[str, Any]] = {}
    for spec in config.sources:
        if spec.name not in results:
            continue
        shadowed = 0
        for entry in results[spec.name].entries:
            key = (entry.term, entry.label)
            if key in kept:
                shadowed += 1
            else:
                kept[key] = entry
        stats[spec.name] = {"shadowed": shadowed}
    known_terms = {term for term, _ in kept}
    candidates: list[tuple[int, int, int, str, LexiconEntry]] = []
    order = 0
    for s_index, spec in enumerate(config.sources):
        if not spec.aliases or spec.name not in results:
            continue
        for entry in results[spec.name].entries:
            for alias in aliases(entry.term, known_terms, spec.alias_rules):
                depth = alias.rule.count("+") + 1
                candidates.append((depth, s_index, order, alias.rule,
                                   LexiconEntry(alias.term, entry.label, entry.code, entry.canonical, entry.source)))
                order += 1
    candidates.sort(key=lambda c: c[:3])
    added: dict[str, Counter] = {spec.name: Counter() for spec in config.sources if spec.aliases}
    dropped: Counter = Counter()
    replaced: Counter = Counter()
    for _, _, _, rule, entry in candidates:
        key = (entry.term, entry.label)
        held = kept.get(key)
        if held is not None and not (held.code is None and entry.code is not None and not held.is_alias):
            dropped[entry.source] += 1
            continue
        if held is not None:  # a coded alias replaces an uncoded name (直肠癌 from a plain list)
            replaced[held.source] += 1
        kept[key] = entry
        added[entry.source][rule] += 1
    final = Counter((e.source, e.is_alias) for e in kept.values())
    for name, item in stats.items():
        item["official_in_lexicon"] = final[(name, False)]
        if replaced[name]:
            item["replaced_by_coded_alias"] = replaced[name]
        if name in added:
            item["aliases_added"] = sum(added[name].values())
            item["aliases_by_rule"] = dict(sorted(added[name].items()))
            item["aliases_not_added"] = dropped[name]
    return list(kept.values()), stats


def _refuse_output_over_inputs(out: Path, config: LexiconConfig) -> None:
    """Refuse an output (or its sidecar) that is the config or one of its sources, or a lexicon with a sidecar's
    name: each would be replaced by what is built from it."""
    if out.suffix == ".json":
        raise ConfigError(f"{out} is the name of the JSON sidecar of {out.with_suffix('.tsv').name}: a lexicon there "
                          "would replace that sidecar or be taken for it", field="-o",
                          fix="name the lexicon FILE.tsv (its sidecar is FILE.json)")
    inputs = [config.path, *(spec.path for spec in config.sources)]
    for path, option in ((out, "-o"), (sidecar_path(out), "-o (its sidecar)")):
        refuse_output_over_input(path, inputs, option=option)


def _why_empty(result: LoadResult) -> str:
    """What a load that kept no entry saw: its rows and the kinds of rows refused or skipped."""
    report = result.report
    refused = Counter(bad.kind for bad in report.bad)
    parts = [f"{report.rows} rows"] + [f"{n} {kind}" for kind, n in refused.most_common()]
    parts += [f"{n} skipped ({reason})" for reason, n in report.skipped.most_common()]
    return ", ".join(parts)


def sidecar_path(out: str | PathLike) -> Path:
    """The JSON sidecar of a lexicon file: ``lexicon_zh.tsv`` -> ``lexicon_zh.json``; any other name gets ``.json``
    added (``lexicon.v1`` -> ``lexicon.v1.json``), so lexicons that differ after the last dot keep their own.
    Every reader and writer of a sidecar uses this."""
    out = Path(out)
    return out.with_suffix(".json") if out.suffix == ".tsv" else out.with_name(out.name + ".json")


def build_lexicon(config_path: str | PathLike, out: str | PathLike | None = None, *,
                  strict: bool | None = None) -> BuildResult:
    """Load every source, merge, and (when ``out`` is given) write ``out`` and its sidecar (:func:`sidecar_path`).

    Raises :class:`ConfigError` for config mistakes and missing non-optional files,
    :class:`LexiconError` for unreadable sources or (strict) bad rows.
    """
    config = read_config(config_path)
    if out is not None:
        _refuse_output_over_inputs(Path(out), config)
    results: dict[str, LoadResult] = {}
    missing: list[str] = []
    for i, spec in enumerate(config.sources):
        if not spec.path.exists():
            if spec.optional:
                log.warning("%s: source %s skipped: %s not found (optional)", config.path, spec.name, spec.path)
                missing.append(spec.name)
                continue
            raise ConfigError(f"file not found: {spec.path}", where=str(config.path), field=f"sources[{i}].path",
                              fix="fix the path, set MEDNER_SHARED to the shared data folder, or mark the "
                                  "source `optional: true`")
        results[spec.name] = load_source(spec, strict=strict)
        if not results[spec.name].entries:
            raise LexiconError(f"source {spec.name!r} gave no entries ({_why_empty(results[spec.name])})",
                               where=str(spec.path), field=f"sources[{i}]",
                               fix="check its kind, label, columns and encoding (`-vv` lists the rows refused), or "
                                   "remove it from the config")
    entries, stats = merge(config, results)
    body, n = render(entries)
    fp = fingerprint_of(body)
    by_label = Counter(e.label for e in entries)
    sidecar: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "version": config.version,
        "fingerprint": fp,
        "entries": n,
        "aliases": sum(1 for e in entries if e.is_alias),
        "by_label": dict(sorted(by_label.items())),
        "label_priority": list(config.label_priority),
        "config": config.path.name,
        "sources": [],
    }
    for spec in config.sources:
        item: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "path": spec.path_as_written,
                                "label": spec.label}
        if spec.name in missing:
            item["missing"] = True
        else:
            item.update(results[spec.name].report.to_dict())
            item.update(stats.get(spec.name, {}))
        sidecar["sources"].append(item)
    out_path = None
    if out is not None:
        out_path = Path(out)
        written = write_lexicon(entries, out_path, version=config.version)
        if written != fp:  # pragma: no cover - render() is deterministic
            raise LexiconError("fingerprint changed while writing", where=str(out_path))
        side = sidecar_path(out_path)
        atomic_write_text(side, json.dumps(sidecar, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
        log.info("wrote %s (%d entries, %s) and %s", out_path, n, fp[:19], side.name)
    return BuildResult(entries=entries, fingerprint=fp, sidecar=sidecar, path=out_path)
