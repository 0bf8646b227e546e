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
        strict: false                  # true: the first bad row is an error
        exclude_codes: ^[RVWXYZ]       # optional regex: rows whose code it finds are skipped (counted)

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

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from medner.config import read_yaml
from medner.errors import ConfigError, LexiconError
from medner.lexicon.entry import LexiconEntry, LoadResult
from medner.lexicon.loaders import LOADERS
from medner.lexicon.normalize import RULE_NAMES, aliases
from medner.lexicon.store import FORMAT_VERSION, fingerprint_of, render, write_lexicon

__all__ = ["SourceSpec", "LexiconConfig", "BuildResult", "read_config", "load_source", "merge", "build_lexicon",
           "expand_path", "sidecar_path"]

log = logging.getLogger(__name__)

_COMMON_KEYS = {"name", "kind", "path", "label", "strict", "aliases", "alias_rules", "optional", "encoding",
                "code_system", "code_pattern"}
_KIND_KEYS = {
    "icd10_xlsx": {"sheet", "columns", "category_labels", "exclude_codes"},
    "icd9cm3_xlsx": {"sheet", "columns", "category_labels", "exclude_codes"},
    "csv": {"delimiter", "columns", "exclude_codes"},
    "po": {"context", "code_format", "exclude_codes"},
    "list": set(),
    "tsv": {"exclude_codes"},
}
_TOP_KEYS = {"version", "description", "label_priority", "sources"}
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class SourceSpec:
    """One validated source entry of the config; ``options`` are passed to the loader."""

    name: str
    kind: str
    path: Path
    path_as_written: str
    label: str | None
    strict: bool = False
    aliases: bool = False
    alias_rules: tuple[str, ...] | None = None
    optional: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LexiconConfig:
    path: Path
    version: str
    sources: tuple[SourceSpec, ...]
    label_priority: tuple[str, ...] = ()
    description: str = ""


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


def _bool(value: Any, key: str, config: Path) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", where=str(config), field=key,
                          fix="write true or false")
    return value


def read_config(path: str | PathLike) -> LexiconConfig:
    """Parse and validate a lexicon build config; every error names the file and the key."""
    path = Path(path)
    tree = read_yaml(path)
    if not isinstance(tree, dict):
        raise ConfigError("expected a mapping with `sources:`", where=str(path), fix="see configs/lexicon_zh.yaml")
    unknown = sorted(set(tree) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; valid: {sorted(_TOP_KEYS)}", where=str(path),
                          field=unknown[0], fix="remove or rename the key")
    sources_raw = tree.get("sources")
    if not isinstance(sources_raw, list) or not sources_raw:
        raise ConfigError("expected a non-empty list", where=str(path), field="sources",
                          fix="list the sources, each with name, kind, path")
    base = path.resolve().parent
    specs: list[SourceSpec] = []
    names: set[str] = set()
    for i, raw in enumerate(sources_raw):
        key = f"sources[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError("expected a mapping", where=str(path), field=key, fix="give name, kind, path")
        for required in ("name", "kind", "path"):
            if not raw.get(required):
                raise ConfigError("missing", where=str(path), field=f"{key}.{required}",
                                  fix=f"add `{required}:` to this source")
        kind = raw["kind"]
        if kind not in _KIND_KEYS:
            raise ConfigError(f"unknown kind {kind!r}; valid: {sorted(_KIND_KEYS)}", where=str(path),
                              field=f"{key}.kind", fix="use one of the valid kinds")
        allowed = _COMMON_KEYS | _KIND_KEYS[kind]
        extra = sorted(set(raw) - allowed)
        if extra:
            raise ConfigError(f"unknown key(s) {extra} for kind {kind}; valid: {sorted(allowed)}",
                              where=str(path), field=f"{key}.{extra[0]}", fix="remove or rename the key")
        name = str(raw["name"])
        if name in names or not re.fullmatch(r"[\w.\-]+", name):
            raise ConfigError(f"name {name!r} is duplicated or holds characters other than letters, digits . - _",
                              where=str(path), field=f"{key}.name", fix="give each source a unique simple name")
        names.add(name)
        rules = raw.get("alias_rules")
        if rules is not None:
            bad = sorted(set(rules) - set(RULE_NAMES)) if isinstance(rules, list) else [rules]
            if bad:
                raise ConfigError(f"unknown alias rule(s) {bad}; valid: {list(RULE_NAMES)}", where=str(path),
                                  field=f"{key}.alias_rules", fix="list valid rule names")
        options = {k: v for k, v in raw.items() if k not in {"name", "kind", "path", "label", "strict", "aliases",
                                                             "alias_rules", "optional"}}
        specs.append(SourceSpec(
            name=name, kind=kind, path=expand_path(str(raw["path"]), base, f"{key}.path", path),
            path_as_written=str(raw["path"]), label=raw.get("label"),
            strict=_bool(raw.get("strict", False), f"{key}.strict", path),
            aliases=_bool(raw.get("aliases", False), f"{key}.aliases", path),
            alias_rules=tuple(rules) if rules is not None else None,
            optional=_bool(raw.get("optional", False), f"{key}.optional", path),
            options=options))
    priority = tree.get("label_priority") or []
    if not isinstance(priority, list):
        raise ConfigError("expected a list of labels", where=str(path), field="label_priority",
                          fix="write label_priority: [疾病和诊断, 手术]")
    version = str(tree.get("version", "0"))
    if not re.fullmatch(r"[\w.\-+]+", version):
        raise ConfigError(f"version {version!r} may only hold letters, digits and . - + _", where=str(path),
                          field="version", fix="write a simple version such as zh-1")
    return LexiconConfig(path=path, version=version, sources=tuple(specs),
                         label_priority=tuple(str(p) for p in priority), description=str(tree.get("description", "")))


def load_source(spec: SourceSpec, *, strict: bool | None = None) -> LoadResult:
    """Run the loader for ``spec`` (``strict`` overrides the spec's own setting when given)."""
    loader = LOADERS[spec.kind]
    return loader(spec.path, source=spec.name, label=spec.label,
                  strict=spec.strict if strict is None else strict, **dict(spec.options))


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


def sidecar_path(out: str | PathLike) -> Path:
    """``lexicon_zh.tsv`` -> ``lexicon_zh.json``."""
    return Path(out).with_suffix(".json")


def build_lexicon(config_path: str | PathLike, out: str | PathLike | None = None, *,
                  strict: bool | None = None) -> BuildResult:
    """Load every source, merge, and (when ``out`` is given) write ``out`` and its ``.json`` sidecar.

    Raises :class:`ConfigError` for config mistakes and missing non-optional files,
    :class:`LexiconError` for unreadable sources or (strict) bad rows.
    """
    config = read_config(config_path)
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
        side.write_text(json.dumps(sidecar, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        log.info("wrote %s (%d entries, %s) and %s", out_path, n, fp[:19], side.name)
    return BuildResult(entries=entries, fingerprint=fp, sidecar=sidecar, path=out_path)
