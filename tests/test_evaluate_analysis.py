"""Mismatched labels, label maps, error lists with categories, confusion, seen/unseen and length splits, the per-type
chart, and A/B comparison with a paired bootstrap."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from medner import analysis as an
from medner.cli import main
from medner.errors import ConfigError, CorpusError
from medner.evaluate import pair_records, read_label_map, score, score_paired
from medner.types import Record, Span

DATA = Path(__file__).resolve().parent / "data" / "evaluate"
TEXT = "abcdefghijklmnopqrstuvwxyz"


def rec(rid: str, *spans: tuple[int, int, str], text: str = TEXT) -> Record:
    return Record(rid, text, tuple(Span(*s) for s in spans))


def cli(*argv) -> int:
    return main(["evaluate", *map(str, argv)])


# ------------------------------------------------------------------ labels


def test_gold_and_predictions_that_share_no_label_are_an_error_naming_both_sets(tmp_path, capsys):
    gold = [rec("a", (0, 2, "dis"), (3, 5, "sym")), rec("b", (0, 3, "dis"))]
    pred = [rec("a", (0, 2, "疾病和诊断")), rec("b", (0, 3, "药物"))]
    with pytest.raises(CorpusError) as err:
        score(gold, pred)
    message = str(err.value)
    assert "share no label" in message and "dis (2), sym (1)" in message and "疾病和诊断 (1), 药物 (1)" in message
    assert "--label-map" in message and "\n" not in message
    from medner.corpus import write_jsonl

    write_jsonl(gold, tmp_path / "gold.jsonl")
    write_jsonl(pred, tmp_path / "pred.jsonl")
    assert cli("--gold", tmp_path / "gold.jsonl", "--pred", tmp_path / "pred.jsonl") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error: ") and "\n" not in err and "share no label" in err
    assert cli("--gold", tmp_path / "gold.jsonl", "--pred", tmp_path / "pred.jsonl", "--label-map", "疾病和诊断=dis",
               "--label-map", "sym=", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["per_type"]) == {"dis", "药物"} and result["span"]["micro"]["recall"] == pytest.approx(1 / 2)


def test_a_partial_overlap_warns_listing_the_labels_on_one_side(caplog):
    with caplog.at_level(logging.WARNING):
        score([rec("a", (0, 2, "A"), (3, 5, "B"))], [rec("a", (0, 2, "A"), (6, 8, "C"))])
    [line] = [r.getMessage() for r in caplog.records if "one side" in r.getMessage()]
    assert "only in gold: B (1)" in line and "only in predictions: C (1)" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        score([rec("a", (0, 2, "A"))], [rec("a", (0, 2, "A"))])
        score([rec("a", (0, 2, "A"))], [rec("a")])  # nothing predicted: zeros, not a label problem
    assert not caplog.records


def test_label_maps_from_pairs_and_the_shipped_yaml_files(tmp_path, caplog):
    assert read_label_map(["a=b", "c=", " d = e "]) == {"a": "b", "c": None, "d": "e"}
    shipped = read_label_map([str(Path(__file__).parents[1] / "configs" / "label_maps" / "cmeee_to_ccks2019.yaml")])
    assert shipped["dis"] == "疾病和诊断" and shipped["sym"] is None
    (tmp_path / "flat.yaml").write_text("x: y\nz: null\n", encoding="utf-8")
    assert read_label_map([str(tmp_path / "flat.yaml"), "x=w"]) == {"x": "w", "z": None}
    for bad in (["nonsense"], ["=x"], [str(tmp_path / "missing.yaml")]):
        with pytest.raises(ConfigError):
            read_label_map(bad)
    (tmp_path / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="label_map"):
        read_label_map([str(tmp_path / "list.yaml")])
    # the map applies to both sides; dropped labels leave the scores
    gold = [rec("a", (0, 2, "dis"), (3, 5, "sym"))]
    pred = [rec("a", (0, 2, "疾病和诊断"), (3, 5, "其他"))]
    result = score(gold, pred, label_map={"dis": "疾病和诊断", "sym": None, "其他": None})
    assert result["micro"]["f1"] == 1.0 and set(result["per_type"]) == {"疾病和诊断"}
    assert "occur on neither side" not in caplog.text
    with caplog.at_level(logging.WARNING):  # a map label that no span has: a misspelling is said, not ignored
        score(gold, pred, label_map={"dis": "疾病和诊断", "sym": None, "其他": None, "dsi": "x"})
    assert "label map: 1 of its labels occur on neither side (misspelt?): dsi" in caplog.text


# ------------------------------------------------------------------ errors


def categories(gold, pred):
    paired = pair_records([rec("a", *gold)], [rec("a", *pred)], check_labels=False)
    return [(row["category"], row["gold"] and row["gold"]["label"], row["pred"] and row["pred"]["label"])
            for row in an.classify_errors(paired)]


@pytest.mark.parametrize("gold, pred, expected", [
    ([(0, 3, "A")], [(0, 3, "A")], []),
    ([(0, 3, "A")], [(0, 3, "B")], [("type", "A", "B")]),
    ([(0, 3, "A")], [(0, 4, "A")], [("boundary", "A", "A")]),
    ([(0, 3, "A")], [(1, 4, "B")], [("boundary+type", "A", "B")]),
    ([(0, 3, "A")], [(5, 7, "A")], [("missed", "A", None), ("spurious", None, "A")]),
    ([(0, 3, "A")], [], [("missed", "A", None)]),
    ([], [(0, 3, "A")], [("spurious", None, "A")]),
    # two predictions in one gold span: the larger overlap pairs, the other is still a boundary error of that span
    ([(0, 6, "A")], [(0, 4, "A"), (4, 6, "A")], [("boundary", "A", "A"), ("boundary", "A", "A")]),
    # same label pairs before another label; a correct nested span is no error
    ([(0, 6, "A"), (0, 2, "B")], [(0, 2, "B"), (0, 5, "A")], [("boundary", "A", "A")]),
    ([(0, 4, "A"), (2, 4, "B")], [(0, 3, "B")], [("boundary", "B", "B"), ("missed", "A", None)]),
])
def test_error_categories(gold, pred, expected):
    assert sorted(categories(gold, pred), key=str) == sorted(expected, key=str)


def test_error_rows_hold_mentions_and_context_and_count_every_false_positive_and_negative():
    text = "患者因胃癌入院，予奥沙利铂化疗，腹部无压痛。"
    gold = [Record("r1", text, (Span(3, 5, "疾病和诊断"), Span(9, 13, "药物"), Span(16, 18, "解剖部位")))]
    pred = [Record("r1", text, (Span(2, 5, "疾病和诊断", score=0.8), Span(9, 13, "疾病和诊断"), Span(19, 21, "药物")))]
    paired = pair_records(gold, pred, check_labels=False)
    rows = an.classify_errors(paired, context=3)
    assert [r["category"] for r in rows] == ["boundary", "type", "missed", "spurious"]
    assert rows[0] == {"id": "r1", "category": "boundary",
                       "gold": {"start": 3, "end": 5, "label": "疾病和诊断", "text": "胃癌"},
                       "pred": {"start": 2, "end": 5, "label": "疾病和诊断", "text": "因胃癌", "score": 0.8},
                       "left": "患者", "right": "入院，"}
    assert rows[2]["gold"]["text"] == "腹部" and rows[2]["pred"] is None
    result = score_paired(paired)
    span = result["span"]["micro"]
    false_negatives, false_positives = round(span["support"] * (1 - span["recall"])), 3 - round(span["precision"] * 3)
    assert sum(r["pred"] is not None for r in rows) == false_positives  # predicted, not correct
    assert sum(r["gold"] is not None for r in rows) == false_negatives  # gold, not found
    analysis = an.analyse(paired)
    assert analysis["errors"] == {"boundary": 1, "type": 1, "boundary+type": 0, "spurious": 1, "missed": 1}
    assert analysis["confusion"] == {"疾病和诊断": {"O": 1}, "药物": {"疾病和诊断": 1}, "解剖部位": {"O": 1},
                                     "O": {"疾病和诊断": 1, "药物": 1}}


def test_seen_unseen_and_length_splits_add_up_to_the_span_scores():
    gold = [rec("a", (0, 1, "A"), (2, 4, "A"), (5, 10, "B"), (11, 30 - 4, "B")), rec("b", (0, 3, "A"))]
    pred = [rec("a", (0, 1, "A"), (2, 5, "A"), (5, 10, "B"), (11, 26, "B")), rec("b", (0, 3, "A"), (4, 6, "B"))]
    paired = pair_records(gold, pred)
    train = an.training_mentions([rec("t", (0, 1, "A"), (5, 10, "B"), (0, 3, "B"))])  # "abc" seen as B, not A
    analysis = an.analyse(paired, train)
    seen, unseen = analysis["by_seen"]["seen"], analysis["by_seen"]["unseen"]
    assert (seen["support"], seen["predicted"], seen["recall"]) == (2, 2, 1.0)  # "a"/A and "fghij"/B
    assert (unseen["support"], unseen["predicted"]) == (3, 4)
    assert unseen["recall"] == pytest.approx(2 / 3) and unseen["precision"] == pytest.approx(2 / 4)
    lengths = analysis["by_length"]
    assert list(lengths) == ["1", "2", "3-4", "5-8", "9-16"]
    assert lengths["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1}
    span = score_paired(paired)["span"]["micro"]
    for split in (analysis["by_seen"], lengths):
        assert sum(r["support"] for r in split.values()) == span["support"]
        tp = sum(round(r["recall"] * r["support"]) for r in split.values())
        assert tp == round(span["recall"] * span["support"])
    assert "by_seen" not in an.analyse(paired)


def test_cli_errors_file_report_sections_and_chart(tmp_path, capsys):
    errors, prefix = tmp_path / "errors.jsonl", tmp_path / "report" / "dev"
    assert cli("--gold", DATA / "gold.jsonl", "--pred", DATA / "pred.jsonl", "--errors", errors, "--train",
               DATA / "gold.jsonl", "-o", prefix) == 0
    out = capsys.readouterr().out
    assert "errors (exact spans): boundary 1, type 1" in out and "span F1 by mention: seen" in out
    rows = [json.loads(line) for line in errors.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["category"]) for r in rows] == [("r1", "boundary"), ("r3", "type")]
    assert rows[0]["gold"]["text"] == "头" and rows[0]["pred"]["text"] == "头痛"  # the file the user asked for
    md = (tmp_path / "report" / "dev.md").read_text(encoding="utf-8")
    for heading in ("## Errors", "## Confusion by type", "## Seen and unseen mentions", "## By mention length"):
        assert heading in md
    assert "![per-type strict F1](dev.png)" in md
    png = (tmp_path / "report" / "dev.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "report" / "dev.json").read_text(encoding="utf-8"))
    assert result["analysis"]["errors"]["boundary"] == 1 and "by_seen" in result["analysis"]
    assert cli("--gold", DATA / "gold.jsonl", "--pred", DATA / "pred.jsonl", "-o", tmp_path / "plain",
               "--no-plot") == 0
    assert not (tmp_path / "plain.png").exists() and "![" not in (tmp_path / "plain.md").read_text(encoding="utf-8")


def test_the_chart_numbers_bars_when_no_font_draws_the_names(tmp_path, monkeypatch):
    import medner.evaluate as ev

    monkeypatch.setattr(ev, "_font_for", lambda names: None)
    result = score([rec("a", (0, 2, "疾病和诊断"))], [rec("a", (0, 2, "疾病和诊断"))])
    assert ev.plot_per_type(result, tmp_path / "x.png") and (tmp_path / "x.png").stat().st_size > 1000
    assert not ev.plot_per_type({"per_type": {}}, tmp_path / "y.png") and not (tmp_path / "y.png").exists()


# ------------------------------------------------------------------ comparison


def systems(n: int, seed: int, a_hit: float, b_hit: float):
    """Gold of ``n`` records, 3 spans each of types A/B; systems A and B find each span with those rates."""
    rng = np.random.default_rng(seed)
    gold, pred_a, pred_b = [], [], []
    for i in range(n):
        spans = [Span(0, 2, "A"), Span(3, 6, "B"), Span(8, 10, "A")]
        gold.append(Record(f"r{i}", TEXT, tuple(spans)))
        pred_a.append(Record(f"r{i}", TEXT, tuple(s for s in spans if rng.random() < a_hit)))
        pred_b.append(Record(f"r{i}", TEXT, tuple(s for s in spans if rng.random() < b_hit)))
    return gold, pred_a, pred_b


def test_bootstrap_full_sample_f1_is_seqeval_s_and_a_real_difference_is_significant():
    gold, pred_a, pred_b = systems(200, 1, 0.6, 0.9)
    a, b = pair_records(gold, pred_a), pair_records(gold, pred_b)
    result = an.compare(a, b, samples=300, seed=3)
    score_a, score_b = score_paired(a), score_paired(b)
    assert result["micro"]["a"] == pytest.approx(score_a["micro"]["f1"])
    assert result["micro"]["b"] == pytest.approx(score_b["micro"]["f1"])
    assert result["macro"]["a"] == pytest.approx(score_a["macro"]["f1"])
    for t in ("A", "B"):
        assert result["per_type"][t]["b"] == pytest.approx(score_b["per_type"][t]["f1"])
    micro = result["micro"]
    assert micro["ci"][0] <= micro["delta"] <= micro["ci"][1]
    assert micro["significant"] and micro["ci"][0] > 0 and micro["b_better"] > 0.99
    assert an.compare(a, b, samples=300, seed=3) == result  # seeded
    assert an.compare(a, b, samples=300, seed=4)["micro"]["ci"] != micro["ci"]


def test_bootstrap_says_noise_when_the_systems_are_alike():
    gold, pred_a, pred_b = systems(60, 2, 0.8, 0.8)
    result = an.compare(pair_records(gold, pred_a), pair_records(gold, pred_b), samples=500)
    assert result["micro"]["ci"][0] < 0 < result["micro"]["ci"][1] and not result["micro"]["significant"]
    same = an.compare(pair_records(gold, pred_a), pair_records(gold, pred_a), samples=50)
    assert same["micro"]["delta"] == 0 and same["micro"]["ci"] == [0.0, 0.0] and not same["micro"]["significant"]


def test_cli_compare(tmp_path, capsys):
    from medner.corpus import write_jsonl

    gold, pred_a, pred_b = systems(40, 5, 0.5, 0.95)
    for name, records in (("gold", gold), ("a", pred_a), ("b", pred_b)):
        write_jsonl(records, tmp_path / f"{name}.jsonl")
    assert cli("--gold", tmp_path / "gold.jsonl", "--compare", tmp_path / "a.jsonl", tmp_path / "b.jsonl",
               "--bootstrap", 200, "-o", tmp_path / "ab") == 0
    out = capsys.readouterr().out
    assert "paired bootstrap 95% interval (200 resamples" in out and "micro" in out and " *" in out
    saved = json.loads((tmp_path / "ab.json").read_text(encoding="utf-8"))
    assert saved["samples"] == 200 and saved["micro"]["significant"] and saved["b_path"].endswith("b.jsonl")
    assert "| **micro** |" in (tmp_path / "ab.md").read_text(encoding="utf-8")
    assert cli("--gold", tmp_path / "gold.jsonl", "--compare", tmp_path / "a.jsonl", tmp_path / "b.jsonl",
               "--errors", tmp_path / "e.jsonl") == 2
    assert "--errors and --train go with --pred" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--gold", "g", "--pred", "p", "--compare", "a", "b"])


def test_evaluate_and_its_analysis_never_import_torch():
    import subprocess
    import sys

    code = ("import sys, medner.evaluate, medner.analysis, medner.cli.evaluate, medner.corpus.predictions\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
