"""Batch inputs: formats, encoding detection, bad records, archive safety, deterministic stable keys."""
from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from medner.batch.archives import unsafe_member_name
from medner.decoding import detect_and_decode, looks_utf16
from medner.batch.items import ArchiveLimits, ReadOptions, ReadStats
from medner.batch.sources import iter_items
from medner.errors import ConfigError, CorpusError

DATA = Path(__file__).parent / "data" / "batch"
T1 = "患者因胃癌入院，予奥沙利铂治疗，一般情况可。"
T2 = "女性患者，查体示右肺压痛，无发热。"


def items_of(*inputs, **options):
    return list(iter_items([str(p) for p in inputs], ReadOptions(**options)))


def by_key(items):
    return {item.key: item for item in items}


# ------------------------------------------------------------------------------------------------ encodings
@pytest.mark.parametrize("data, codec", [
    (T1.encode("utf-8"), "utf-8"),
    (b"\xef\xbb\xbf" + T1.encode("utf-8"), "utf-8-sig"),
    (T1.encode("gbk"), "gb18030"),
    (T1.encode("gb18030"), "gb18030"),
    (T1.encode("utf-16"), "utf-16"),
    (b"\xfe\xff" + T1.encode("utf-16-be"), "utf-16"),
    ("plain ASCII note, fever 38.5".encode("utf-16-le"), "utf-16-le"),
    ("plain ASCII note, fever 38.5".encode("utf-16-be"), "utf-16-be"),
])
def test_decode_chain_detects_encoding(data, codec):
    text, used = detect_and_decode(data)
    assert used == codec
    assert text in (T1, "plain ASCII note, fever 38.5")  # BOM dropped


def test_decode_chain_reports_encodings_tried():
    with pytest.raises(ValueError, match=r"utf-8, gb18030.*offset 0"):
        detect_and_decode(b"\x80\xff\x80")
    with pytest.raises(ValueError, match=r"as ascii"):
        detect_and_decode(T1.encode("utf-8"), "ascii")
    assert detect_and_decode(T1.encode("gbk"), "gbk") == (T1, "gbk")


def test_utf16_heuristic_ignores_chinese_utf8():
    assert looks_utf16(T1.encode("utf-8")) is None
    assert looks_utf16(T1.encode("gbk")) is None


def test_txt_folder_encodings_and_bad_files():
    items = by_key(items_of(DATA / "notes"))
    notes = f"{DATA / 'notes'}/"
    expected_codecs = {"a_utf8": "utf-8", "b_utf8_bom": "utf-8-sig", "c_gbk": "gb18030", "d_utf16le_bom": "utf-16",
                       "e_utf16be_bom": "utf-16", "f_gb18030": "gb18030", "i_ascii_utf16le": "utf-16-le",
                       "sub/j_crlf": "utf-8"}
    for name, codec in expected_codecs.items():
        item = items[f"{notes}{name}.txt"]
        assert item.ok and item.encoding == codec and item.id == name
    assert items[f"{notes}b_utf8_bom.txt"].text == T2  # BOM removed
    assert items[f"{notes}sub/j_crlf.txt"].text == "入院记录：\r\n因肝癌入院。\r\n"  # raw text kept, CRLF too
    assert items[f"{notes}f_gb18030.txt"].text.endswith("\U00020000")
    bad = items[f"{notes}g_undecodable.txt"]
    assert bad.reason == "undecodable" and "utf-8, gb18030" in bad.detail
    assert items[f"{notes}h_empty.txt"].reason == "empty"
    assert f"{notes}README.md" not in items  # unsupported files are skipped, not errors
    # sorted by relative path, sub-folders in place
    assert [i.id for i in items.values()] == sorted(i.id for i in items.values())


