"""The real ICD files in ../shared/data: row counts from SOURCES.md, full accounting, offsets on CCKS text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medner.lexicon import LexiconMatcher, build_lexicon, load_lexicon
from medner.lexicon.normalize import fold
from shared_data import shared_data_path as shared_data

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    shared = shared_data()
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDNER_SHARED", str(shared))
    try:
        out = tmp_path_factory.mktemp("lexicon") / "lexicon_zh.tsv"
        result = build_lexicon(REPO / "configs" / "lexicon_zh.yaml", out)
    finally:
        mp.undo()
    return out, {s["name"]: s for s in result.sidecar["sources"]}


# rows per SOURCES.md
@pytest.mark.parametrize("name,rows", [("icd10_national", 34_968), ("icd9cm3_national", 12_698),
                                       ("icd10_beijing", 40_474)])
def test_row_counts_and_accounting(built: tuple[Path, dict], name: str, rows: int) -> None:
    source = built[1][name]
    assert source["rows"] == rows
    assert rows == (source["loaded"] + sum(source["bad"].values()) + source["merged_duplicates"]
                    + sum(source["skipped"].values()))


def test_po_codes(built: tuple[Path, dict]) -> None:
    source = built[1]["gnuhealth_zh"]
    assert source["rows"] - source["skipped"].get("other context", 0) == 14_416  # pathology codes
    assert source["rows"] == (source["loaded"] + sum(source["bad"].values()) + source["merged_duplicates"]
                              + sum(source["skipped"].values()))


@pytest.mark.parametrize("name", ["icd10_national", "icd9cm3_national", "gnuhealth_zh"])
def test_code_patterns_accept_the_official_editions(built: tuple[Path, dict], name: str) -> None:
    assert "malformed_code" not in built[1][name]["bad"]


def test_lexicon_file_round_trip(built: tuple[Path, dict]) -> None:
    path, sources = built
    lexicon = load_lexicon(path)
    side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert lexicon.fingerprint == side["fingerprint"] and len(lexicon) == side["entries"]
    assert {e.source for e in lexicon.entries} <= set(sources)


def test_offsets_on_ccks2019_records(built: tuple[Path, dict]) -> None:
    records = shared_data() / "corpora" / "ccks2019_yidu" / "subtask1_training_part1.txt"
    if not records.is_file():
        pytest.skip("CCKS 2019 records not found in ../shared/data")
    matcher = LexiconMatcher(load_lexicon(built[0]).entries, label_priority=["疾病和诊断", "手术", "药物"])
    texts = [json.loads(line)["originalText"] for line in records.read_text(encoding="utf-8-sig").splitlines()
             if line.strip()][:200]
    total = 0
    for text in texts:
        matches = matcher.matches(text)
        total += len(matches)
        for a, b in zip(matches, matches[1:]):
            assert a.end <= b.start
        for m in matches:
            assert fold(text[m.start:m.end]) == fold(m.entry.term)
    assert total > 0
