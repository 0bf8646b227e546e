"""Faults `medner annotate` must survive (issue 22), each produced for real: inputs and output that overlap, output
damaged between runs, a changed model, FIFOs/sockets/devices and unbounded reads, repeated keys and ids, write
failures (RLIMIT_FSIZE in a subprocess), record text in error files, hostile JSON, names that are not UTF-8.
Every fault is refused with a one-line error that changed nothing, or recovered with nothing lost or doubled."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
from batch_fakes import Crash
from batch_fakes import FakeEngine as _Engine

from medner.batch import shards as shards_mod
from medner.batch.engine import ModelSpec
from medner.batch.items import ReadOptions, ReadStats
from medner.batch.ledger import Ledger, OutputError, ledger_line, read_ledger
from medner.batch.runner import AnnotateOptions, annotate
from medner.batch.sources import iter_items
from medner.cli import main
from medner.errors import ConfigError, CorpusError, ModelError
from medner.types import Span

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "batch"
T1 = "患者因胃癌入院，予奥沙利铂治疗。"
T2 = "女性患者，查体示右肺压痛，无发热。"


class FakeEngine(_Engine):
    def __init__(self) -> None:
        super().__init__(fake_spans)


def fake_spans(text: str) -> list[Span]:
    return [Span(i - 1, i + 1, "疾病和诊断", score=0.5) for i, ch in enumerate(text) if ch == "癌" and i]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def records(tmp_path) -> Path:
    """18 JSONL records, two of them failures (an empty text, invalid JSON)."""
    rows = [{"id": f"r{i}", "text": (T1 if i % 2 else T2) + f"第{i}次。"} for i in range(18)]
    rows[5]["text"] = "  "
    path = write_jsonl(tmp_path / "in" / "records.jsonl", rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[11] = "{not json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def opts(model, inputs, out, **kw) -> AnnotateOptions:
    return AnnotateOptions(model=model, inputs=inputs, out=out, progress=False, **{"shard_size": 4, **kw})


def output_lines(out: Path) -> list[str]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    lines = []
    for name in manifest["shards"]["files"]:
        lines += (out / name).read_text(encoding="utf-8").splitlines()
    return lines


def snapshot(out: Path) -> tuple[list[str], str]:
    return sorted(output_lines(out)), (out / "errors.jsonl").read_text(encoding="utf-8")


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes (``.lock`` aside: it only exists)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def crash_before_listing(monkeypatch, shard: int) -> None:
    """Die after shard ``shard``'s files are in place, before the ledger lists it."""
    real = Ledger.append

    def append(self, event):
        if event.get("event") == "shard" and event["shard"] == shard:
            raise Crash(f"ledger {shard}")
        return real(self, event)

    monkeypatch.setattr(Ledger, "append", append)


@contextlib.contextmanager
def no_hang(seconds: int = 60):
    """Fail instead of hanging forever if the code under test blocks (e.g. opening a FIFO)."""
    def expired(*_):
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------ 1. inputs and output overlap
def test_inputs_inside_the_output_are_refused_before_anything_is_touched(fake_model, records, tmp_path):
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    mine = write_jsonl(out / "shards" / "mine.jsonl", [{"id": "x", "text": T1}])  # a user's file in the output
    write_jsonl(out / "notes" / "n.jsonl", [{"id": "y", "text": T2}])
    before = tree(out)
    for inputs in ([mine], [out / "notes"], [out], [records, out / "shards"]):
        with pytest.raises(CorpusError, match="inside the output folder.*--out outside every input"):
            annotate(opts(fake_model, inputs, out), engine=FakeEngine())
        assert tree(out) == before
    link = tmp_path / "link.jsonl"  # an input that is a link into the output folder
    link.symlink_to(mine)
    with pytest.raises(CorpusError, match="inside the output folder"):
        annotate(opts(fake_model, [link], out), engine=FakeEngine())
    assert tree(out) == before and mine.is_file()


