"""Corpus folders and zips made on a Mac: ``__MACOSX/`` metadata and dot-files (``._0.txt``, ``.DS_Store``) are not
documents; the readers pass over them, count them and log the count (never their bytes)."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest

from medner.corpus import ReadReport, read_corpus
from medner.files import not_a_record

# an AppleDouble file (what a Mac writes as ._NAME): binary, not text in any encoding
APPLE_DOUBLE = (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02\x00\x00\x00\t\x00\x00\x002\x00\x00\x0e\xb0"
                + bytes(range(256)))


def spans_of(path: Path, fmt: str, on_error: str) -> list[tuple[str, list[str]]]:
    records = list(read_corpus(path, fmt, on_error=on_error, report=ReadReport()))
    return [(r.id, [r.text[s.start:s.end] for s in r.spans]) for r in records]


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_ccks2017_zip_made_on_a_mac_reads_its_documents_only(tmp_path, caplog, on_error):
    path = tmp_path / "mac.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("d/一般项目/一般项目-1.txtoriginal.txt", "患者发热。\r\n".encode())
        zf.writestr("d/一般项目/一般项目-1.txt", "发热\t2\t3\t症状和体征\r\n".encode())
        zf.writestr("__MACOSX/d/一般项目/._一般项目-1.txtoriginal.txt", APPLE_DOUBLE)
        zf.writestr("__MACOSX/d/一般项目/._一般项目-1.txt", APPLE_DOUBLE)
        zf.writestr("d/.DS_Store", APPLE_DOUBLE)
    with caplog.at_level(logging.INFO, logger="medner.corpus"):
        assert spans_of(path, "ccks2017", on_error) == [("一般项目/一般项目-1", ["发热"])]
    assert "2 hidden or Mac metadata files ignored" in caplog.text and "发热" not in caplog.text  # .txt ones


def test_a_ccks2017_folder_with_dot_files_reads_its_documents_only(tmp_path, caplog):
    section = tmp_path / ".corpora" / "d" / "一般项目"  # a hidden folder above the corpus is no part of its names
    section.mkdir(parents=True)
    (section / "一般项目-1.txtoriginal.txt").write_bytes("患者发热。\r\n".encode())
    (section / "一般项目-1.txt").write_bytes("发热\t2\t3\t症状和体征\r\n".encode())
    (section / "._一般项目-1.txtoriginal.txt").write_bytes(APPLE_DOUBLE)
    (section / "._一般项目-1.txt").write_bytes(APPLE_DOUBLE)
    with caplog.at_level(logging.INFO, logger="medner.corpus"):
        assert spans_of(tmp_path / ".corpora" / "d", "ccks2017", "raise") == [("一般项目/一般项目-1", ["发热"])]
    assert "2 hidden or Mac metadata files ignored" in caplog.text


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_brat_folder_made_on_a_mac_reads_its_documents_only(tmp_path, caplog, on_error):
    root = tmp_path / "brat"
    (root / "__MACOSX").mkdir(parents=True)
    (root / "0.txt").write_text("患者发热。", encoding="utf-8")
    (root / "0.ann").write_text("T1\tSYM 2 4\t发热\n", encoding="utf-8")
    for name in ("._0.txt", "._0.ann", "__MACOSX/._0.txt", "__MACOSX/0.ann"):
        (root / name).write_bytes(APPLE_DOUBLE)
    with caplog.at_level(logging.INFO, logger="medner.corpus"):
        assert spans_of(root, "brat", on_error) == [("0", ["发热"])]
    assert "4 hidden or Mac metadata files ignored" in caplog.text and "发热" not in caplog.text


def test_which_names_are_not_records():
    for name in ("__MACOSX/d/._a.txt", "._a.txt", "d/.DS_Store", ".git/x.txt", "./.hidden.txt", "a\\.b.txt"):
        assert not_a_record(name), name
    for name in ("a.txt", "./a.txt", "d/一般项目-1.txt", "a..txt", "MACOSX/a.txt"):
        assert not not_a_record(name), name
