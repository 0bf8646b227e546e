"""Fault injection for `medner annotate`: a seeded loop that, between runs of the real command, SIGKILLs it at
random moments and damages its output folder at random places (cuts a shard or error file short, flips a byte
in a shard, error file, ledger line or the ledger's signature line, deletes a file, cuts the ledger, appends or
inserts garbage lines), then runs the same command again.

The invariant, checked after every run: the run was killed; or it finished and its output equals a clean run's,
record for record (shard rows, errors.jsonl, counts); or it refused with exactly one ``medner: error:`` line and
changed nothing (then the damage is undone, as a user would restore a backup). Now and then the output folder
is removed, so that kills land in the middle of the work again. No run prints a traceback; a
refusal happens only for damage to the ledger's signature line or a lost ledger. The final run, undisturbed,
must finish with the clean output.

Runs are forked from the kill test's zygote (``tests/data/batch/zygote.py``: imports paid once), on the tiny
model of ``conftest.tiny_run``. The loop is bounded in time (``BUDGET_S``; about 45 s in all on 2 cores).
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ZYGOTE = REPO / "tests" / "data" / "batch" / "zygote.py"
SEED = 20250622
BUDGET_S = 25.0  # no new step starts after this many seconds of the loop
MAX_STEPS = 80
MIN_STEPS = 10
MIN_KILLS = 5  # and at least this many killed runs, and as many finished ones

pytestmark = [pytest.mark.fault, pytest.mark.slow]


def make_inputs(root: Path) -> list[Path]:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_model import make_records

    root.mkdir()
    records = make_records(70, 51)
    lines = [json.dumps({"id": r.id, "text": r.text}, ensure_ascii=False).encode("utf-8") for r in records]
    lines[9] = b"{broken json"
    lines[30] = json.dumps({"id": "gbk", "text": records[30].text}, ensure_ascii=False).encode("gbk")
    lines[44] = json.dumps({"id": records[3].id, "text": records[44].text}, ensure_ascii=False).encode()  # id again
    (root / "records.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with zipfile.ZipFile(root / "notes.zip", "w") as zf:
        for i, record in enumerate(make_records(12, 52)):
            zf.writestr(f"notes/{i:03d}.txt", record.text.encode("gbk" if i % 3 else "utf-8"))
        zf.writestr("../outside.txt", "x")
        zf.writestr("notes/000.txt", records[0].text)  # the same member name again
    rows = ["id,text"] + [f"c{i},{r.text}" for i, r in enumerate(make_records(10, 53))]
    (root / "table.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [root / "records.jsonl", root / "notes.zip", root / "table.csv"]


def argv(model: Path, inputs: list[Path], out: Path) -> list[str]:
    return ["annotate", "--model", str(model), *map(str, inputs), "--out", str(out), "--shard-size", "4",
            "--threads", "1", "--batch-records", "16", "--no-progress", "--allow-failures"]  # inputs hold bad records


class Zygote:
    """Client of tests/data/batch/zygote.py (see its docstring for the protocol)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, args: list[str], log: Path, kill_after: float | None = None) -> dict:
        self.proc.stdin.write(json.dumps({"argv": args, "log": str(log), "kill_after": kill_after}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def state(out: Path) -> dict:
    """What a finished output holds: shard rows (sorted), errors.jsonl, counts."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    rows = []
    for name in manifest["shards"]["files"]:
        rows += (out / name).read_text(encoding="utf-8").splitlines()
    return {"rows": sorted(rows), "errors": (out / "errors.jsonl").read_text(encoding="utf-8"),
            "counts": manifest["counts"]}


def tree(out: Path) -> dict[str, str]:
    if not out.exists():
        return {}
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".lock"}


def _files(out: Path, *patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in out.glob(pattern) if p.is_file())


def damage(out: Path, rng: random.Random) -> tuple[str, Path | None, bytes | None]:
    """Damage the output folder at a random place; returns (what, path, the file's bytes before)."""
    kind = rng.choice(["cut", "flip", "flip", "delete", "cut_ledger", "garbage", "flip_ledger", "flip_header"])
    ledger = out / "ledger.jsonl"
    parts = _files(out, "shards/part-*", "errors/part-*")
    if kind in ("cut", "flip", "delete") and not parts or kind in ("cut_ledger", "garbage", "flip_ledger",
                                                                     "flip_header") and not ledger.exists():
        return "none", None, None
    if kind == "cut":
        path = rng.choice(parts)
    elif kind == "flip":
        path = rng.choice(parts + _files(out, "errors.jsonl", "manifest.json"))
    elif kind == "delete":
        path = rng.choice(parts + _files(out, "ledger.jsonl", "errors.jsonl", "manifest.json"))
    else:
        path = ledger
    before = path.read_bytes()
    data = bytearray(before)
    header_end = data.find(b"\n") + 1
    if kind == "cut" or kind == "cut_ledger":
        data = data[: rng.randrange(len(data) + 1)]
    elif kind in ("flip", "flip_ledger", "flip_header") and data:
        lo, hi = (0, header_end) if kind == "flip_header" else (header_end, len(data)) if kind == "flip_ledger" \
            else (0, len(data))
        if hi <= lo:
            return "none", None, None
        at = rng.randrange(lo, hi)
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "garbage":
        lines = bytes(data).splitlines(keepends=True)
        lines.insert(rng.randrange(1, len(lines) + 1), rng.choice([b"{garbage\n", b"\x00\xff\n", b"[" * 5000 + b"\n",
                                                                  b'{"event":"shard","shard":3}\n']))
        data = bytearray(b"".join(lines))
    if kind == "delete":
        path.unlink()
    else:
        path.write_bytes(bytes(data))
    return f"{kind} {path.relative_to(out)}", path, before


def test_random_kills_and_damage_never_change_the_output(tiny_run, tmp_path):
    t_start = time.monotonic()
    inputs = make_inputs(tmp_path / "in")
    zygote = Zygote()
    try:
        ref = tmp_path / "ref"
        clean = zygote.run(argv(tiny_run, inputs, ref), tmp_path / "ref.log")
        assert clean["rc"] == 0, (tmp_path / "ref.log").read_text()[-3000:]
        expected = state(ref)
        keys = Counter(json.loads(r)["key"] for r in expected["rows"])
        keys.update(json.loads(e)["key"] for e in expected["errors"].splitlines())
        assert max(keys.values()) == 1 and expected["counts"]["failed"] >= 2
        full_run_s = clean["seconds"]

        rng = random.Random(SEED)
        out = tmp_path / "out"
        trace: list[tuple] = []
        refusals = kills = finished = 0
        t_loop = time.monotonic()
        step = 0
        # past the budget, go on until the minimums are met: under load a run takes longer than the clean one
        # it is timed against, so fewer kills land than the draws intend
        while step < MAX_STEPS and (time.monotonic() - t_loop < BUDGET_S or step < MIN_STEPS
                                    or kills < MIN_KILLS or finished < MIN_KILLS):
            step += 1
            what, path, before = damage(out, rng) if out.exists() and rng.random() < 0.7 else ("none", None, None)
            if what == "none" and out.exists() and rng.random() < 0.25:  # start over: kills land mid-work again
                shutil.rmtree(out)
                what = "fresh"
            snapshot = tree(out)
            kill_after = rng.uniform(0, 1.3 * full_run_s) if what in ("none", "fresh") or rng.random() < 0.3 \
                else None
            log = tmp_path / f"step{step:03d}.log"
            result = zygote.run(argv(tiny_run, inputs, out), log, kill_after)
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""  # killed at once
            trace.append((step, what, result["killed"], result["rc"]))
            assert "Traceback" not in text, (trace, text[-3000:])
            if result["killed"]:
                kills += 1
                continue
            if result["rc"] == 0:
                finished += 1
                assert state(out) == expected, trace
                continue
            errors = [line for line in text.splitlines() if line.startswith("medner: error:")]
            assert result["rc"] == 2 and len(errors) == 1, (trace, text[-3000:])
            assert tree(out) == snapshot, (trace, errors)  # a refusal changes nothing
            assert path is not None and path.name == "ledger.jsonl", (trace, errors)  # only a lost signature
            refusals += 1
            path.write_bytes(before)  # the user restores the ledger from a backup

        final = zygote.run(argv(tiny_run, inputs, out), tmp_path / "final.log")
        assert final["rc"] == 0 and not final["killed"], (trace, (tmp_path / "final.log").read_text()[-3000:])
    finally:
        zygote.close()
    assert state(out) == expected
    assert kills >= MIN_KILLS and finished >= MIN_KILLS and step >= MIN_STEPS, trace
    print(f"\nfault loop: {step} steps ({kills} killed, {finished} finished, {refusals} refused) in "
          f"{time.monotonic() - t_loop:.1f}s, {time.monotonic() - t_start:.1f}s in all; {trace}")
