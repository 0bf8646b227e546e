"""medner.files: folders published whole or not at all."""
from __future__ import annotations

import os
import socket

import pytest

from medner.files import publish_folder


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
    from medner.training.output_dir import check_output

    out = tmp_path / "student"
    (out / f".student_init.tmp-{socket.gethostname()}-{2 ** 22 + 1}").mkdir(parents=True)
    assert check_output(out, overwrite=True)
