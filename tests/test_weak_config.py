"""The weak-labelling config schema (medner/weak/config.py): every key checked by the shared validation path,
errors that name the file and the dotted key, cross-field checks, and replacement function lists."""
from __future__ import annotations

import logging

import dataclasses
import re
import shutil
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import yaml

from medner.errors import ConfigError
from medner.types import Record
from medner.weak import AGGREGATORS, FUNCTION_KINDS, WeakPipeline, read_weak_config
from medner.weak.config import (AggregatorConfig, ExtentFunction, LexiconFunction, MajorityOptions, TermRef,
                                TumourSiteFunction, WeakConfig)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "weak"

#: the smallest valid function of each kind (the required keys only)
MINIMAL = {
    "lexicon": {"lexicon": "terms", "label_map": {"disease": "D"}},
    "imaging": {"label": "I", "modalities": ["CT"]},
    "lab_value": {"label": "L"},
    "lymph_node": {"label": "A"},
    "procedure": {"label": "P"},
    "operation": {"label": "P", "sites": ["胃"]},
    "tumour_site": {"label": "D", "sites": ["胃"]},
    "extent": {"label": "D", "base": ["f0"]},
}


def tree_with(kind: str, **keys) -> dict:
    """A config whose last function is a minimal one of ``kind`` (plus ``keys``) after a lexicon function f0."""
    return {"labels": ["D", "I", "L", "A", "P"], "lexicons": {"terms": {"path": "terms.tsv"}},
            "functions": [{"name": "f0", "kind": "lexicon", "lexicon": "terms", "label_map": {"disease": "D"}},
                          {"name": "f1", "kind": kind, **MINIMAL[kind], **keys}]}


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def error_of(tmp_path: Path, tree: dict) -> str:
    with pytest.raises(ConfigError) as info:
        read_weak_config(write(tmp_path, tree))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'w.yaml'}: ") and ". Fix: " in message and "\n" not in message
    return message


def test_function_kinds_match_the_schema_and_the_aggregators() -> None:
    assert set(FUNCTION_KINDS) == set(MINIMAL)
    assert set(get_args(get_type_hints(AggregatorConfig)["method"])) == set(AGGREGATORS)


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_every_kind_loads_with_its_required_keys(tmp_path: Path, kind: str) -> None:
    config = read_weak_config(write(tmp_path, tree_with(kind)))
    spec = config.functions[1]
    assert isinstance(spec, FUNCTION_KINDS[kind]) and spec.kind == kind and spec.weight == 1.0
    assert isinstance(config.aggregator, AggregatorConfig) and config.aggregator.method == "dawid_skene"


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_every_kind_refuses_an_unknown_key_listing_its_own(tmp_path: Path, kind: str) -> None:
    message = error_of(tmp_path, tree_with(kind, colour="red"))
    valid = sorted(f.name for f in dataclasses.fields(FUNCTION_KINDS[kind]))
    assert f"unknown key `functions[1].colour` for kind {kind}; valid keys here: {', '.join(valid)}" in message


@pytest.mark.parametrize("kind, key", [(kind, key) for kind, keys in sorted(MINIMAL.items()) for key in keys])
def test_every_required_key_is_required(tmp_path: Path, kind: str, key: str) -> None:
    tree = tree_with(kind)
    del tree["functions"][1][key]
    assert f"missing required key `functions[1].{key}`" in error_of(tmp_path, tree)


