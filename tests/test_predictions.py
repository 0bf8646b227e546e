"""`medner annotate` output as a prediction file: a folder (every shard its manifest lists) or one shard file (.jsonl,
.parquet), paired with gold by id, the text checked through the text, its hash or the spans' mentions."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from medner.batch import shards as shards_mod
from medner.batch.items import ReadOptions
from medner.batch.ledger import LEDGER_FILE
from medner.batch.runner import AnnotateOptions, annotate
from medner.cli import main
from medner.corpus import read_corpus, write_jsonl
from medner.corpus import predictions as pr
from medner.errors import CorpusError
from medner.evaluate import read_for_scoring, score
from medner.types import Record, Span

TEXTS = ["因肝癌入院。", "胃癌术后复查，无不适。", "无发热。", "既往肺癌病史，予化疗。", "直肠癌。", "血压平稳。", "乳腺癌随访。"]


def fake_spans(text: str) -> list[Span]:
    """A disease span on every "X癌" (a deterministic stand-in for the model)."""
    return [Span(i - 1, i + 1, "疾病和诊断", score=0.9) for i, ch in enumerate(text) if ch == "癌" and i]


class FakeEngine:
    name = "fake"

    def run(self, shards):
        for shard in shards:
            yield shard, [fake_spans(t) for t in shard.texts], 0.001


@pytest.fixture
def gold(tmp_path) -> Path:
    """Gold records: the fake model's spans, except r0 (a longer gold span: one boundary error)."""
    records = [Record(f"r{i}", t, tuple(fake_spans(t))) for i, t in enumerate(TEXTS)]
    records[0] = records[0].with_spans([Span(1, 3, "疾病和诊断"), Span(3, 5, "手术")])  # 肝癌 (right), 入院 (missed)
    write_jsonl(records, tmp_path / "gold.jsonl")
    return tmp_path / "gold.jsonl"


def annotate_output(gold: Path, out: Path, fmt: str = "jsonl") -> Path:
    model = out.parent / "model"
    model.mkdir(exist_ok=True)
    (model / "medner_model.json").write_text(json.dumps({"format_version": 1, "fingerprint": "fake0001"}))
    annotate(AnnotateOptions(model=model, inputs=[gold], out=out, read=ReadOptions(), progress=False, shard_size=3,
                             output_format=fmt), engine=FakeEngine())
    return out


@pytest.fixture
def out(gold, tmp_path) -> Path:
    return annotate_output(gold, tmp_path / "out")


def expected(gold: Path) -> dict:
    records = list(read_corpus(gold))
    return score(records, [r.with_spans(fake_spans(r.text)) for r in records])


def test_the_reader_knows_the_writer_s_names():
    assert (pr.MANIFEST_FILE, pr.SHARDS_DIR, pr.ERRORS_FILE) == (shards_mod.MANIFEST_FILE, shards_mod.SHARDS_DIR,
                                                                 shards_mod.ERRORS_FILE)
    assert pr.LEDGER_FILE == LEDGER_FILE
    assert pr.text_sha256("胃癌") == hashlib.sha256("胃癌".encode("utf-8")).hexdigest()


def test_a_folder_a_shards_folder_and_a_shard_file(gold, out):
    assert pr.is_annotate_output(out) and pr.is_annotate_output(out / "shards")
    shard = out / "shards" / "part-000000.jsonl"
    assert pr.is_annotate_output(shard) and not pr.is_annotate_output(gold)
    records = list(pr.read_predictions(out))
    assert [r.id for r in records] == [f"r{i}" for i in range(len(TEXTS))]  # every shard, in order
    assert records[1].text == "" and records[1].meta["text_absent"] and records[1].meta["source"]["line"] == 2
    assert records[1].meta["mentions"] == ((0, 2, "胃癌"),) and records[1].spans[0].score == 0.9
    assert [r.id for r in pr.read_predictions(out / "shards")] == [r.id for r in records]
    assert [r.id for r in pr.read_predictions(shard)] == ["r0", "r1", "r2"]
    assert [r.id for r in pr.read_predictions(gold)] == [r.id for r in records]  # the project's jsonl, as before