def test_forced_encoding_is_strict():
    items = by_key(items_of(DATA / "notes", encoding="gbk"))
    notes = f"{DATA / 'notes'}/"
    assert items[f"{notes}c_gbk.txt"].ok
    assert items[f"{notes}g_undecodable.txt"].reason == "undecodable"


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "GB2312"])
def test_utf8_records_given_a_gb_encoding_fail_instead_of_being_garbled(tmp_path, encoding):
    """UTF-8 Chinese often decodes as GB18030 / GBK without an error, every character garbled (else the error would
    say it is "not decodable as gbk"): each such record (a CSV file whole) is a failure that names the fix."""
    short = "霍乱伤寒"
    if encoding != "GB2312":
        assert short.encode("utf-8").decode(encoding) == "闇嶄贡浼ゅ瘨"  # what would have been annotated
    (tmp_path / "a.txt").write_text(short, encoding="utf-8")
    (tmp_path / "a2.txt").write_text(T1, encoding="utf-8")
    (tmp_path / "b.txt").write_text(T2, encoding="gbk")
    (tmp_path / "c.txt").write_text("fever 38.5, cough", encoding="utf-8")  # ASCII: the same bytes in both codecs
    (tmp_path / "d.jsonl").write_bytes(json.dumps({"id": "j1", "text": T1}, ensure_ascii=False).encode("utf-8")
                                       + b"\n" + json.dumps({"id": "j2", "text": T2}, ensure_ascii=False).encode("gbk"))
    (tmp_path / "e.csv").write_text(f"id,text\nc1,{T1}\n", encoding="utf-8")
    got = {i.id: (i.reason, i.text) for i in items_of(tmp_path, encoding=encoding)}
    wrong = ("wrong_encoding", None)
    assert got == {"a": wrong, "a2": wrong, "b": (None, T2), "c": (None, "fever 38.5, cough"),
                   f"{tmp_path / 'd.jsonl'}:1": wrong,
                   "j2": (None, T2),
                   f"{tmp_path / 'e.csv'}": wrong}
    detail = next(i.detail for i in items_of(tmp_path / "a.txt", encoding=encoding))
    assert f"not {encoding}" in detail and "--encoding utf-8" in detail and T1 not in detail


# ------------------------------------------------------------------------------------------------ tables
def test_jsonl_fields_and_bad_lines(tmp_path):
    path = DATA / "records.jsonl"
    items = items_of(path, id_field="doc", text_field="body")
    got = {i.source.line: (i.id, i.reason, i.encoding) for i in items}
    key = f"{path}:"
    assert got == {
        1: ("j1", None, "utf-8"),
        3: ("j2", None, "gb18030"),  # a GBK line in a UTF-8 file (blank line 2 is not a record)
        4: (key + "4", "bad_json", None),
        5: ("j4", "empty", None),
        6: ("j5", "missing_text", None),
        7: ("6", None, "utf-8"),  # numeric id kept as text
        8: (key + "8", None, "utf-8"),  # no id: the stable key
        9: (key + "9", "bad_json", None),
        10: (key + "10", "undecodable", None),
    }
    assert items[0].text == T1 and items[1].text == T2
    empty_id = tmp_path / "empty_id.jsonl"  # an empty id is none, as in a CSV: the record's key stands for it
    empty_id.write_text('{"id": "", "text": "患者发热"}\n', encoding="utf-8")
    assert [i.id for i in items_of(empty_id)] == [f"{empty_id}:1"]
    null = tmp_path / "null.jsonl"  # a null text is not a missing field: no "choose it with --text-field"
    null.write_text('{"id": "n", "text": null}\n', encoding="utf-8")
    (item,) = items_of(null)
    assert item.reason == "missing_text" and item.detail == "field `text` is null"
    for item in items:  # no record text in any failure message
        assert item.ok or (T1 not in item.detail and "bad bytes" not in item.detail)