@pytest.mark.parametrize("kind, keys, field, fragment", [
    # wrong types, at every depth
    ("lexicon", {"min_length": "two"}, "functions[1].min_length", "must be an integer"),
    ("lexicon", {"include_aliases": "no way"}, "functions[1].include_aliases", "must be true or false"),
    ("lexicon", {"prefixes": "left"}, "functions[1].prefixes", "must be laterality or a list of strings"),
    ("lexicon", {"suffixes": "术后"}, "functions[1].suffixes", "must be a list of strings"),
    ("lexicon", {"label_map": ["D"]}, "functions[1].label_map", "must be a mapping"),
    ("lexicon", {"block": [{"lexicon": "terms", "label": ["x"]}]}, "functions[1].block[0].label", "unknown key"),
    ("lexicon", {"block": [["a", ["b", {"lexicon": "terms", "labels": 3}]]]}, "functions[1].block[0][1][1].labels",
     "must be a list of strings"),
    ("imaging", {"modalities": 42}, "functions[1].modalities", "must be a mapping (lexicon, labels) or a list"),
    ("imaging", {"modalities": {"labels": ["x"]}}, "functions[1].modalities.lexicon", "missing required key"),
    ("procedure", {"weight": "heavy"}, "functions[1].weight", "must be a number"),
    ("procedure", {"weight": -1}, "functions[1].weight", "must be >= 0"),   # would silently emit nothing
    ("extent", {"base": "f0"}, "functions[1].base", "must be a list of strings"),
    ("lab_value", {"label": ["L"]}, "functions[1].label", "must be a string"),
    # cross-field checks
    ("lexicon", {"lexicon": "nope"}, "functions[1].lexicon", "'nope' is not a lexicon of `lexicons:` (['terms'])"),
    ("lexicon", {"label_map": {"disease": "X"}}, "functions[1].label_map", "'X' is not one of `labels`"),
    ("lexicon", {"label_map": {}}, "functions[1].label_map", "expected a mapping lexicon label -> corpus label"),
    ("imaging", {"label": "X"}, "functions[1].label", "'X' is not one of `labels`"),
    ("tumour_site", {"sites": [["胃"], {"lexicon": "anatomy"}]}, "functions[1].sites[1].lexicon",
     "'anatomy' is not a lexicon"),
    ("extent", {"base": ["f1"]}, "functions[1].base", "['f1'] are not functions defined above this one (['f0'])"),
    ("extent", {"base": []}, "functions[1].base", "expected at least one function name"),
    ("extent", {"sites": ["later"]}, "functions[1].sites", "are not functions defined above this one"),
    ("procedure", {"name": "f0"}, "functions[1].name", "'f0' is duplicated"),
    ("procedure", {"name": "weak:majority"}, "functions[1].name", "starts with 'weak:'"),
])
def test_function_errors_name_the_dotted_key(tmp_path: Path, kind: str, keys: dict, field: str,
                                             fragment: str) -> None:
    message = error_of(tmp_path, tree_with(kind, **keys))
    assert f"`{field}`" in message and fragment in message


