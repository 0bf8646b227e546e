"""Kill-and-resume: `medner annotate` SIGKILLed 20 times at random points, then run to the end, must give
every input record exactly once and the same bytes (after sorting) as one uninterrupted run.

The uninterrupted reference run is the real command in a subprocess (``python -m medner annotate``). The
killed runs are the same CLI entry point, each in its own process forked from a server that has already
imported torch/transformers (``tests/data/batch/zygote.py``), so a restart costs the model load (~0.2 s for
the tiny run) instead of ~5 s of imports, and 20 kills fit in a short test. Kill points (seeded): a quarter
at a random time during start-up (ledger repair, clean-up, model load, skipping finished shards), the rest a
random fraction of a shard's time after the ledger has listed 0-2 more shards (inside prediction, shard
writes, renames or the ledger append).
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from medner.batch.items import ReadOptions
from medner.batch.sources import iter_items

REPO = Path(__file__).resolve().parents[1]
ZYGOTE = Path(__file__).parent / "data" / "batch" / "zygote.py"
KILLS = 20


def make_inputs(root: Path) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import make_records

    root.mkdir()
    records = make_records(560, 21)
    lines = [json.dumps({"id": r.id, "text": r.text}, ensure_ascii=False).encode("utf-8") for r in records]
    lines[17] = b"{broken json"
    lines[230] = json.dumps({"id": "gbk-line", "text": records[230].text}, ensure_ascii=False).encode("gbk")
    lines[400] = json.dumps({"id": "empty-line", "text": "  "}).encode("utf-8")
    (root / "records.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with zipfile.ZipFile(root / "notes.zip", "w") as zf:
        for i, record in enumerate(make_records(40, 22)):
            zf.writestr(f"notes/{i:03d}.txt", record.text.encode("gbk" if i % 3 else "utf-8"))
        zf.writestr("../outside.txt", "x")
    rows = ["id,text"] + [f"c{i},{r.text}" for i, r in enumerate(make_records(30, 23))]
    (root / "table.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [root / "records.jsonl", root / "notes.zip", root / "table.csv"]


def argv(model: Path, inputs: list[Path], out: Path) -> list[str]:
    return ["annotate", "--model", str(model), *map(str, inputs), "--out", str(out), "--shard-size", "5",
            "--threads", "1", "--batch-records", "16", "--no-progress", "--allow-failures"]  # inputs hold bad records


def shard_lines(out: Path) -> list[str]:
    lines = []
    for path in (out / "shards").glob("part-*.jsonl"):
        lines += path.read_text(encoding="utf-8").splitlines()
    return lines


def shards_done(out: Path) -> int:
    path = out / "ledger.jsonl"
    return path.read_bytes().count(b'"event":"shard"') if path.exists() else 0


class Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, args: list[str], log: Path, **kill) -> dict:
        self.proc.stdin.write(json.dumps({"argv": args, "log": str(log), **kill}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


@pytest.mark.slow
def test_twenty_sigkills_lose_and_duplicate_nothing(tiny_run, tmp_path):
    inputs = make_inputs(tmp_path / "in")
    expected = list(iter_items(inputs, ReadOptions()))
    total_shards = -(-len(expected) // 5)

    t0 = time.monotonic()
    ref = tmp_path / "ref"
    done = subprocess.run([sys.executable, "-m", "medner", *argv(tiny_run, inputs, ref)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    t_reference = time.monotonic() - t0

    zygote = Zygote()
    try:
        calib = zygote.run(argv(tiny_run, inputs, tmp_path / "calibration"), tmp_path / "calibration.log",
                           ledger=str(tmp_path / "calibration" / "ledger.jsonl"))
        assert calib["rc"] == 0 and not calib["killed"]
        busy = json.loads((tmp_path / "calibration" / "manifest.json").read_text())["timings"]["model_busy_s"]
        per_shard = busy / total_shards
        startup = calib["first_shard_s"]  # fork -> first shard in the ledger

        rng = random.Random(20240611)
        out = tmp_path / "out"
        log = tmp_path / "killed.log"
        kills, interrupted_work, attempts, trace = 0, 0, 0, []
        while kills < KILLS:
            attempts += 1
            assert attempts <= 3 * KILLS, f"only {kills} kills landed in {attempts} attempts"
            before = shards_done(out)
            if rng.random() < 0.25:
                result = zygote.run(argv(tiny_run, inputs, out), log, kill_after=rng.uniform(0, 1.2 * startup))
            else:
                more = rng.randint(0, 2) if before + 2 < total_shards else 0
                result = zygote.run(argv(tiny_run, inputs, out), log, ledger=str(out / "ledger.jsonl"),
                                    kill_at_shards=before + more, kill_after=rng.uniform(0, 1.5 * per_shard))
            trace.append((before, shards_done(out), result["killed"], result["seconds"]))
            if result["killed"]:
                kills += 1
                interrupted_work += shards_done(out) < total_shards
            else:
                assert result["rc"] == 0, log.read_text()[-2000:]
        final = zygote.run(argv(tiny_run, inputs, out), log)
        assert final["rc"] == 0 and not final["killed"], log.read_text()[-2000:]
    finally:
        zygote.close()

    # exactly once: every input key in shards or errors, none twice
    rows = [json.loads(line) for line in shard_lines(out)]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    keys = Counter([r["key"] for r in rows] + [e["key"] for e in errors])
    assert set(keys) == {i.key for i in expected} and max(keys.values()) == 1
    ids = Counter(r["id"] for r in rows)
    assert max(ids.values()) == 1 and len(ids) == sum(i.ok for i in expected)
    assert {e["reason"] for e in errors} == {"bad_json", "empty", "unsafe_path"}
    # same bytes as the uninterrupted run
    assert sorted(shard_lines(out)) == sorted(shard_lines(ref))
    assert (out / "errors.jsonl").read_bytes() == (ref / "errors.jsonl").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == json.loads((ref / "manifest.json").read_text())["counts"]
    assert manifest["timings"]["sessions"] <= attempts + 1  # kills before the session line leave no trace
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    mid_work = sum(killed and after > before for before, after, killed, _ in trace)
    assert kills == KILLS and interrupted_work >= KILLS // 2 and mid_work >= KILLS // 4, trace
    print(f"\n{kills} kills in {attempts} runs, {interrupted_work} with shards still to do; reference run "
          f"{t_reference:.1f}s, start-up {startup:.2f}s, {per_shard * 1000:.0f} ms/shard; {trace}")
