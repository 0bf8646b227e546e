"""The curated project lexicon (lexicons/*.tsv): strict loading, the documented labels, no contradictions."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from medner.lexicon import load_lexicon
from medner.lexicon.normalize import fold

LEXICONS = Path(__file__).resolve().parents[1] / "lexicons"
LABELS = {
    "anatomy.tsv": {"anatomy", "organ_wall", "tissue", "structure", "not_anatomy"},
    "imaging.tsv": {"imaging", "imaging_modality"},
    "lab_tests.tsv": {"lab_test", "lab_panel"},
    "drugs.tsv": {"drug", "regimen"},
    "symptoms.tsv": {"symptom", "finding"},
}


@pytest.mark.parametrize("name,labels", sorted(LABELS.items()))
def test_curated_lexicon_loads_with_documented_labels(name: str, labels: set[str]) -> None:
    lexicon = load_lexicon(LEXICONS / name)  # strict: any malformed row raises with file:line
    assert set(lexicon.labels()) == labels
    assert all(e.code is None for e in lexicon)              # the curated lists claim no ICD codes
    assert all(e.term == e.term.strip() and e.term for e in lexicon)
    assert len(lexicon) >= 100
    readme = (LEXICONS / "README.md").read_text(encoding="utf-8")
    assert f"`{name}`" in readme and "No CCKS 2019 annotation was harvested" in readme


def test_a_folded_term_has_one_label_per_file() -> None:
    for name in LABELS:
        labels = defaultdict(set)
        for e in load_lexicon(LEXICONS / name):
            labels[fold(e.term)].add(e.label)
        clashes = {t: ls for t, ls in labels.items() if len(ls) > 1}
        assert not clashes, f"{name}: {clashes}"


def test_blocking_words_are_not_anatomy_terms() -> None:
    entries = load_lexicon(LEXICONS / "anatomy.tsv").entries
    anatomy = {e.term for e in entries if e.label == "anatomy"}
    blockers = {e.term for e in entries if e.label == "not_anatomy"}
    assert not anatomy & blockers
    assert {"恶心", "口服"} <= blockers and {"腹", "乙状结肠", "肺上叶"} <= anatomy


def test_ccks_anatomy_conventions() -> None:
    """CCKS 2019 marks the organ of a wall or cavity (肠 in 肠壁), liver segments with the organ (肝S4), and not
    the omentum or an anastomosis; the CCKS config's anatomy function follows (no ICD lexicon needed)."""
    from medner.types import Record
    from medner.weak import WeakPipeline, read_weak_config

    config = read_weak_config(Path(__file__).resolve().parents[1] / "configs" / "weak_labels/ccks2019.yaml")
    [spec] = [f for f in config.functions if f.name == "anatomy"]
    [lf] = WeakPipeline(config, functions=[spec]).functions
    text = "肠壁增厚，腹膜后未见肿大，肝S4见结节，肝区叩痛，大网膜与吻合口未见异常，左肺"
    got = [text[s.start:s.end] for s in lf.find_spans(Record("r", text))]
    assert got == ["肠", "腹", "肝S4", "肝区", "左肺"]