@pytest.mark.parametrize("change, field, fragment", [
    ({"colour": 1}, "colour", "valid keys here: aggregator, description, functions, labels, lexicons, link, version"),
    ({"labels": None}, "labels", "missing required key"),
    ({"labels": []}, "labels", "non-empty list of label names"),
    ({"labels": "D"}, "labels", "must be a list of strings"),
    ({"functions": []}, "functions", "expected a non-empty list"),
    ({"functions": [{"kind": "procedure", "label": "P"}]}, "functions[0].name", "missing required key"),
    ({"functions": [{"name": "p", "label": "P"}]}, "functions[0].kind", "missing required key"),
    ({"functions": [{"name": "p", "kind": "regex", "label": "P"}]}, "functions[0].kind", "unknown kind 'regex'"),
    ({"lexicons": {"terms": {"path": "t.tsv", "colour": 1}}}, "lexicons.terms.colour", "valid keys here: build, path"),
    ({"lexicons": {"terms": {"build": "b.yaml"}}}, "lexicons.terms.path", "missing required key"),
    ({"lexicons": {"terms": "t.tsv"}}, "lexicons.terms", "must be a mapping, got 't.tsv'"),
    ({"aggregator": {"method": "snorkel"}}, "aggregator.method", "must be one of majority, dawid_skene"),
    ({"aggregator": {"majority": {"nested": True}}}, "aggregator.method", "missing required key"),
    ({"aggregator": {"method": "majority", "min_votes": 2}}, "aggregator.min_votes",
     "valid keys here: dawid_skene, majority, method"),
    ({"aggregator": {"method": "majority", "majority": {"min_confidence": 0.5}}}, "aggregator.majority.min_confidence",
     "valid keys here: min_votes, nested, nested_other, weights"),
    ({"aggregator": {"method": "majority", "majority": {"nested_other": 2}}}, "aggregator.majority.nested_other",
     "must be in [0, 1]"),
    ({"aggregator": {"method": "dawid_skene", "dawid_skene": {"min_confidence": -1}}},
     "aggregator.dawid_skene.min_confidence", "must be in [0, 1]"),
    ({"aggregator": {"method": "majority", "dawid_skene": 3}}, "aggregator.dawid_skene", "must be a mapping"),
    ({"link": {"labels": ["D"]}}, "link.lexicon", "missing required key"),
    ({"link": {"lexicon": "icd"}}, "link.lexicon", "'icd' is not a lexicon of `lexicons:`"),
    ({"link": {"lexicon": "terms", "labels": ["X"]}}, "link.labels", "'X' is not one of `labels`"),
    ({"link": {"lexicon": "terms", "min_score": 0}}, "link.min_score", "must be in (0, 1]"),
    ({"link": {"lexicon": "terms", "colour": 1}}, "link.colour", "valid keys here: label_map, labels, lexicon"),
    ({"aggregator": {"method": "majority", "majority": {"weights": {"f0": 2, "f2": 1}}}},
     "aggregator.majority.weights", "'f2' is not the name of a labelling function (['f0', 'f1'])"),
    ({"aggregator": {"method": "majority", "majority": {"weights": {"f0": -0.5}}}},
     "aggregator.majority.weights", "must be >= 0"),
])
def test_config_errors_name_the_dotted_key(tmp_path: Path, change: dict, field: str, fragment: str) -> None:
    tree = tree_with("procedure")
    tree.update(change)
    tree = {k: v for k, v in tree.items() if v is not None}
    message = error_of(tmp_path, tree)
    assert f"`{field}`" in message and fragment in message


def test_null_and_empty_sections_mean_the_defaults(tmp_path: Path) -> None:
    for aggregator in (None, {}):
        config = read_weak_config(write(tmp_path, {**tree_with("procedure"), "aggregator": aggregator}))
        assert config.aggregator == AggregatorConfig(method="dawid_skene") and config.link is None
    config = read_weak_config(write(tmp_path, {**tree_with("extent", joiners=[], left=""), "version": 2,
                                               "aggregator": {"method": "majority",
                                                              "majority": {"nested": True, "nested_other": 0.5}}}))
    assert config.version == "2" and config.aggregator.options() == {"nested": True, "nested_other": 0.5}
    assert config.aggregator.options("dawid_skene") == {}
    extent = config.functions[1]
    assert isinstance(extent, ExtentFunction) and extent.joiners == () and extent.left == "" and extent.right is None


def test_shipped_config_loads_to_typed_specs() -> None:
    config = read_weak_config(ROOT / "configs" / "weak_labels/ccks2019.yaml")
    by_name = {f.name: f for f in config.functions}
    icd10, disease_list = by_name["icd10"], by_name["disease_list"]
    assert isinstance(icd10, LexiconFunction) and icd10.prefixes == "laterality" and icd10.suffixes == ("术后",)
    assert icd10.block == (TermRef(lexicon="symptoms"), ("肿瘤", "恶性肿瘤", "感染"))   # YAML aliases: same values
    assert disease_list.block == icd10.block and disease_list.block_matching == icd10.block_matching
    assert isinstance(by_name["site_lesion"], TumourSiteFunction) and by_name["lab_values"].weight == 0.5
    assert config.aggregator.method == "majority" and config.aggregator.options("dawid_skene") == {
        "min_confidence": 0.5, "prior_strength": 1.0}
    assert config.link is not None and config.link.labels == ("疾病和诊断", "手术") and config.link.min_score == 0.6
    assert config.lexicons["icd"].build == "../lexicon_zh.yaml"