def test_evaluate_scores_an_annotate_folder_and_a_shard(gold, out, capsys):
    """Was: 'unknown key key'."""
    assert main(["evaluate", "--gold", str(gold), "--pred", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    want = expected(gold)
    assert result["micro"] == want["micro"] and result["span"] == want["span"]
    assert result["micro"]["recall"] == pytest.approx(5 / 6) and result["micro"]["precision"] == 1.0
    shard = out / "shards" / "part-000001.jsonl"
    assert main(["evaluate", "--gold", str(gold), "--pred", str(shard)]) == 2  # the other shards' records missing
    assert "--allow-missing" in capsys.readouterr().err
    assert main(["evaluate", "--gold", str(gold), "--pred", str(shard), "--allow-missing", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == len(TEXTS)


def test_parquet_output_scores_the_same(gold, tmp_path):
    out = annotate_output(gold, tmp_path / "pq", fmt="parquet")
    records = list(read_corpus(gold))
    assert score(records, pr.read_predictions(out)) == expected(gold)
    shard = out / "shards" / "part-000000.parquet"
    assert [r.id for r in pr.read_predictions(shard)] == ["r0", "r1", "r2"]


def test_a_record_without_spans_is_a_prediction_of_nothing_not_a_missing_one(gold, out):
    records = list(read_corpus(gold))
    predicted = {r.id: r for r in pr.read_predictions(out)}
    assert predicted["r2"].spans == () and predicted["r2"].text == ""
    assert score(records, predicted.values())["records"] == len(TEXTS)  # no "empty text" error


def rewrite_rows(out: Path, change) -> None:
    for path in (out / "shards").glob("part-*.jsonl"):
        rows = [change(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _without_text_or_hash(row: dict) -> dict:
    """A row as an annotate output written before rows carried a text hash."""
    return {k: v for k, v in row.items() if k not in (pr.TEXT_HASH_FIELD, "text")}


def test_annotate_rows_carry_the_text_hash(gold, out):
    texts = {r.id: r.text for r in read_corpus(gold)}
    rows = [json.loads(line) for path in sorted((out / "shards").glob("part-*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows and all(row[pr.TEXT_HASH_FIELD] == pr.text_sha256(texts[row["id"]]) and row["text"] is None
                        for row in rows)


def test_the_text_check_applies_through_mentions_hash_or_text(gold, out, tmp_path, caplog):
    rewrite_rows(out, _without_text_or_hash)
    records = list(read_corpus(gold))
    changed = [r if r.id != "r3" else Record(r.id, r.text.replace("肺", "胃"), r.spans) for r in records]
    with caplog.at_level(logging.INFO, logger="medner.corpus.predictions"):
        with pytest.raises(CorpusError) as err:  # rows without text or hash: the spans' mentions are checked
            score(changed, pr.read_predictions(out))
    message = str(err.value)
    assert "record r3" in message and "mention" in message and "胃" not in message and "肺" not in message
    texts = {r.id: r.text for r in records}

    def with_hash(row):
        return {**row, pr.TEXT_HASH_FIELD: pr.text_sha256(texts[row["id"]])}

    rewrite_rows(out, with_hash)
    assert score(records, pr.read_predictions(out)) == expected(gold)
    changed = [r if r.id != "r2" else Record(r.id, r.text + "。", r.spans) for r in records]  # r2 has no span
    with pytest.raises(CorpusError, match="r2.*text hash differs"):
        score(changed, pr.read_predictions(out))
    rewrite_rows(out, lambda row: {**row, "text": texts[row["id"]]})  # --with-text
    assert score(records, pr.read_predictions(out)) == expected(gold)
    with pytest.raises(CorpusError, match="r2.*predicted text differs"):
        score(changed, pr.read_predictions(out))


def test_rows_without_text_or_hash_say_so_once(gold, out, caplog):
    rewrite_rows(out, _without_text_or_hash)
    with caplog.at_level(logging.INFO, logger="medner.corpus.predictions"):
        list(pr.read_predictions(out))
    lines = [r.getMessage() for r in caplog.records if pr.TEXT_HASH_FIELD in r.getMessage()]
    assert len(lines) == 1 and f"7 of 7 rows carry neither the text nor {pr.TEXT_HASH_FIELD}" in lines[0]


def test_unfinished_or_damaged_output_is_a_one_line_error(gold, out, tmp_path, caplog):
    (out / "manifest.json").rename(tmp_path / "manifest.json")
    with pytest.raises(CorpusError, match="has not finished.*run the same `medner annotate` command again"):
        list(pr.read_predictions(out))
    (tmp_path / "manifest.json").rename(out / "manifest.json")
    shard = out / "shards" / "part-000001.jsonl"
    lines = shard.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["spans"] = [{"start": 5, "end": 2, "label": "x", "text": "胃癌"}]
    shard.write_text("\n".join([json.dumps(row, ensure_ascii=False), lines[1][:20]]) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        list(pr.read_predictions(shard))
    assert f"{shard}:1" in str(err.value) and "spans[0]" in str(err.value) and "胃癌" not in str(err.value)
    shard.write_text(lines[1][:20] + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"part-000001.jsonl:1: invalid JSON"):
        list(pr.read_predictions(out))
    with pytest.raises(CorpusError, match="not a `medner annotate` output folder"):
        list(pr.read_annotate_output(tmp_path))


def test_failed_records_are_named_as_the_reason_they_have_no_prediction(gold, tmp_path, caplog):
    lines = gold.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:2] + ['{"id": "r2", "text": "   "}'] + lines[3:]) + "\n", encoding="utf-8")
    out = annotate_output(broken, tmp_path / "out2")
    with caplog.at_level(logging.WARNING):
        with pytest.raises(CorpusError, match="gold record id 'r2' has no prediction"):
            score(read_corpus(gold), read_for_scoring(out, "auto"))
    assert any("could not read or annotate 1 record(s)" in r.getMessage() and "errors.jsonl" in r.getMessage()
               for r in caplog.records)


def test_render_can_ask_for_the_text(gold, out):
    """`medner render --gold` draws the text: annotate output without it is a clear error, with it fine."""
    with pytest.raises(CorpusError, match="holds no text.*--with-text"):
        list(pr.read_predictions(out, require_text=True))
    texts = {r.id: r.text for r in read_corpus(gold)}
    rewrite_rows(out, lambda row: {**row, "text": texts[row["id"]]})
    records = list(pr.read_predictions(out, require_text=True))
    assert [r.text for r in records] == list(texts.values()) and records[1].spans[0].mention(records[1].text) == "胃癌"
    assert list(pr.read_predictions(gold, require_text=True))  # a corpus file always has its text


def test_annotate_output_read_as_jsonl_says_how_to_read_it(gold, out, capsys):
    shard = out / "shards" / "part-000000.jsonl"
    assert main(["evaluate", "--gold", str(gold), "--pred", str(shard), "--pred-format", "jsonl"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown key" in err and "`medner annotate` output" in err and "--pred-format auto" in err
