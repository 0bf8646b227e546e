"""`--engine ray` on a local Ray instance: same bytes (after sorting) as the local engine, and it resumes an
output folder that the local engine left half done."""
from __future__ import annotations

from pathlib import Path

import pytest

from batch_fakes import crash_after_shards
from medner.batch.runner import AnnotateOptions, annotate
from medner.batch.items import ReadOptions

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "batch"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def sorted_lines(out: Path) -> list[str]:
    lines = []
    for path in (out / "shards").glob("part-*.jsonl"):
        lines += path.read_text(encoding="utf-8").splitlines()
    return sorted(lines)


def test_ray_engine_matches_local_engine_and_resumes(tiny_run, tmp_path, local_ray, monkeypatch):
    common = dict(model=tiny_run, inputs=[DATA / "notes", DATA / "records.jsonl"],
                  read=ReadOptions(id_field="doc", text_field="body"), shard_size=3, threads=1, progress=False)
    local = annotate(AnnotateOptions(out=tmp_path / "local", **common))
    on_ray = annotate(AnnotateOptions(out=tmp_path / "ray", engine="ray", workers=2, ray_wave_shards=4, **common))
    assert sorted_lines(tmp_path / "ray") == sorted_lines(tmp_path / "local")
    assert (tmp_path / "ray" / "errors.jsonl").read_bytes() == (tmp_path / "local" / "errors.jsonl").read_bytes()
    assert on_ray["counts"] == local["counts"] and on_ray["engine"] == "ray"
    assert on_ray["shards"]["count"] > 4  # more than one wave

    # the local engine dies after two shards; Ray finishes the folder
    with crash_after_shards(monkeypatch, 2):
        annotate(AnnotateOptions(out=tmp_path / "mixed", **common))
    resumed = annotate(AnnotateOptions(out=tmp_path / "mixed", engine="ray", workers=2, **common))
    assert resumed["resumed_shards"] == 2
    assert sorted_lines(tmp_path / "mixed") == sorted_lines(tmp_path / "local")
