"""medner.files: folders published whole or not at all."""
from __future__ import annotations

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
