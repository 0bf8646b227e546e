"""The batch annotator with the tiny trained run: CLI end to end, a 100k-character record, worker processes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medner.batch.runner import AnnotateOptions, annotate
from medner.batch.items import ReadOptions
from medner.batch.sources import iter_items
from medner.cli import main
from medner.types import Span

DATA = Path(__file__).parent / "data" / "batch"


def read_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "shards").glob("part-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def sorted_lines(out: Path) -> list[str]:
    lines = []
    for path in (out / "shards").glob("part-*.jsonl"):
        lines += path.read_text(encoding="utf-8").splitlines()
    return sorted(lines)


def test_cli_end_to_end_matches_annotator(tiny_run, tmp_path, capsys):
    import medner

    out = tmp_path / "out"
    rc = main(["annotate", "--model", str(tiny_run), str(DATA / "notes"), str(DATA / "records.jsonl"),
               "--id-field", "doc", "--text-field", "body", "--out", str(out), "--shard-size", "5",
               "--threads", "1", "--no-progress"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    items = list(iter_items([DATA / "notes", DATA / "records.jsonl"], ReadOptions(id_field="doc", text_field="body")))
    ok = [i for i in items if i.ok]
    assert len(ok) < len(items) and rc == 3  # the inputs hold unreadable records: finished, status 3
    again = main(["annotate", "--model", str(tiny_run), str(DATA / "notes"), str(DATA / "records.jsonl"),
                  "--id-field", "doc", "--text-field", "body", "--out", str(out), "--shard-size", "5",
                  "--threads", "1", "--no-progress", "--allow-failures"])
    assert again == 0  # the same output, resumed (nothing left to do); failures allowed
    capsys.readouterr()
    assert summary["read"] == len(items) and summary["annotated"] == len(ok)
    rows = read_rows(out)
    assert [r["key"] for r in rows] == [i.key for i in ok]
    annotator = medner.load(tiny_run, device="cpu")
    assert {r["model"] for r in rows} == {annotator.fingerprint}
    for item, row in zip(ok, rows):
        expected = annotator.predict(item.text)
        got = [(s["start"], s["end"], s["label"]) for s in row["spans"]]
        assert got == [(s.start, s.end, s.label) for s in expected]
        for span in row["spans"]:
            assert span["text"] == item.text[span["start"]:span["end"]] and 0 <= span["score"] <= 1
    assert sum(len(r["spans"]) for r in rows) > 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["failed"] == len(items) - len(ok)


def test_cli_errors_are_one_line(tiny_run, tmp_path, capsys):
    rc = main(["annotate", "--model", str(tmp_path), str(DATA / "notes"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("medner: error:") and "\n" not in err and "--model" in err
    rc = main(["annotate", "--model", str(tiny_run), str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope.jsonl: no such file or folder" in err and "\n" not in err


def test_lexicon_fills_icd_codes_and_bf16_precision(tiny_run, tmp_path):
    from medner.lexicon.entry import LexiconEntry
    from medner.lexicon.store import write_lexicon

    lexicon = tmp_path / "lexicon.tsv"
    write_lexicon([LexiconEntry("胃癌", "疾病和诊断", "C16.900", source="test"),
                   LexiconEntry("高血压", "疾病和诊断", "I10.x00", source="test")], lexicon)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in
                            enumerate(["患者因胃癌入院，予奥沙利铂治疗。", "男，65岁，因高血压入院。"])), encoding="utf-8")
    annotate(AnnotateOptions(model=tiny_run, inputs=[path], out=tmp_path / "out", lexicon=lexicon, threads=1,
                             precision="bf16", progress=False))
    spans = {s["text"]: s for row in read_rows(tmp_path / "out") for s in row["spans"]}
    assert spans["胃癌"]["code"] == "C16.900" and spans["高血压"]["code"] == "I10.x00"
    assert spans["奥沙利铂"]["code"] is None  # drugs are not linked
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["signature"]["precision"] == "bf16" and manifest["signature"]["lexicon"]


def test_100k_character_record(tiny_run, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import make_records

    pieces, gold = [], []
    for record in make_records(4000, 11):
        start = sum(map(len, pieces))
        pieces.append(record.text)
        gold += [Span(start + s.start, start + s.end, s.label) for s in record.spans]
        if start > 100_000:
            break
    text = "".join(pieces)[:100_000]
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"id": "long", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    manifest = annotate(AnnotateOptions(model=tiny_run, inputs=[path], out=out, threads=1, progress=False))
    assert manifest["counts"] == {**manifest["counts"], "annotated": 1, "failed": 0, "chars": 100_000}
    (row,) = read_rows(out)
    spans = row["spans"]
    assert len(spans) > 1000
    for span in spans:
        assert 0 <= span["start"] < span["end"] <= len(text) and span["text"] == text[span["start"]:span["end"]]
    assert all(a["end"] <= b["start"] for a, b in zip(spans, spans[1:]))  # sorted, no overlaps
    assert spans[-1]["start"] > 95_000  # the windows reach the end of the record
    found = {(s["start"], s["end"], s["label"]) for s in spans}
    hits = sum((g.start, g.end, g.label) in found for g in gold if g.end <= len(text))
    assert hits > 0.5 * len(gold)  # the tiny model finds most of its own training patterns


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_two_worker_processes_survive_a_killed_parent_and_give_the_same_bytes(tiny_run, tmp_path):
    """workers=2 after a SIGKILL of the parent (its workers must exit too) == workers=1, byte for byte."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import make_records

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": r.id, "text": r.text}, ensure_ascii=False) + "\n"
                            for r in make_records(300, 31)), encoding="utf-8")
    common = dict(inputs=[path], shard_size=2, threads=1, progress=False)
    one = annotate(AnnotateOptions(model=tiny_run, out=tmp_path / "one", **common))
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "medner", "annotate", "--model", str(tiny_run), str(path), "--out", str(two),
           "--shard-size", "2", "--workers", "2", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ledger = two / "ledger.jsonl"
    deadline = time.monotonic() + 240
    while not (ledger.exists() and ledger.read_bytes().count(b'"event":"shard"') >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "the workers=2 run ended before any shard"
        time.sleep(0.01)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(workers) >= 2
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "worker processes outlived their killed parent"
    done_before = ledger.read_bytes().count(b'"event":"shard"')
    assert done_before < one["shards"]["count"], "nothing was left to resume"
    resumed = annotate(AnnotateOptions(model=tiny_run, out=two, workers=2, **common))
    assert sorted_lines(tmp_path / "one") == sorted_lines(two)
    assert resumed["counts"] == one["counts"] and resumed["workers"] == 2 and resumed["resumed_shards"] == done_before
