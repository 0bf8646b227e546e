"""Scoring: seqeval strict IOB2 per character + exact character spans; reports; `medner evaluate`."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from medner.errors import CorpusError
from medner.evaluate import format_table, score, to_markdown, write_report
from medner.labels import tags_to_spans
from medner.types import Record, Span
from shared_data import shared_data_path as shared_data

DATA = Path(__file__).resolve().parent / "data" / "evaluate"


def rec(rid: str, text: str, *spans: tuple[int, int, str]) -> Record:
    return Record(rid, text, tuple(Span(*s) for s in spans))


def prf(result_part):
    return {m: result_part[m] for m in ("precision", "recall", "f1")}


def approx(p, r, f):
    return {"precision": pytest.approx(p), "recall": pytest.approx(r), "f1": pytest.approx(f)}


TEXT = "x" * 20


# ------------------------------------------------------------------ strict vs lenient


def test_lone_i_against_b_i_is_wrong_under_strict_but_right_under_the_lenient_default():
    gold, pred = [["B-X", "I-X", "O"]], [["I-X", "I-X", "O"]]
    # seqeval's default (CoNLL, lenient) turns I-X I-X into an entity and calls it a match ...
    assert f1_score(gold, pred) == 1.0
    # ... strict IOB2 does not, which is why the project scores strictly
    assert f1_score(gold, pred, mode="strict", scheme=IOB2) == 0.0
    # our decoder follows strict: the ill-formed tags hold no span, so as spans the prediction is empty
    assert tags_to_spans(pred[0], "BIO") == []
    result = score([rec("a", "xyz", (0, 2, "X"))], [rec("a", "xyz", *[(s.start, s.end, s.label) for s in
                                                                      tags_to_spans(pred[0], "BIO")])])
    assert result["micro"]["f1"] == 0.0 and result["span"]["micro"]["f1"] == 0.0


# ------------------------------------------------------------------ hand-computed cases


def test_type_confusion_is_a_false_positive_and_a_false_negative():
    result = score([rec("a", TEXT, (0, 2, "A"))], [rec("a", TEXT, (0, 2, "B"))], check_labels=False)
    for part in (result, result["span"]):
        assert prf(part["micro"]) == approx(0, 0, 0)
        assert part["micro"]["support"] == 1
        assert part["per_type"]["A"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
        assert part["per_type"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


@pytest.mark.parametrize("pred", [(0, 2, "A"), (1, 3, "A"), (0, 4, "A"), (1, 2, "A")])
def test_boundary_errors_score_zero(pred):
    result = score([rec("a", TEXT, (0, 3, "A"))], [rec("a", TEXT, pred)])
    assert prf(result["micro"]) == approx(0, 0, 0)
    assert prf(result["span"]["micro"]) == approx(0, 0, 0)


def test_micro_and_macro_by_hand():
    gold = [rec("a", TEXT, (0, 2, "A"), (3, 5, "A"), (6, 8, "A"), (10, 12, "B"))]
    pred = [rec("a", TEXT, (0, 2, "A"), (3, 5, "A"), (13, 15, "A"), (10, 12, "B"))]
    result = score(gold, pred)
    for part in (result, result["span"]):
        # A: tp 2 of 3 predicted, 3 gold; B: 1 of 1
        assert prf(part["per_type"]["A"]) == approx(2 / 3, 2 / 3, 2 / 3)
        assert prf(part["per_type"]["B"]) == approx(1, 1, 1)
        assert prf(part["micro"]) == approx(3 / 4, 3 / 4, 3 / 4)  # 3 tp of 4 predicted, 4 gold
        assert prf(part["macro"]) == approx(5 / 6, 5 / 6, 5 / 6)  # mean of A and B
        assert part["micro"]["support"] == part["macro"]["support"] == 4


def test_fixture_scores_by_hand():
    def load(name):
        out = []
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            out.append(Record(obj["id"], obj["text"], tuple(Span(s["start"], s["end"], s["label"]) for s in obj["spans"])))
        return out

    result = score(load("gold.jsonl"), load("pred.jsonl"))
    _check_fixture_result(result)


def _check_fixture_result(result):
    # gold: 疾病和诊断 2, 解剖部位 2, 药物 1; pred: 1, 2, 2; correct: 1, 1, 1 (see data/evaluate/README.md)
    for part in (result, result["span"]):
        assert prf(part["per_type"]["疾病和诊断"]) == approx(1, 1 / 2, 2 / 3)
        assert prf(part["per_type"]["解剖部位"]) == approx(1 / 2, 1 / 2, 1 / 2)
        assert prf(part["per_type"]["药物"]) == approx(1 / 2, 1, 2 / 3)
        assert prf(part["micro"]) == approx(3 / 5, 3 / 5, 3 / 5)
        assert prf(part["macro"]) == approx(2 / 3, 2 / 3, 11 / 18)
    assert result["records"] == 3


def test_gold_against_itself_is_one_even_with_nested_gold():
    gold = [rec("a", TEXT, (0, 6, "A"), (2, 4, "B"), (8, 9, "C")), rec("b", "yy", (0, 2, "A")), rec("c", "")]
    result = score(gold, gold)
    for part in (result, result["span"]):
        assert prf(part["micro"]) == approx(1, 1, 1)
        assert prf(part["macro"]) == approx(1, 1, 1)
    assert result["overlaps_resolved"] == 1 and result["pred_overlaps_resolved"] == 1
    assert result["micro"]["support"] == 3  # seqeval sees the flat gold
    assert result["span"]["micro"]["support"] == 4  # span scores see every gold span


def test_nested_gold_seqeval_uses_keep_longest_span_part_uses_all():
    gold = [rec("a", TEXT, (0, 6, "A"), (2, 4, "B"))]
    pred = [rec("a", TEXT, (0, 6, "A"))]
    result = score(gold, pred)
    assert prf(result["micro"]) == approx(1, 1, 1)
    assert result["overlaps_resolved"] == 1
    assert prf(result["span"]["micro"]) == approx(1, 1 / 2, 2 / 3)
    assert result["span"]["per_type"]["B"]["recall"] == 0.0


def test_empty_predictions_score_zero_without_warnings():
    gold = [rec("a", TEXT, (0, 2, "A"), (5, 9, "B"))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score(gold, [rec("a", TEXT)])
        nothing = score([rec("a", TEXT)], [rec("a", TEXT)])
        empty = score([], [])
    for part in (result, result["span"]):
        assert prf(part["micro"]) == approx(0, 0, 0) and prf(part["macro"]) == approx(0, 0, 0)
        assert part["micro"]["support"] == 2
    for res in (nothing, empty):
        for part in (res, res["span"]):
            assert part["micro"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
            assert part["per_type"] == {}


def test_result_is_json_ready_with_plain_numbers():
    result = score([rec("a", TEXT, (0, 2, "A"))], [rec("a", TEXT, (0, 2, "A"), (4, 6, "B"))])
    assert json.loads(json.dumps(result)) == result
    assert all(type(v) in (float, int) for v in result["micro"].values())
    assert set(result) >= {"micro", "macro", "per_type", "span", "records", "overlaps_resolved"}


# ------------------------------------------------------------------ pairing and bad input


def test_records_pair_by_id_not_by_order():
    gold = [rec("a", TEXT, (0, 2, "A")), rec("b", TEXT, (3, 4, "B"))]
    pred = [rec("b", TEXT, (3, 4, "B")), rec("a", TEXT, (0, 2, "A"))]
    assert score(gold, pred)["micro"]["f1"] == 1.0


def test_missing_prediction_raises_naming_the_id_unless_allowed():
    gold = [rec("a", TEXT, (0, 2, "A")), rec("b", TEXT, (3, 4, "B"))]
    pred = [rec("a", TEXT, (0, 2, "A"))]
    with pytest.raises(CorpusError, match=r"gold.jsonl record b: gold record id 'b' has no prediction "
                                          r"\(1 of 2 .*field `id`.*Fix:"):
        score(gold, pred, gold_where="gold.jsonl")
    result = score(gold, pred, on_missing="empty")
    assert prf(result["micro"]) == approx(1, 1 / 2, 2 / 3)


@pytest.mark.parametrize("gold, pred, message", [
    ([rec("a", TEXT)], [rec("a", TEXT), rec("z", TEXT)], r"pred.jsonl record z: predicted record id 'z' has no gold"),
    ([rec("a", TEXT), rec("a", TEXT)], [rec("a", TEXT)], r"gold record a: record id 'a' occurs twice"),
    ([rec("a", TEXT)], [rec("a", TEXT), rec("a", TEXT)], r"record id 'a' occurs twice"),
    ([rec("a", TEXT)], [rec("a", "other text")], r"pred.jsonl record a: predicted text differs.*field `text`"),
    ([rec("a", TEXT)], [rec("a", TEXT, (18, 21, "A"))], r"pred.jsonl record a: span \(18, 21, A\).*<= 20.*spans\[0\]"),
    ([rec("a", TEXT, (3, 3, "A"))], [rec("a", TEXT)], r"gold record a: span \(3, 3, A\) is empty"),
])
def test_bad_input_raises_one_line_corpus_errors(gold, pred, message):
    with pytest.raises(CorpusError, match=message) as info:
        score(gold, pred, pred_where="pred.jsonl")
    assert "\n" not in str(info.value)


def test_prediction_without_text_is_accepted():
    assert score([rec("a", TEXT, (0, 2, "A"))], [rec("a", "", (0, 2, "A"))])["micro"]["f1"] == 1.0


def test_an_empty_predicted_text_is_a_missing_prediction_not_silently_nothing(caplog):
    gold = [rec("a", TEXT, (0, 2, "A")), rec("b", TEXT, (3, 4, "B"))]
    pred = [rec("a", TEXT, (0, 2, "A")), rec("b", "")]  # b: a failed prediction wrote the id and nothing else
    with pytest.raises(CorpusError, match=r"pred.jsonl record b: predicted record 'b' has an empty text but the "
                                          r"gold text has 20 characters.*--allow-missing") as info:
        score(gold, pred, pred_where="pred.jsonl")
    assert "\n" not in str(info.value)
    with caplog.at_level("WARNING"):
        result = score(gold, pred, on_missing="empty")
    assert prf(result["micro"]) == approx(1, 1 / 2, 2 / 3)
    assert any("1 of 2 gold records have no prediction" in r.getMessage() and "1 with an empty text" in r.getMessage()
               for r in caplog.records)
    both_empty = score([rec("a", "")], [rec("a", "")])  # an empty gold text: nothing to predict, nothing missing
    assert both_empty["records"] == 1


def test_an_exact_duplicate_span_is_counted_once_and_called_a_duplicate(caplog):
    gold = [rec("a", TEXT, (0, 2, "A"), (5, 9, "B"))]
    pred = [rec("a", TEXT, (0, 2, "A"), (0, 2, "A"), (5, 9, "B"))]
    with caplog.at_level("INFO"):
        result = score(gold, pred)
    assert prf(result["micro"]) == approx(1, 1, 1) and prf(result["span"]["micro"]) == approx(1, 1, 1)
    assert (result["pred_overlaps_resolved"], result["pred_duplicates"], result["gold_duplicates"]) == (0, 1, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("overlapping" in m for m in messages)
    assert any("1 exact duplicate predicted span" in m for m in messages)
    doubled_gold = score([rec("a", TEXT, (0, 2, "A"), (0, 2, "A"))], [rec("a", TEXT, (0, 2, "A"))])
    assert doubled_gold["gold_duplicates"] == 1 and doubled_gold["overlaps_resolved"] == 0
    assert doubled_gold["micro"]["support"] == 1 and doubled_gold["micro"]["f1"] == 1.0


def test_an_empty_gold_span_asks_to_correct_the_gold_file():
    with pytest.raises(CorpusError) as info:
        score([rec("a", TEXT, (3, 3, "A"))], [rec("a", TEXT)], gold_where="gold.jsonl")
    assert "gold.jsonl record a" in str(info.value) and "predict on the same texts" not in str(info.value)
    assert "Fix: correct or remove this span in the gold file" in str(info.value)


def test_unknown_missing_policy():
    with pytest.raises(ValueError, match="raise, empty"):
        score([], [], on_missing="skip")


# ------------------------------------------------------------------ property: both views agree


@st.composite
def flat_records(draw, rid):
    length = draw(st.integers(0, 30))
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=10)))
    spans = tuple(Span(a, b, draw(st.sampled_from("ABC"))) for a, b in zip(cuts, cuts[1:]) if draw(st.booleans()))
    return Record(rid, "z" * length, spans)


@st.composite
def gold_and_pred(draw):
    gold, pred = [], []
    for i in range(draw(st.integers(1, 4))):
        g = draw(flat_records(str(i)))
        p = draw(flat_records(str(i)))
        # predictions on the same text: perturb p's spans into g's length
        spans = tuple(s for s in p.spans if s.end <= len(g.text))
        if draw(st.booleans()):  # mix in some exact hits
            spans = tuple(sorted(set(spans) | set(g.spans[: draw(st.integers(0, len(g.spans)))])))
            spans = tuple(_flat(spans))
        gold.append(g)
        pred.append(Record(g.id, g.text, spans))
    return gold, pred


def _flat(spans):
    out, end = [], -1
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        if s.start >= end:
            out.append(s)
            end = s.end
    return out


@settings(max_examples=200, deadline=None, derandomize=True)
@given(gold_and_pred())
def test_char_span_scores_equal_seqeval_strict_on_flat_data(data):
    gold, pred = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score(gold, pred, check_labels=False)  # random labels: the sets may not meet
    span = result["span"]
    assert result["overlaps_resolved"] == 0 and result["pred_overlaps_resolved"] == 0
    assert result["micro"] == pytest.approx(span["micro"])
    assert result["macro"] == pytest.approx(span["macro"])
    assert result["per_type"].keys() == span["per_type"].keys()
    for name in span["per_type"]:
        assert result["per_type"][name] == pytest.approx(span["per_type"][name])


# ------------------------------------------------------------------ reports


def _fixture_like_result():
    gold = [rec("a", TEXT, (0, 2, "疾病和诊断"), (3, 5, "疾病和诊断"), (6, 8, "药物"), (10, 12, "B"))]
    pred = [rec("a", TEXT, (0, 2, "疾病和诊断"), (3, 5, "药物"), (6, 8, "药物"))]
    return score(gold, pred)


def test_format_table_rows_percentages_and_alignment():
    from medner.evaluate import _width

    result = _fixture_like_result()
    table = format_table(result)
    lines = table.splitlines()
    rows = {line.split()[0]: line for line in lines[2:] if not line.startswith("-")}
    assert list(rows) == ["B", "疾病和诊断", "药物", "micro", "macro"]
    # 疾病和诊断: 1 of 1 predicted, 1 of 2 gold
    assert rows["疾病和诊断"].split()[1:5] == ["100.00", "50.00", "66.67", "2"]
    assert rows["micro"].split()[1:5] == ["66.67", "50.00", "57.14", "4"]
    widths = {_width(line) for line in lines[1:] if not line.startswith("-")}
    assert len(widths) == 1  # columns line up even with double-width type names


def test_to_markdown_has_a_row_per_type_and_averages():
    markdown = to_markdown(_fixture_like_result())
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| type | P | R | F1 | support | span P")
    assert len(lines) == 2 + 3 + 2
    assert lines[-2].startswith("| **micro** | 66.67 | 50.00 | 57.14 | 4 |")


def test_write_report_prefix_and_directory(tmp_path):
    result = _fixture_like_result()
    json_path, md_path = write_report(result, tmp_path / "out" / "dev")
    assert (json_path.name, md_path.name) == ("dev.json", "dev.md")
    assert json.loads(json_path.read_text(encoding="utf-8")) == result
    assert md_path.read_text(encoding="utf-8") == to_markdown(result)
    json_path, md_path = write_report(result, tmp_path)
    assert json_path == tmp_path / "evaluation.json" and md_path.exists()


# ------------------------------------------------------------------ CLI (reads through medner.corpus)


def _cli(*argv):
    from medner.cli import main

    return main(["evaluate", *map(str, argv)])


def test_cli_refuses_reports_or_errors_over_the_files_it_reads(tmp_path, capsys):
    import shutil

    gold, pred = tmp_path / "g.json", tmp_path / "pred.jsonl"
    shutil.copy(DATA / "gold.jsonl", gold)
    shutil.copy(DATA / "pred.jsonl", pred)
    before = gold.read_bytes(), pred.read_bytes()
    for extra in (["-o", tmp_path / "g"], ["--errors", gold], ["--errors", pred]):
        assert _cli("--gold", gold, "--pred", pred, "--gold-format", "jsonl", *extra) == 2, extra
        assert "writing it would replace what was read" in capsys.readouterr().err
    assert (gold.read_bytes(), pred.read_bytes()) == before
    assert _cli("--gold", gold, "--gold-format", "jsonl", "--compare", pred, pred, "-o", tmp_path / "g") == 2
    assert pred.read_bytes() == before[1] and sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "pred.jsonl"]


def test_cli_refuses_to_score_against_a_gold_without_spans(tmp_path, capsys):
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n" for r in
                                  map(json.loads, (DATA / "gold.jsonl").read_text(encoding="utf-8").splitlines())),
                          encoding="utf-8")
    assert _cli("--gold", unlabelled, "--pred", DATA / "pred.jsonl") == 2
    assert "the gold has no span to score against" in capsys.readouterr().err
    assert _cli("--gold", unlabelled, "--compare", DATA / "pred.jsonl", DATA / "pred.jsonl") == 2  # no traceback
    assert "the gold has no span" in capsys.readouterr().err


def test_cli_json_output(capsys):
    assert _cli("--gold", DATA / "gold.jsonl", "--pred", DATA / "pred.jsonl", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("micro", "macro", "per_type"):
        assert key in result
    _check_fixture_result(result)


def test_cli_table_and_report_files(capsys, tmp_path):
    prefix = tmp_path / "reports" / "dev"
    assert _cli("--gold", DATA / "gold.jsonl", "--pred", DATA / "pred.jsonl", "--gold-format", "jsonl",
                "--pred-format", "jsonl", "-o", prefix) == 0
    out = capsys.readouterr().out
    assert "micro" in out and "60.00" in out and "61.11" in out  # micro F1 3/5, macro F1 11/18
    _check_fixture_result(json.loads((tmp_path / "reports" / "dev.json").read_text(encoding="utf-8")))
    assert "| **macro** |" in (tmp_path / "reports" / "dev.md").read_text(encoding="utf-8")


def test_cli_missing_prediction_is_a_one_line_error(capsys):
    assert _cli("--gold", DATA / "gold.jsonl", "--pred", DATA / "pred_missing.jsonl") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error: ") and "\n" not in err
    assert "gold.jsonl record r3" in err and "--allow-missing" in err


def test_cli_allow_missing(capsys):
    assert _cli("--gold", DATA / "gold.jsonl", "--pred", DATA / "pred_missing.jsonl", "--allow-missing",
                "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["micro"]["recall"] == pytest.approx(3 / 5) and result["micro"]["precision"] == pytest.approx(3 / 4)


def test_cli_empty_predicted_text_is_missing_unless_allowed(capsys, tmp_path):
    lines = (DATA / "pred.jsonl").read_text(encoding="utf-8").splitlines()
    emptied = [json.dumps({"id": json.loads(line)["id"], "text": "", "spans": []}) if i == 2 else line
               for i, line in enumerate(lines)]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(emptied) + "\n", encoding="utf-8")
    assert _cli("--gold", DATA / "gold.jsonl", "--pred", pred) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "empty text" in err and "--allow-missing" in err
    assert _cli("--gold", DATA / "gold.jsonl", "--pred", pred, "--allow-missing", "--json") == 0


@pytest.mark.parametrize("side", ["gold", "pred"])
def test_cli_malformed_span_error_offers_a_fix_evaluate_has(capsys, tmp_path, side):
    """evaluate scores every span and has no --on-error: the error must not send the user to it."""
    bad = tmp_path / f"{side}.jsonl"
    bad.write_text(json.dumps({"id": "r1", "text": "患者头痛三天，诊断为偏头痛。",
                               "spans": [{"start": 4, "end": 4, "label": "x"}]}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    args = {"gold": DATA / "gold.jsonl", "pred": DATA / "pred.jsonl", side: bad}
    assert _cli("--gold", args["gold"], "--pred", args["pred"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{side}.jsonl:1 span 0" in err and "expected start < end" in err
    assert "read with on_error=skip" not in err
    assert f"medner corpus convert {bad} " in err and "--on-error skip" in err  # the command that has it
    assert "--format jsonl" in err and "--format auto" not in err  # --pred-format auto: convert has no `auto`
    assert _cli("--gold", args["gold"], "--pred", args["pred"], f"--{side}-format", "annotate") == 2
    err = capsys.readouterr().err.strip()
    assert "corpus convert" not in err and "point at the --out folder of a finished `medner annotate` run" in err
    from medner.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--gold", "g", "--pred", "p", "--on-error", "skip"])


# ------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_ccks2019_gold_against_itself_and_against_nothing():
    from medner.corpus import read_corpus

    path = shared_data() / "corpora" / "ccks2019_yidu" / "subtask1_training_part1.txt"
    gold = list(read_corpus(path, format="ccks2019"))
    result = score(gold, gold)
    assert result["records"] == 400 and result["micro"]["support"] == 7342  # SOURCES.md: 400 EMRs, 7,342 entities
    assert prf(result["micro"]) == approx(1, 1, 1) and prf(result["span"]["macro"]) == approx(1, 1, 1)
    empty = score(gold, [Record(r.id, r.text) for r in gold])
    assert prf(empty["micro"]) == approx(0, 0, 0)