def test_csv_file_level_encoding_and_rows():
    path = DATA / "records.csv"
    items = items_of(path, id_field="pid", text_field="note")
    assert [(i.key, i.id, i.reason) for i in items] == [
        (f"{path}#1", "c1", None), (f"{path}#2", "c2", None), (f"{path}#3", "c3", "bad_row"), (f"{path}#4", "c4", None)]
    assert items[1].text == "主诉：腹痛3天。\n现病史：因胆囊炎入院。"
    assert {i.encoding for i in items if i.ok} == {"gb18030"}
    missing = items_of(path, text_field="body")
    assert len(missing) == 1 and missing[0].reason == "missing_text" and "pid, note" in missing[0].detail


def test_csv_rows_with_other_encoding_are_retried(tmp_path):
    path = tmp_path / "mixed.tsv"
    path.write_bytes(b"id\ttext\n" + b"a\t" + T1.encode("utf-8") + b"\n" + b"b\t" + T2.encode("gbk") + b"\n"
                     + b"c\t\x80\xff\n")
    items = items_of(path)
    assert [(i.id, i.reason, i.encoding) for i in items] == [
        ("a", None, "utf-8"), ("b", None, "gb18030"), ("c", "undecodable", None)]
    assert items[1].text == T2


@pytest.mark.parametrize("encoding", [None, "utf-16", "utf-16-le"])
def test_a_broken_utf16_code_unit_fails_its_line_or_row_only(tmp_path, encoding):
    """A lone surrogate code unit ended the whole file (every record after it, and the lines decoded with it in
    one chunk before it, lost) and a CSV's failure named its header row; a BOM read under utf-16-le broke line 1."""
    bad = "\ufeff".encode("utf-16-le")  # a BOM, then records; record 2's text holds a lone high surrogate unit
    jsonl, table = tmp_path / "w.jsonl", tmp_path / "w.csv"
    lines = [json.dumps({"id": f"w{i}", "text": T1}, ensure_ascii=False) for i in range(4)]
    jsonl.write_bytes(bad + b"".join(line.encode("utf-16-le") + "\n".encode("utf-16-le") if i != 1 else
                                     line[:-2].encode("utf-16-le") + b"\x00\xd8" + '"}\n'.encode("utf-16-le")
                                     for i, line in enumerate(lines)))
    rows = [f"c{i},{T1}" for i in range(4)]  # row 2's text holds the broken unit, row 3's id (that crashed)
    table.write_bytes(bad + "id,text\n".encode("utf-16-le") + b"".join(
        row.encode("utf-16-le") + (b"\x00\xd8" if i == 1 else b"") + "\n".encode("utf-16-le") if i != 2 else
        "c".encode("utf-16-le") + b"\x00\xd8" + f",{T1}\n".encode("utf-16-le") for i, row in enumerate(rows)))
    got = [(i.id, i.reason) for i in items_of(jsonl, table, encoding=encoding)]
    assert got == [("w0", None), (f"{jsonl}:2", "undecodable"), ("w2", None), ("w3", None),
                   ("c0", None), ("c1", "undecodable"), (f"{table}#3", "undecodable"), ("c3", None)]


def test_utf8_rows_of_a_gbk_csv_are_not_garbled(tmp_path):
    """The file is detected as GB18030 (a GBK row in its first MiB); a UTF-8 row whose bytes GB18030 also decodes
    (without an error, every character garbled) is read as UTF-8."""
    utf8 = "男，65岁，予胰岛素治疗，查体示左肾压痛，因直肠癌入院，神志清，精神好，"
    assert utf8.encode("utf-8").decode("gb18030") != utf8  # decodes: what would have been annotated
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"id,text\nu1," + utf8.encode("utf-8") + b"\n"
                     + "乙2,".encode("gbk") + T2.encode("gbk") + b"\nc3,fever 38.5\n")
    items = items_of(path)
    assert [(i.id, i.text, i.encoding) for i in items] == [
        ("u1", utf8, "utf-8"), ("乙2", T2, "gb18030"), ("c3", "fever 38.5", "gb18030")]
    # GBK text whose bytes happen to be valid UTF-8 (偏头痛 -> ƫͷʹ, no CJK) stays GBK, here and under --encoding
    assert "偏头痛".encode("gbk").decode("utf-8") == "\u01ab\u0377\u0374"
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("id,text\n乙2,".encode("gbk") + T2.encode("gbk") + "\nd4,偏头痛\n".encode("gbk"))
    assert [(i.text, i.encoding) for i in items_of(gbk)] == [(T2, "gb18030"), ("偏头痛", "gb18030")]
    short = tmp_path / "short.jsonl"
    short.write_bytes(json.dumps({"id": "s", "text": "偏头痛"}, ensure_ascii=False).encode("gbk") + b"\n")
    assert [(i.text, i.reason) for i in items_of(short, encoding="gbk")] == [("偏头痛", None)]