@pytest.fixture()
def tiny(tmp_path: Path) -> WeakConfig:
    for name in ("icd_tiny.tsv", "curated_tiny.tsv"):
        shutil.copy(DATA / name, tmp_path / name)
    shutil.copy(DATA / "weak_tiny.yaml", tmp_path / "weak_tiny.yaml")
    return read_weak_config(tmp_path / "weak_tiny.yaml")


def test_replacement_functions_are_checked_like_the_config(tiny: WeakConfig) -> None:
    good = {"name": "official", "kind": "lexicon", "lexicon": "icd", "label_map": {"疾病和诊断": "疾病和诊断"},
            "include_aliases": False}
    pipe = WeakPipeline(tiny, functions=[good, tiny.functions[2]])
    assert [lf.name for lf in pipe.functions] == ["official", "procedure_rule"] and pipe.weights["official"] == 1.0
    for bad, field in [({**good, "colour": 1}, "functions[0].colour"), ({**good, "lexicon": "nope"}, "functions[0].lexicon"),
                       ({**good, "include_aliases": "no"}, "functions[0].include_aliases")]:
        with pytest.raises(ConfigError, match=rf"weak_tiny\.yaml: .*`{re.escape(field)}`"):
            WeakPipeline(tiny, functions=[bad])


def test_imaging_laterality_reaches_the_rule(tiny: WeakConfig) -> None:
    text = "左上腹部CT示"
    record = Record("r", text)

    def spans(**keys) -> list[str]:
        spec = {"name": "img", "kind": "imaging", "label": "影像检查", "modalities": ["CT"], "regions": ["上腹"], **keys}
        [lf] = WeakPipeline(tiny, functions=[spec]).functions
        return [text[s.start:s.end] for s in lf.find_spans(record)]

    assert spans() == ["左上腹部CT"] and spans(laterality=[]) == ["上腹部CT"]


def test_lexicon_sources_and_labels_a_function_names_but_the_lexicon_lacks_are_warned(tiny: WeakConfig, caplog) -> None:
    """A typo would select nothing from them, silently (a warning: an optional source may be absent here)."""
    spec = {"name": "typos", "kind": "lexicon", "lexicon": "icd", "sources": ["icd10_test", "icd9_tset"],
            "label_map": {"疾病和诊断": "疾病和诊断", "疾病": "疾病和诊断"}}
    with caplog.at_level(logging.WARNING, logger="medner.weak.pipeline"):
        WeakPipeline(tiny, functions=[spec])
    assert "functions[0].sources: lexicon 'icd' has no source 'icd9_tset' (its sources: drug_test, icd10_test, icd9_test)" \
        in caplog.text
    assert "functions[0].label_map: lexicon 'icd' has no entries labelled '疾病' in the sources chosen" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medner.weak.pipeline"):
        WeakPipeline(tiny)  # the config as shipped: nothing to warn of
    assert "has no" not in caplog.text


def test_majority_weights_of_the_aggregator_are_merged_over_the_functions_own(tiny: WeakConfig) -> None:
    functions = [*tiny.functions[:-2], dataclasses.replace(tiny.functions[-2], weight=0.5), tiny.functions[-1]]
    assert functions[-2].name == "lab_values"
    majority = AggregatorConfig(method="majority", majority=MajorityOptions(weights={"icd10": 2.0}))
    pipe = WeakPipeline(dataclasses.replace(tiny, functions=tuple(functions), aggregator=majority))
    weights = pipe.make_aggregator("majority").weights
    assert weights["icd10"] == 2.0 and weights["lab_values"] == 0.5 and weights["icd9"] == 1.0
    assert pipe.make_aggregator("majority", weights={"icd9": 3.0}).weights["lab_values"] == 0.5
