"""The resumable runner with a fake engine (no model): exactly-once output, crash at every commit step,
resume, refusal of changed inputs/options, errors.jsonl, manifest, Parquet, model failures on a record."""
from __future__ import annotations

import json
import logging
import re
import os
import zipfile
from pathlib import Path

import pytest
from batch_fakes import Crash
from batch_fakes import FakeEngine as _Engine

from medner.batch import shards as shards_mod
from medner.batch.engine import predict_texts
from medner.batch.items import ReadOptions
from medner.batch.ledger import Ledger, OutputLock, ledger_line
from medner.batch.runner import AnnotateOptions, annotate
from medner.batch.sources import iter_items
from medner.errors import ConfigError, CorpusError, ModelError
from medner.types import Span

DATA = Path(__file__).parent / "data" / "batch"


class FakeEngine(_Engine):
    def __init__(self) -> None:
        super().__init__(fake_spans)


def fake_spans(text: str) -> list[Span]:
    """A disease span on every "X癌" (a deterministic stand-in for the model)."""
    return [Span(i - 1, i + 1, "疾病和诊断", score=0.5 + (i % 7) / 100) for i, ch in enumerate(text) if ch == "癌" and i]


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    """Records with failures in between: the fixture notes, JSONL (custom fields) and a zip of JSONL + txt."""
    rows = "".join(json.dumps({"doc": f"z{i}", "body": f"第{i}次就诊，因肝癌入院。" if i % 5 else " "},
                              ensure_ascii=False) + "\n" for i in range(23))
    with zipfile.ZipFile(tmp_path / "batch.zip", "w") as zf:
        zf.writestr("rows.jsonl", rows)
        zf.writestr("../escape.txt", "x")
        zf.writestr("note.txt", "因胃癌入院。".encode("gbk"))
    return [DATA / "notes", DATA / "records.jsonl", tmp_path / "batch.zip"]


def options(model, inputs, out, **kw) -> AnnotateOptions:
    read = ReadOptions(id_field="doc", text_field="body")
    return AnnotateOptions(model=model, inputs=inputs, out=out, read=read, progress=False, **{"shard_size": 4, **kw})


def output_lines(out: Path) -> list[str]:
    lines = []
    for path in sorted((out / "shards").glob("part-*.jsonl")):
        lines += path.read_text(encoding="utf-8").splitlines()
    return lines


def snapshot(out: Path) -> tuple[list[str], str]:
    return sorted(output_lines(out)), (out / "errors.jsonl").read_text(encoding="utf-8")


def test_every_item_exactly_once_with_valid_spans(fake_model, inputs, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="medner"):
        manifest = annotate(options(fake_model, inputs, out), engine=FakeEngine())
    (skipped,) = [r.getMessage() for r in caplog.records if "were not read" in r.getMessage()]
    assert skipped.startswith("1 file(s) in folders or archives") and "README.md" in skipped
    expected = list(iter_items(inputs, ReadOptions(id_field="doc", text_field="body")))
    rows = [json.loads(line) for line in output_lines(out)]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    keys = [r["key"] for r in rows] + [e["key"] for e in errors]
    assert sorted(keys) == sorted(i.key for i in expected) and len(set(keys)) == len(keys)
    texts = {i.key: i.text for i in expected}
    for row in rows:
        assert row["model"] == "fake0001"
        assert [s["text"] for s in row["spans"]] == [texts[row["key"]][s["start"]:s["end"]] for s in row["spans"]]
        assert all(set(s) == {"start", "end", "label", "text", "score", "code", "name", "match", "link_score"}
                   for s in row["spans"])
    assert any(row["spans"] for row in rows)
    assert [e["key"] for e in errors] == [i.key for i in expected if not i.ok]  # in input order
    n_bad = sum(not i.ok for i in expected)
    assert manifest["counts"]["read"] == len(expected)
    assert manifest["counts"]["failed"] == n_bad and manifest["counts"]["annotated"] == len(expected) - n_bad
    assert manifest["counts"]["failed_by_reason"]["unsafe_path"] == 1
    assert manifest["shards"]["count"] == -(-len(expected) // 4)
    assert manifest["read_stats"]["skipped_files"] == 1  # notes/README.md
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["counts"] == manifest["counts"]
    zipped = next(r for r in rows if r["id"] == "z1")
    assert zipped["source"] == {"path": str(inputs[2]), "member": "rows.jsonl", "line": 2, "row": None}
    # no record text in errors
    assert not any("入院" in line for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines())


def test_manifest_and_errors_rebuilt_from_the_ledger(fake_model, inputs, tmp_path):
    out = tmp_path / "out"
    manifest = annotate(options(fake_model, inputs, out), engine=FakeEngine())
    errors = (out / "errors.jsonl").read_bytes()
    (out / "errors.jsonl").unlink()
    (out / "manifest.json").unlink()
    rebuilt = shards_mod.rebuild(out)
    assert (out / "errors.jsonl").read_bytes() == errors
    assert rebuilt["counts"] == manifest["counts"] and rebuilt["read_stats"] == manifest["read_stats"]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["shards"] == manifest["shards"]


def test_empty_input_and_duplicate_input(fake_model, tmp_path):
    (tmp_path / "empty").mkdir()
    manifest = annotate(options(fake_model, [tmp_path / "empty"], tmp_path / "out"), engine=FakeEngine())
    assert manifest["counts"]["read"] == 0 and (tmp_path / "out" / "errors.jsonl").read_bytes() == b""
    with pytest.raises(CorpusError, match="input given twice"):
        annotate(options(fake_model, [DATA / "notes", DATA / "notes"], tmp_path / "o2"), engine=FakeEngine())


def test_rerun_of_finished_output_annotates_nothing(fake_model, inputs, tmp_path):
    out = tmp_path / "out"
    annotate(options(fake_model, inputs, out), engine=FakeEngine())
    before = snapshot(out)
    engine = FakeEngine()
    manifest = annotate(options(fake_model, inputs, out), engine=engine)
    assert engine.calls == [] and snapshot(out) == before
    assert manifest["timings"]["sessions"] == 2 and manifest["resumed_shards"] == manifest["shards"]["count"]


def _crash_on_replace(monkeypatch, needle: str):
    real = os.replace

    def replace(src, dst, *a, **kw):
        if needle in str(dst):
            raise Crash(f"replace {dst}")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)