def test_parquet_string_and_binary_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"rid": ["p1", "p2", None, "p4"], "note": [T1, None, T2, "   "]}), tmp_path / "s.parquet")
    pq.write_table(pa.table({"text": pa.array([T1.encode("gbk"), b"\x80\xff"], pa.binary())}), tmp_path / "b.parquet")
    items = items_of(tmp_path / "s.parquet", id_field="rid", text_field="note")
    assert [(i.id, i.reason) for i in items] == [("p1", None), ("p2", "missing_text"),
                                                (f"{tmp_path / 's.parquet'}#3", None), ("p4", "empty")]
    binary = items_of(tmp_path / "b.parquet")
    assert binary[0].text == T1 and binary[0].encoding == "gb18030" and binary[1].reason == "undecodable"
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert items_of(tmp_path / "broken.parquet")[0].reason == "corrupt"


def test_input_format_override_and_size_limit(tmp_path):
    path = tmp_path / "ccks_like.txt"  # JSON lines in a .txt file, as CCKS 2019 ships them
    path.write_text("\ufeff" + json.dumps({"originalText": T1}, ensure_ascii=False) + "\n"
                    + json.dumps({"originalText": "很长" * 50}, ensure_ascii=False) + "\n", encoding="utf-8")
    items = items_of(path, input_format="jsonl", text_field="originalText", max_record_chars=60)
    assert items[0].text == T1
    assert items[1].reason == "too_long" and "100 characters" in items[1].detail
    whole = items_of(path)  # by suffix: one .txt record
    assert len(whole) == 1 and whole[0].text.startswith('{"originalText"')
    named = tmp_path / "named" / "notes.json"  # named on the command line: read whatever its suffix, never skipped
    named.parent.mkdir()
    named.write_text(json.dumps({"id": "n1", "text": T1}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [(i.id, i.text) for i in items_of(named, input_format="jsonl")] == [("n1", T1)]
    stats = ReadStats()  # in a folder, a file of another suffix is skipped and counted
    assert list(iter_items([str(named.parent)], ReadOptions(input_format="jsonl"), stats=stats)) == []
    assert stats.skipped == 1


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        items_of(tmp_path / "absent.jsonl")
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(CorpusError, match=r"x\.docx: unsupported input file type.*--input-format"):
        items_of(tmp_path / "x.docx")
    with pytest.raises(ConfigError, match="unknown encoding"):
        ReadOptions(encoding="no-such-codec")
    for ratio in (0.5, float("nan")):  # NaN compared false with every ratio: the bomb check was off
        with pytest.raises(ConfigError, match="max_ratio"):
            ArchiveLimits(max_ratio=ratio)


@pytest.mark.parametrize("option,value", [("--max-member-mb", "nan"), ("--max-member-mb", "inf"),
                                          ("--max-archive-gb", "nan"), ("--max-ratio", "nan"),
                                          ("--max-member-mb", "-1"), ("--max-ratio", "lots"),
                                          ("--max-member-mb", "1e308")])
def test_archive_limits_on_the_command_line_are_bounded_numbers(tmp_path, capsys, option, value):
    from medner.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["annotate", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "out"), option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{option}: expected a number from 0 to 1e9, got '{value}'" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ archives
def _zip(path: Path, members: list[tuple[str, bytes, int | None]], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_zip_members_and_safety(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("x.txt", T1)
    jsonl = (json.dumps({"id": "z1", "text": T1}, ensure_ascii=False) + "\n"
             + json.dumps({"id": "z2", "text": T2}, ensure_ascii=False) + "\n").encode("utf-8")
    path = _zip(tmp_path / "a.zip", [
        ("notes/ok.txt", T1.encode("gbk"), stat.S_IFREG | 0o644),
        ("notes/rows.jsonl", jsonl, None),
        ("../evil.txt", b"x", None),
        ("/etc/abs.txt", b"x", None),
        ("C:/win.txt", b"x", None),
        ("notes/link.txt", b"/etc/passwd", stat.S_IFLNK | 0o777),
        ("notes/fifo.txt", b"", stat.S_IFIFO | 0o644),
        ("inner.zip", inner.getvalue(), None),
        ("bomb.txt", b"\0" * (3 << 20), None),
        ("big.jsonl", b" " * 5000, None),
        ("readme.md", b"skip me", None),
        ("notes/", b"", None),
    ])
    limits = ArchiveLimits(max_member_bytes=1 << 22, max_ratio=50, ratio_min_bytes=1 << 20)
    stats = ReadStats()
    items = list(iter_items([path], ReadOptions(limits=limits), stats))
    got = {i.source.member + (f":{i.source.line}" if i.source.line else ""): i for i in items}
    assert got["notes/ok.txt"].text == T1 and got["notes/ok.txt"].id == "notes/ok"
    assert got["notes/rows.jsonl:1"].id == "z1" and got["notes/rows.jsonl:2"].text == T2
    assert got["notes/rows.jsonl:1"].key == f"{path}!notes/rows.jsonl:1"
    reasons = {k: i.reason for k, i in got.items() if not i.ok}
    assert reasons == {"../evil.txt": "unsafe_path", "/etc/abs.txt": "unsafe_path", "C:/win.txt": "unsafe_path",
                       "notes/link.txt": "link", "notes/fifo.txt": "special_file", "inner.zip": "nested_archive",
                       "bomb.txt": "ratio_exceeded"}
    assert "big.jsonl" not in got  # 5000 spaces: no records, and small enough to be read
    assert stats.skipped == 1 and stats.skipped_examples == [f"{path}!readme.md"]
    small = list(iter_items([path], ReadOptions(limits=ArchiveLimits(max_member_bytes=1000))))
    assert {i.source.member for i in small if i.reason == "member_too_large"} == {"bomb.txt", "big.jsonl"}
    capped = list(iter_items([path], ReadOptions(limits=ArchiveLimits(max_total_bytes=100, max_ratio=1e9))))
    assert [i.reason for i in capped if i.source.member == "notes/ok.txt"] == [None]
    assert {i.source.member for i in capped if i.reason == "total_exceeded"} >= {"notes/rows.jsonl", "bomb.txt"}


def test_zip_member_lying_about_its_size_is_cut(tmp_path):
    path = _zip(tmp_path / "lie.zip", [("a.txt", T1.encode("utf-8") * 1000, None)], zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    # shrink the declared size in the central directory: reading stops there or fails the CRC, never more
    with zipfile.ZipFile(path) as zf:
        size = zf.getinfo("a.txt").file_size
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    items = items_of(path)
    assert len(items) == 1 and items[0].reason in ("corrupt", "member_too_large") and size > 100


def test_corrupt_archives(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    assert [i.reason for i in items_of(tmp_path / "bad.zip")] == ["corrupt"]
    assert [i.reason for i in items_of(tmp_path / "bad.tar.gz")] == ["corrupt"]
    good = tmp_path / "cut.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        for n in range(30):
            data = (T1 * 40 + str(n)).encode("utf-8")
            info = tarfile.TarInfo(f"n{n:02d}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = good.read_bytes()
    (tmp_path / "cut2.tar.gz").write_bytes(raw[: len(raw) // 2])
    items = items_of(tmp_path / "cut2.tar.gz")
    assert items and all(i.ok for i in items[:-1]) and items[-1].reason == "corrupt"


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("suffix, mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_tar_members_and_safety(tmp_path, suffix, mode):
    path = tmp_path / f"a{suffix}"
    csv_bytes = f"id,text\nc1,{T1}\nc2,{T2}\n".encode("utf-8")
    with tarfile.open(path, mode) as tf:
        _tar_add(tf, "notes/ok.txt", T2.encode("utf-16"))
        _tar_add(tf, "rows.csv", csv_bytes)
        _tar_add(tf, "../up.txt", b"x")
        _tar_add(tf, "/abs.txt", b"x")
        _tar_add(tf, "sym.txt", kind=tarfile.SYMTYPE, link="/etc/passwd")
        _tar_add(tf, "hard.txt", kind=tarfile.LNKTYPE, link="notes/ok.txt")
        _tar_add(tf, "dev.txt", kind=tarfile.CHRTYPE)
        _tar_add(tf, "fifo.txt", kind=tarfile.FIFOTYPE)
        _tar_add(tf, "dir", kind=tarfile.DIRTYPE)
        _tar_add(tf, "last.txt", T1.encode("utf-8"))
    items = items_of(path)
    got = {i.key.split("!", 1)[1]: i for i in items}
    assert got["notes/ok.txt"].text == T2
    assert got["rows.csv#1"].id == "c1" and got["rows.csv#2"].text == T2
    assert got["last.txt"].text == T1
    assert {k: i.reason for k, i in got.items() if not i.ok} == {
        "../up.txt": "unsafe_path", "/abs.txt": "unsafe_path", "sym.txt": "link", "hard.txt": "link",
        "dev.txt": "special_file", "fifo.txt": "special_file"}


def test_tar_of_dot_reads_every_member_and_passes_hidden_ones_over(tmp_path):
    """`tar czf n.tgz -C notes .` names members ./a.txt: read (the `.` is no hidden folder); ./.x.txt and Mac
    metadata are not, a nested archive among them neither (no nested_archive failure for ._x.zip)."""
    path = tmp_path / "n.tgz"
    with tarfile.open(path, "w:gz") as tf:
        _tar_add(tf, "./a.txt", T1.encode("utf-8"))
        _tar_add(tf, "./sub/b.txt", T2.encode("utf-8"))
        _tar_add(tf, "./.hidden.txt", b"x")
        _tar_add(tf, "./__MACOSX/._x.zip", b"x")
    assert [(i.id, i.reason) for i in items_of(path)] == [("a", None), ("sub/b", None)]  # the folder's ids


def test_tar_gz_bomb_and_total_limit(tmp_path):
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        _tar_add(tf, "first.txt", T1.encode("utf-8"))
        _tar_add(tf, "zeros.txt", b"\0" * (4 << 20))
        _tar_add(tf, "after.txt", T2.encode("utf-8"))
    items = items_of(path, limits=ArchiveLimits(max_ratio=100, ratio_min_bytes=1 << 20))
    assert [(i.source.member, i.reason) for i in items] == [("first.txt", None), ("zeros.txt", "ratio_exceeded")]
    items = items_of(path, limits=ArchiveLimits(max_total_bytes=1 << 20, max_ratio=1e9))
    assert [(i.source.member, i.reason) for i in items] == [("first.txt", None), ("zeros.txt", "total_exceeded")]


@pytest.mark.parametrize("name, bad", [("a/b.txt", False), ("a/..b.txt", False), ("../a.txt", True),
                                       ("a/../../b", True), ("/a", True), ("\\\\srv\\a", True), ("a\\..\\b", True),
                                       ("D:x.txt", True)])
def test_unsafe_member_names(name, bad):
    assert (unsafe_member_name(name) is not None) is bad


# ------------------------------------------------------------------------------------------------ the stream
def test_stream_is_deterministic_with_unique_keys(tmp_path):
    _zip(tmp_path / "z.zip", [("b.txt", T1.encode(), None), ("a.txt", T2.encode(), None)])
    inputs = [DATA / "notes", DATA / "records.jsonl", tmp_path / "z.zip", DATA / "records.csv"]
    first = [(i.key, i.id, i.text, i.reason) for i in items_of(*inputs, id_field="doc", text_field="body")]
    second = [(i.key, i.id, i.text, i.reason) for i in items_of(*inputs, id_field="doc", text_field="body")]
    assert first == second
    keys = [k for k, *_ in first]
    assert len(keys) == len(set(keys))
    zipped = [k for k in keys if k.startswith(str(tmp_path))]
    assert zipped == [f"{tmp_path / 'z.zip'}!b.txt", f"{tmp_path / 'z.zip'}!a.txt"]  # archive order, not sorted


def test_count_items_gives_the_progress_total_or_none(tmp_path):
    import tarfile
    import zipfile

    from medner.batch.sources import count_items

    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"r{i}.txt").write_text(T1, encoding="utf-8")
    (tmp_path / "in" / "b.jsonl").write_text('{"id": "a", "text": "x"}\n\n{"id": "b", "text": "y"}\n', encoding="utf-8")
    (tmp_path / "in" / "c.csv").write_text("id,text\n1,x\n2,y\n3,z\n", encoding="utf-8")
    (tmp_path / "in" / "skip.docx").write_bytes(b"not read")
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as zf:
        zf.writestr("a.txt", T1)
        zf.writestr("b.txt", T2)
    inputs = [tmp_path / "in", tmp_path / "notes.zip"]
    expected = list(iter_items(inputs, ReadOptions()))
    assert count_items(inputs, ReadOptions()) == len(expected) == 3 + 2 + 3 + 2
    with tarfile.open(tmp_path / "notes.tar", "w") as tf:
        tf.add(tmp_path / "in" / "r0.txt", arcname="r0.txt")
    assert count_items([tmp_path / "notes.tar"], ReadOptions()) is None  # a tar stream is not scanned up front


def test_a_zipped_folder_gives_the_same_record_ids_as_the_folder(tmp_path):
    import zipfile

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(T1, encoding="utf-8")
    (folder / "sub" / "b.txt").write_text(T2, encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as zf:  # what `zip -r notes.zip notes` writes
        zf.write(folder / "a.txt", "notes/a.txt")
        zf.write(folder / "sub" / "b.txt", "notes/sub/b.txt")
    from_folder = list(iter_items([folder], ReadOptions()))
    from_zip = list(iter_items([tmp_path / "notes.zip"], ReadOptions()))
    assert [i.id for i in from_zip] == [i.id for i in from_folder] == ["a", "sub/b"]
    assert [i.source.member for i in from_zip] == ["notes/a.txt", "notes/sub/b.txt"]  # the source still says where
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as zf:  # no common folder: nothing is stripped
        zf.write(folder / "a.txt", "notes/a.txt")
        zf.write(folder / "sub" / "b.txt", "b.txt")
    assert [i.id for i in iter_items([tmp_path / "mixed.zip"], ReadOptions())] == ["notes/a", "b"]
    with zipfile.ZipFile(tmp_path / "mac.zip", "w") as zf:  # made on a Mac: metadata beside the folder, not read
        zf.write(folder / "a.txt", "notes/a.txt")
        zf.writestr("__MACOSX/notes/._a.txt", b"\x00\x05\x16\x07")
        zf.writestr("notes/.DS_Store", b"\x00\x00")
        zf.write(folder / "sub" / "b.txt", "notes\\sub\\b.txt")  # and a member named the Windows way
    stats = ReadStats()
    assert [i.id for i in iter_items([tmp_path / "mac.zip"], ReadOptions(), stats)] == ["a", "sub/b"]
    assert stats.skipped == 0  # passed over as a folder's hidden entries are, not counted as unsupported files