def test_an_output_inside_an_input_is_refused(fake_model, records, tmp_path):
    folder = records.parent
    with pytest.raises(CorpusError, match="inside this input folder: the run would read its own output"):
        annotate(opts(fake_model, [folder], folder / "out"), engine=FakeEngine())
    assert not (folder / "out").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.symlink_to(folder, target_is_directory=True)  # the same folder under another name
    with pytest.raises(CorpusError, match="inside this input folder"):
        annotate(opts(fake_model, [folder], elsewhere / "out"), engine=FakeEngine())
    assert not (folder / "out").exists()


def test_a_link_inside_an_input_folder_into_the_output_is_not_read(fake_model, records, tmp_path):
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    data = tmp_path / "data"
    write_jsonl(data / "a.jsonl", [{"id": "a", "text": T1}])
    (data / "b.jsonl").symlink_to(out / "errors.jsonl")
    items = list(iter_items([data], avoid=out))
    assert [(i.id, i.reason) for i in items] == [("a", None), (f"{data / 'b.jsonl'}", "inside_output")]


def test_cleanup_removes_only_files_the_run_wrote(fake_model, records, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    annotate(opts(fake_model, [records], ref), engine=FakeEngine())
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        crash_before_listing(patch, 1)
        with pytest.raises(Crash):
            annotate(opts(fake_model, [records], out), engine=FakeEngine())
    assert (out / "shards" / "part-000001.jsonl").is_file()  # written, not listed: the run's own leftover
    foreign = {out / "shards" / "part-000099.jsonl": b"kept\n", out / "shards" / "notes.txt": b"kept",
               out / "errors" / "part-000077.jsonl": b"kept\n", out / "manifest.json.tmp1": b"kept"}
    for path, data in foreign.items():
        path.write_bytes(data)
    engine = FakeEngine()
    annotate(opts(fake_model, [records], out), engine=engine)
    assert engine.calls == [1, 2, 3, 4]
    assert snapshot(out) == snapshot(ref)
    assert all(path.read_bytes() == data for path, data in foreign.items())


def test_an_out_that_is_a_file_or_a_foreign_folder_is_refused(fake_model, records, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.docx").write_bytes(b"x")
    with pytest.raises(OutputError, match="not empty and not an output of `medner annotate`"):
        annotate(opts(fake_model, [records], thesis), engine=FakeEngine())
    assert [p.name for p in thesis.iterdir()] == ["chapter1.docx"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    rc = main(["annotate", "--model", str(fake_model), str(records), "--out", str(a_file), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"medner: error: {a_file}: exists and is not a folder. Fix: choose a folder path "
                               f"for --out"]
    assert a_file.read_text() == "x"
    out = tmp_path / "out"  # an output whose ledger was deleted: its shards cannot be checked
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    (out / "ledger.jsonl").unlink()
    before = tree(out)
    with pytest.raises(OutputError, match="holds shards but no ledger.jsonl.*new --out"):
        annotate(opts(fake_model, [records], out), engine=FakeEngine())
    assert tree(out) == before


# ------------------------------------------------------------------------------ 2. damaged output on resume
def _cut_mid_line(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n") + 7])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["cut_mid_line", "deleted", "flipped_byte", "errors_deleted", "errors_flipped"])
def test_a_damaged_shard_is_found_and_redone_on_resume(fake_model, records, tmp_path, damage, caplog):
    ref = tmp_path / "ref"
    annotate(opts(fake_model, [records], ref), engine=FakeEngine())
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    data, errors = out / "shards" / "part-000002.jsonl", out / "errors" / "part-000002.jsonl"  # {not json
    assert errors.is_file()
    {"cut_mid_line": lambda: _cut_mid_line(data), "deleted": data.unlink, "flipped_byte": lambda: _flip(data),
     "errors_deleted": errors.unlink, "errors_flipped": lambda: _flip(errors)}[damage]()
    engine = FakeEngine()
    manifest = annotate(opts(fake_model, [records], out), engine=engine)
    assert engine.calls == [2]
    assert [r["shard"] for r in manifest["redone_shards"]] == [2]
    assert snapshot(out) == snapshot(ref)
    assert any("shard 2 is damaged" in r.message for r in caplog.records)
    again = FakeEngine()
    assert annotate(opts(fake_model, [records], out), engine=again)["redone_shards"] == [] and again.calls == []


def test_a_corrupt_ledger_line_is_reported_by_its_line_number_and_recovered(fake_model, records, tmp_path,
                                                                              caplog):
    ref = tmp_path / "ref"
    annotate(opts(fake_model, [records], ref), engine=FakeEngine())
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    path = out / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    number = {}
    for n, line in enumerate(lines, 1):
        event = json.loads(line)
        if event.get("event") == "shard":
            number[event["shard"]] = n
    lines[number[1] - 1] = b"\x00\x17garbage{\n"  # unreadable
    lines[number[3] - 1] = lines[number[3] - 1].replace(b'"records":4', b'"records":5')  # plausible but wrong
    path.write_bytes(b"".join(lines))
    engine = FakeEngine()
    manifest = annotate(opts(fake_model, [records], out), engine=engine)
    assert engine.calls == [1, 3]
    assert snapshot(out) == snapshot(ref)
    assert manifest["ledger_lines_dropped"] == [number[1], number[3]]
    assert manifest["counts"] == json.loads((ref / "manifest.json").read_text())["counts"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"ledger.jsonl:{number[1]}: unreadable ledger line" in m for m in messages)
    assert any(f"ledger.jsonl:{number[3]}: unreadable ledger line (checksum mismatch)" in m for m in messages)
    assert not read_ledger(path).bad


def test_an_unreadable_ledger_header_refuses_and_changes_nothing(fake_model, records, tmp_path):
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    path = out / "ledger.jsonl"
    data = bytearray(path.read_bytes())
    data[20] ^= 0x04
    path.write_bytes(bytes(data))
    before = tree(out)
    with pytest.raises(CorpusError, match=r"ledger.jsonl:1: unreadable first line.*new --out"):
        annotate(opts(fake_model, [records], out), engine=FakeEngine())
    assert tree(out) == before


def test_a_ledger_naming_a_file_elsewhere_never_touches_it(fake_model, records, tmp_path):
    ref = tmp_path / "ref"
    annotate(opts(fake_model, [records], ref), engine=FakeEngine())
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(b"precious\n")
    path = out / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    for n, line in enumerate(lines):
        event = json.loads(line)
        if event.get("event") == "shard" and event["shard"] == 0:
            event.pop("crc")
            event.update(file="../victim.jsonl", bytes=9, sha256=hashlib.sha256(b"precious\n").hexdigest())
            lines[n] = ledger_line(event)
    path.write_bytes(b"".join(lines))
    engine = FakeEngine()
    annotate(opts(fake_model, [records], out), engine=engine)
    assert engine.calls == [0] and victim.read_bytes() == b"precious\n"
    assert snapshot(out) == snapshot(ref)


def test_an_output_of_the_previous_version_resumes(fake_model, records, tmp_path):
    """Ledgers written before checksums and write lines (no `crc`, no `tracked`, no `sha256`) still resume."""
    ref = tmp_path / "ref"
    annotate(opts(fake_model, [records], ref), engine=FakeEngine())
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as patch:
        crash_before_listing(patch, 2)
        with pytest.raises(Crash):
            annotate(opts(fake_model, [records], out), engine=FakeEngine())
    old = []
    for line in (out / "ledger.jsonl").read_bytes().splitlines():
        event = json.loads(line)
        event.pop("crc")
        for key in ("tracked", "pid", "sha256", "errors_bytes", "errors_sha256"):
            event.pop(key, None)
        if event.get("event") != "write":
            old.append(json.dumps(event, ensure_ascii=False) + "\n")
    (out / "ledger.jsonl").write_text("".join(old), encoding="utf-8")
    engine = FakeEngine()
    manifest = annotate(opts(fake_model, [records], out), engine=engine)
    assert engine.calls == [2, 3, 4] and manifest["redone_shards"] == [] and manifest["ledger_lines_dropped"] == []
    assert snapshot(out) == snapshot(ref)


# ------------------------------------------------------------------------------ 3. model changed between runs
def test_a_changed_weight_file_is_refused_at_start_and_rows_never_mix(tiny_run, records, tmp_path, monkeypatch):
    from medner.run.directory import fingerprint, reseal

    model = tmp_path / "model"
    shutil.copytree(tiny_run, model)
    common = dict(shard_size=6, threads=1)
    ref = tmp_path / "ref"
    annotate(opts(tiny_run, [records], ref, **common))
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        crash_before_listing(patch, 1)
        with pytest.raises(Crash):
            annotate(opts(model, [records], out, **common))
    before = tree(out)
    head = model / "head.safetensors"
    original = head.read_bytes()
    _flip(head)  # same size, other weights
    with pytest.raises(ModelError, match=r"head.safetensors: model file damaged or changed"):
        annotate(opts(model, [records], out, **common))
    assert tree(out) == before
    reseal(model)  # as if retrained into the same folder: a consistent run, but another model
    with pytest.raises(ConfigError, match=r"different `model`"):
        annotate(opts(model, [records], out, **common))
    assert tree(out) == before
    head.write_bytes(original)
    reseal(model)
    annotate(opts(model, [records], out, **common))
    assert {json.loads(line)["model"] for line in output_lines(out)} == {fingerprint(tiny_run)}
    assert snapshot(out) == snapshot(ref)


def test_a_worker_refuses_a_model_replaced_after_the_check(tiny_run):
    with pytest.raises(ModelError, match="the model changed after the run started"):
        ModelSpec(str(tiny_run), device="cpu", fingerprint="0" * 16).load()


def test_a_format_1_run_is_fingerprinted_over_its_files(fake_model, records, tmp_path):
    (fake_model / "head.safetensors").write_bytes(b"weights v1")
    out = tmp_path / "out"
    annotate(opts(fake_model, [records], out), engine=FakeEngine())
    (fake_model / "head.safetensors").write_bytes(b"weights v2")  # the metadata still says fake0001
    with pytest.raises(ConfigError, match=r"different `model_files`"):
        annotate(opts(fake_model, [records], out), engine=FakeEngine())


# ------------------------------------------------------------------------------ 4. special files, bounded reads
def test_fifos_sockets_devices_and_links_to_them_are_reported_not_read(fake_model, tmp_path):
    data = tmp_path / "in"
    write_jsonl(data / "a_ok.jsonl", [{"id": "ok", "text": T1}])
    os.mkfifo(data / "b_fifo.txt")
    (data / "c_fifo_link.jsonl").symlink_to(data / "b_fifo.txt")
    (data / "d_zero.txt").symlink_to("/dev/zero")
    (data / "e_null.jsonl").symlink_to("/dev/null")
    (data / "f_broken.txt").symlink_to(data / "nowhere.txt")
    expected = {"a_ok.jsonl:1": None, "b_fifo.txt": "special_file", "c_fifo_link.jsonl": "special_file",
                "d_zero.txt": "special_file", "e_null.jsonl": "special_file", "f_broken.txt": "corrupt"}
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(data / "g_socket.jsonl"))
        expected["g_socket.jsonl"] = "special_file"
    except OSError:  # a path too long for a socket on this machine
        pass
    with server, no_hang():
        items = list(iter_items([data]))
        out = tmp_path / "out"
        manifest = annotate(opts(fake_model, [data], out), engine=FakeEngine())
    assert {i.key.rsplit("/", 1)[1]: i.reason for i in items} == expected
    assert "a FIFO (links followed), not a regular file" in items[1].detail
    assert manifest["counts"]["failed"] == len(expected) - 1 and manifest["counts"]["annotated"] == 1
    os.mkfifo(tmp_path / "given.jsonl")
    with pytest.raises(CorpusError, match=r"given.jsonl: a FIFO, not a regular file or folder"), no_hang():
        list(iter_items([tmp_path / "given.jsonl"]))


def test_long_rows_and_lines_are_cut_while_reading(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("id,text\n" + "a," + T1 + "\n" + "b," + "," * 300_000 + "\n" + "c," + T2 + "\n",
                        encoding="utf-8")
    items = list(iter_items([csv_path], ReadOptions(max_record_chars=100)))
    assert [(i.id, i.reason) for i in items] == [("a", None), (f"{csv_path}#2", "too_long"), ("c", None)]
    # a long quoted field over several lines (70,000 characters, over the row limit of 64 KiB + the record's; quotes
    # doubled inside, a line ending in a quote): the whole row is passed over, never read as rows of its own; a
    # stray quote inside an unquoted field is text, as csv reads it
    long_field = '"' + '患者,""发热""\n' * 7000 + '""\n' + "一般情况可\n" * 4000 + '"'
    multi = tmp_path / "multi.csv"
    multi.write_text(f'id,text\na,{T1}\nb,{long_field}\nc,体温37"5\nd,"{T2}"\n', encoding="utf-8")
    items = list(iter_items([multi], ReadOptions(max_record_chars=100)))
    assert [(i.id, i.reason) for i in items] == [("a", None), (f"{multi}#2", "too_long"), ("c", None), ("d", None)]
    assert items[2].text == '体温37"5' and items[3].text == T2
    # a field over the record's bytes but under the row limit: csv's own field limit stopped it (csv.Error) and the
    # rest of the field became records; the row limit rules now, the row is parsed whole and fails as too long
    field = '"' + ("患者,发热\n" * 33_400) + '"'  # 200,402 characters: over 160,004 bytes, under the row limit
    between = tmp_path / "between.csv"
    between.write_text(f"id,text\na,{T1}\nb,{field}\nc,{T2}\n", encoding="utf-8")
    items = list(iter_items([between], ReadOptions(max_record_chars=40_000)))
    assert [(i.id, i.reason) for i in items] == [("a", None), ("b", "too_long"), ("c", None)]
    utf16 = tmp_path / "u.jsonl"
    utf16.write_bytes(("\n".join(json.dumps({"id": k, "text": t}, ensure_ascii=False)
                                 for k, t in [("a", T1), ("b", "长" * 200_000), ("c", T2)]) + "\n").encode("utf-16"))
    items = list(iter_items([utf16], ReadOptions(max_record_chars=100)))
    assert [(i.source.line, i.reason) for i in items] == [(1, None), (2, "too_long"), (3, None)]


# ------------------------------------------------------------------------------ 6. duplicate keys and ids
def test_repeated_member_names_get_distinct_keys(tmp_path):
    path = tmp_path / "dup.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        zf.writestr("notes/a.txt", T1)
        zf.writestr("rows.jsonl", json.dumps({"id": "j", "text": T1}, ensure_ascii=False) + "\n")
        zf.writestr("notes/a.txt", T2)
        zf.writestr("rows.jsonl", json.dumps({"id": "k", "text": T2}, ensure_ascii=False) + "\n")
    tar = tmp_path / "dup.tar"
    with tarfile.open(tar, "w") as tf:
        for text in (T1, T2):
            info = tarfile.TarInfo("x.txt")
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    stats = ReadStats()
    items = list(iter_items([path, tar], ReadOptions(), stats))
    got = [(i.key, i.id, i.text) for i in items]
    assert got == [(f"{path}!notes/a.txt", "notes/a", T1), (f"{path}!rows.jsonl:1", "j", T1),
                   (f"{path}!notes/a.txt~2", "notes/a", T2), (f"{path}!rows.jsonl:1~2", "k", T2),
                   (f"{tar}!x.txt", "x", T1), (f"{tar}!x.txt~2", "x", T2)]
    assert stats.copies == 3 and stats.duplicate_ids == 2  # notes/a and x: ids as given, told apart by key


def test_keys_without_repeats_are_unchanged(tmp_path):
    keys = [i.key for i in iter_items([DATA / "notes", DATA / "records.jsonl"], ReadOptions(text_field="body"))]
    keys += [i.key for i in iter_items([DATA / "records.csv"], ReadOptions(text_field="note"))]
    assert not any("~" in k for k in keys) and len(set(keys)) == len(keys)
    assert f"{DATA / 'records.jsonl'}:3" in keys and f"{DATA / 'records.csv'}#2" in keys
    assert f"{DATA / 'notes' / 'sub' / 'j_crlf.txt'}" in keys


def test_the_same_id_twice_is_reported_and_both_rows_are_kept(fake_model, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": "r1", "text": T1}, {"id": "r2", "text": T2},
                                           {"id": "r1", "text": T2}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "r2", "text": T1}])
    manifest = annotate(opts(fake_model, [a, b], tmp_path / "out"), engine=FakeEngine())
    rows = [json.loads(line) for line in output_lines(tmp_path / "out")]
    assert [(r["id"], r["key"]) for r in rows] == [("r1", f"{a}:1"), ("r2", f"{a}:2"), ("r1", f"{a}:3"),
                                                   ("r2", f"{b}:1")]
    assert manifest["read_stats"]["duplicate_ids"] == 2
    assert manifest["read_stats"]["duplicate_id_examples"] == [f"{a}:3", f"{b}:1"]


def test_a_folder_and_a_file_inside_it_are_refused(records):
    folder = records.parent
    for inputs in ([folder, records], [records, folder]):
        with pytest.raises(CorpusError, match="another input.*read twice.*not both"):
            list(iter_items(inputs))


def test_a_file_reached_twice_through_links_is_read_once(tmp_path):
    data = tmp_path / "in"
    a = write_jsonl(data / "a.jsonl", [{"id": "r1", "text": T1}])
    (data / "b_symlink.jsonl").symlink_to(a)
    os.link(a, data / "c_hardlink.jsonl")
    items = list(iter_items([data]))
    assert [(i.key.rsplit("/", 1)[1], i.reason) for i in items] == [
        ("a.jsonl:1", None), ("b_symlink.jsonl", "duplicate_file"), ("c_hardlink.jsonl", "duplicate_file")]


# ------------------------------------------------------------------------------ 7. write failures
_LIMITED = """
import resource, sys, json
from medner.cli import main
for limit, argv in json.loads(sys.argv[1]):
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit if limit else resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("== phase", file=sys.stderr, flush=True)
    print(json.dumps({"phase_rc": main(argv)}), flush=True)
"""


@pytest.mark.slow
def test_file_size_limit_mid_run_is_one_line_and_a_later_run_completes(tiny_run, tmp_path):
    """RLIMIT_FSIZE (what a full disk or quota does to a writer): first a shard file, then the ledger hits it."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import make_records

    pieces = make_records(60, 41)
    long_text = "".join(r.text for r in pieces)[:1000]  # many spans: a large first shard
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "long", "text": long_text}]
                       + [{"id": r.id, "text": r.text} for r in make_records(80, 42)])
    argv = ["annotate", "--model", str(tiny_run), str(path), "--shard-size", "2", "--threads", "1", "--no-progress"]
    annotate(opts(tiny_run, [path], tmp_path / "ref", shard_size=2, threads=1))
    ref = tmp_path / "ref"
    first = (ref / "shards" / "part-000000.jsonl").stat().st_size
    largest = max(p.stat().st_size for p in (ref / "shards").iterdir())
    ledger = (ref / "ledger.jsonl").stat().st_size
    header = len((ref / "ledger.jsonl").read_bytes().split(b"\n")[0])
    assert header + 1000 < first // 2 and largest + 3000 < ledger, (header, first, largest, ledger)
    out = tmp_path / "out"
    phases = [[first // 2, argv + ["--out", str(out)]], [largest + 1000, argv + ["--out", str(out)]],
              [0, argv + ["--out", str(out)]]]
    done = subprocess.run([sys.executable, "-c", _LIMITED, json.dumps(phases)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    rcs = [json.loads(line)["phase_rc"] for line in done.stdout.splitlines() if "phase_rc" in line]
    assert rcs == [2, 2, 0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    phase_err = done.stderr.split("== phase\n")[1:]
    errors = [[line for line in err.splitlines() if line.startswith("medner: error:")] for err in phase_err]
    assert len(errors[0]) == 1 and "cannot write shard 0: File too large (EFBIG)" in errors[0][0]
    assert len(errors[1]) == 1 and "ledger.jsonl: cannot append to the ledger: File too large" in errors[1][0]
    assert "rerun the same command" in errors[0][0] and errors[2] == []
    assert snapshot(out) == snapshot(ref)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == json.loads((ref / "manifest.json").read_text())["counts"]
    assert manifest["ledger_lines_dropped"] == []  # the failed append left no torn line


# ------------------------------------------------------------------------------ 10. no record text in errors
def test_no_record_text_in_error_files_or_logs(fake_model, tmp_path, caplog):
    headerless = tmp_path / "headerless.csv"
    headerless.write_text(f"c1,{T1}\nc2,{T2}\n", encoding="utf-8")
    chinese_keys = write_jsonl(tmp_path / "keys.jsonl", [{"病历号": "张三", "内容": T2}])
    out = tmp_path / "out"
    annotate(opts(fake_model, [headerless, chinese_keys], out), engine=FakeEngine())
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["reason"] for e in errors] == ["missing_text", "missing_text"]
    assert "the header row may be missing" in errors[0]["detail"] and "c1" in errors[0]["detail"]
    text = (out / "errors.jsonl").read_text(encoding="utf-8") + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (T1, T1[:4], T2[:4], "张三", "病历号", "内容"):
        assert secret not in text


# ------------------------------------------------------------------------------ 5. hostile structure
def test_hostile_json_lines_are_one_error_each(fake_model, tmp_path):
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join([json.dumps({"id": "a", "text": T1}, ensure_ascii=False), "[" * 200_000 + "]" * 200_000,
                               '{"id": ' + "9" * 5000 + ', "text": "x"}', '{"id": "b", "text": {"a":' * 50_000,
                               json.dumps({"id": "c", "text": T2}, ensure_ascii=False)]) + "\n", encoding="utf-8")
    manifest = annotate(opts(fake_model, [path], tmp_path / "out"), engine=FakeEngine())
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [(e["source"]["line"], e["reason"]) for e in errors] == [(2, "bad_json"), (3, "bad_json"),
                                                                    (4, "bad_json")]
    assert "nested too deeply" in errors[0]["detail"]
    assert manifest["counts"]["annotated"] == 2


def test_file_and_member_names_that_are_not_utf8(fake_model, tmp_path):
    pytest.importorskip("pyarrow")
    data = tmp_path / "in"
    data.mkdir()
    gbk = "病历".encode("gbk")
    (data / os.fsdecode(gbk + b".txt")).write_text(T1, encoding="utf-8")
    with tarfile.open(data / "notes.tar", "w", format=tarfile.GNU_FORMAT, encoding="gbk") as tf:
        info = tarfile.TarInfo("门诊.txt")
        info.size = len(T2.encode())
        tf.addfile(info, io.BytesIO(T2.encode()))
    for fmt in ("jsonl", "parquet"):
        out = tmp_path / fmt
        manifest = annotate(opts(fake_model, [data], out, output_format=fmt), engine=FakeEngine())
        assert manifest["counts"]["annotated"] == 2 and manifest["counts"]["failed"] == 0
    rows = [json.loads(line) for line in output_lines(tmp_path / "jsonl")]
    escaped = {"".join(f"\\x{b:02x}" for b in name.encode("gbk")) for name in ("病历", "门诊")}
    assert {r["id"] for r in rows} == escaped
    assert all(r["key"].encode("utf-8") for r in rows)


def test_shard_writer_output_is_valid_utf8_whatever_the_key(tmp_path):
    assert shards_mod.encode_line({"key": "a\udcb2"}) == b'{"key":"a\\udcb2"}\n'


def test_a_bad_device_or_lexicon_is_refused_before_the_output_folder_is_made(fake_model, records, tmp_path, capsys):
    """The options the workers load the model with are checked first: a refusal leaves no folder (whose ledger
    would then refuse the corrected command as `started with a different lexicon`)."""
    import torch

    not_utf8 = tmp_path / "gbk.tsv"
    not_utf8.write_bytes("term\tlabel\n霍乱\t疾病和诊断\n".encode("gb18030"))
    cases = [(["--device", "tpu"], "`device` is 'tpu'"), (["--lexicon", str(records)], "header row lacks column"),
             (["--lexicon", str(not_utf8)], "gbk.tsv:2: cannot decode")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda:0"], "no CUDA GPU is visible"))
    out = tmp_path / "out"
    for extra, message in cases:
        rc = main(["annotate", "--model", str(fake_model), str(records), "--out", str(out), "--no-progress", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0], (extra, err)
        assert not out.exists(), extra