def _crash_in_write(monkeypatch, needle: str):
    """The process dies half-way through writing a shard file: half its bytes in ``<name>.tmp<pid>``."""
    real = shards_mod.atomic_write_bytes

    def write(path, data):
        tmp = Path(path).with_name(f"{Path(path).name}.tmp{os.getpid()}")
        if needle in tmp.as_posix():
            tmp.write_bytes(data[: len(data) // 2])
            raise Crash(f"write {tmp}")
        return real(path, data)

    monkeypatch.setattr(shards_mod, "atomic_write_bytes", write)


def _crash_before_ledger(monkeypatch, shard: int, torn: bool):
    real = Ledger.append

    def append(self, event):
        if event.get("event") == "shard" and event["shard"] == shard:
            if torn:  # half a line reaches the disk
                with open(self.path, "ab") as fh:
                    fh.write(json.dumps(event).encode()[:25])
            raise Crash(f"ledger {shard}")
        return real(self, event)

    monkeypatch.setattr(Ledger, "append", append)


@pytest.mark.parametrize("step", ["data_write", "errors_write", "errors_rename", "data_rename", "ledger",
                                  "torn_ledger", "errors_merge", "manifest"])
def test_crash_at_each_commit_step_then_resume(fake_model, inputs, tmp_path, monkeypatch, step):
    ref = tmp_path / "ref"
    annotate(options(fake_model, inputs, ref), engine=FakeEngine())
    out = tmp_path / "out"
    # shard 1 holds records and errors (notes e, f, g_undecodable, h_empty with shard_size 4)
    with monkeypatch.context() as patch:
        if step == "data_write":
            _crash_in_write(patch, "shards/part-000001.jsonl.tmp")
        elif step == "errors_write":
            _crash_in_write(patch, "errors/part-000001.jsonl.tmp")
        elif step == "errors_rename":
            _crash_on_replace(patch, "errors/part-000001")
        elif step == "data_rename":
            _crash_on_replace(patch, "shards/part-000001")
        elif step == "ledger":
            _crash_before_ledger(patch, 1, torn=False)
        elif step == "torn_ledger":
            _crash_before_ledger(patch, 1, torn=True)
        elif step == "errors_merge":
            _crash_on_replace(patch, "errors.jsonl")
        elif step == "manifest":
            _crash_on_replace(patch, "manifest.json")
        with pytest.raises(Crash):
            annotate(options(fake_model, inputs, out), engine=FakeEngine())
    engine = FakeEngine()
    annotate(options(fake_model, inputs, out), engine=engine)
    assert snapshot(out) == snapshot(ref)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    if step in ("errors_merge", "manifest"):
        assert engine.calls == []  # all shards were already complete
    else:
        assert engine.calls and min(engine.calls) == 1  # shard 0 was kept, shard 1 redone


def test_changed_options_or_inputs_are_refused(fake_model, inputs, tmp_path):
    out = tmp_path / "out"
    annotate(options(fake_model, inputs, out), engine=FakeEngine())
    with pytest.raises(ConfigError, match=r"different `shard_size`.*new --out"):
        annotate(options(fake_model, inputs, out, shard_size=5), engine=FakeEngine())
    with pytest.raises(ConfigError, match=r"different `format`"):
        annotate(options(fake_model, inputs, out, output_format="parquet"), engine=FakeEngine())
    meta = fake_model / "medner_model.json"
    original = meta.read_text()
    meta.write_text(json.dumps({"format_version": 1, "fingerprint": "other"}))
    with pytest.raises(ConfigError, match=r"different `model`"):
        annotate(options(fake_model, inputs, out), engine=FakeEngine())
    meta.write_text(original)
    with zipfile.ZipFile(inputs[2], "a") as zf:
        zf.writestr("more.txt", "新增记录。")
    with pytest.raises(ConfigError, match=rf"input {re.escape(str(inputs[2]))} changed since this output folder "
                                          r"was started.*touching a file counts"):
        annotate(options(fake_model, inputs, out), engine=FakeEngine())


def test_shard_content_check_on_resume(fake_model, inputs, tmp_path):
    out = tmp_path / "out"
    annotate(options(fake_model, inputs, out), engine=FakeEngine())
    ledger_path = out / "ledger.jsonl"
    lines = ledger_path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        event = json.loads(line)
        if event.get("event") == "shard" and event.get("shard") == 2:  # as if the inputs had changed
            event.pop("crc")
            event["keys"] = "0" * 16
            lines[n] = ledger_line(event).decode("utf-8").rstrip("\n")
    ledger_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="shard 2 now holds other records"):
        annotate(options(fake_model, inputs, out), engine=FakeEngine())


def test_one_run_per_output_folder(fake_model, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        with pytest.raises(ConfigError, match="another `medner annotate`"):
            annotate(options(fake_model, inputs, out), engine=FakeEngine())


def test_parquet_output_matches_jsonl(fake_model, inputs, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    annotate(options(fake_model, inputs, tmp_path / "j"), engine=FakeEngine())
    annotate(options(fake_model, inputs, tmp_path / "p", output_format="parquet"), engine=FakeEngine())
    rows = []
    for path in sorted((tmp_path / "p" / "shards").glob("part-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    assert [json.loads(line) for line in output_lines(tmp_path / "j")] == rows
    assert (tmp_path / "p" / "errors.jsonl").read_bytes() == (tmp_path / "j" / "errors.jsonl").read_bytes()


def test_bad_model_dir_and_options(tmp_path, inputs):
    with pytest.raises(ModelError, match=r"not a medner run directory.*--model"):
        annotate(options(tmp_path, inputs, tmp_path / "out"), engine=FakeEngine())
    with pytest.raises(ConfigError, match="`shard_size` must be >= 1.*Fix: give --shard-size"):
        options(tmp_path, inputs, tmp_path / "out", shard_size=0)
    with pytest.raises(ConfigError, match="`workers` must be >= 1"):  # before threads are shared among them
        options(tmp_path, inputs, tmp_path / "out", workers=0)
    with pytest.raises(ConfigError, match="unknown engine"):
        options(tmp_path, inputs, tmp_path / "out", engine="spark")


class FlakyAnnotator:
    """Raises on any call that contains the poisoned text."""

    def predict(self, texts):
        if any("POISON" in t for t in texts):
            raise RuntimeError("boom")
        return [fake_spans(t) for t in texts]


def test_model_failure_on_one_record_is_isolated(fake_model, tmp_path, monkeypatch):
    texts = ["因胃癌入院。", "POISON 肝癌", "因肺癌入院。", "无异常。"]
    got = predict_texts(FlakyAnnotator(), texts, batch_records=3)
    assert got[1] == "RuntimeError" and got[0] == fake_spans(texts[0]) and got[2] == fake_spans(texts[2])
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")

    class Engine(FakeEngine):
        def run(self, shards):
            for shard in shards:
                yield shard, predict_texts(FlakyAnnotator(), shard.texts, 64), 0.0

    out = tmp_path / "out"
    manifest = annotate(AnnotateOptions(model=fake_model, inputs=[path], out=out, progress=False), engine=Engine())
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["id"], e["reason"]) for e in errors] == [("r1", "model_error")]
    assert "RuntimeError" in errors[0]["detail"] and "POISON" not in errors[0]["detail"]
    assert manifest["counts"] == {**manifest["counts"], "annotated": 3, "failed": 1}


def test_torn_ledger_line_is_repaired(tmp_path):
    sig = {"model": "m", "shard_size": 2}
    ledger = Ledger.open(tmp_path, sig)
    ledger.append({"event": "shard", "shard": 0, "items": 2, "records": 2, "errors": 0, "keys": "k", "file": "f"})
    with open(ledger.path, "ab") as fh:
        fh.write(b'{"event": "shard", "sha')
    again = Ledger.open(tmp_path, sig)
    assert list(again.shards) == [0]
    again.append({"event": "shard", "shard": 1, "items": 2, "records": 2, "errors": 0, "keys": "k", "file": "f"})
    assert list(Ledger.open(tmp_path, sig).shards) == [0, 1]
    assert ledger.path.read_bytes().endswith(b"\n")
