"""`--engine ray` on a local Ray instance: same bytes (after sorting) as the local engine, and it resumes an
output folder that the local engine left half done."""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batch_fakes import crash_after_shards
from medner.batch.runner import AnnotateOptions, annotate
from medner.batch.engine import Shard
from medner.batch.items import Item, ReadOptions, Source
from medner.corpus.validate import RecordProblem
from medner.errors import ConfigError, CorpusError, ModelError

ray = pytest.importorskip("ray")
cloudpickle = pytest.importorskip("ray.cloudpickle")
from medner.batch.ray_engine import RayEngine  # noqa: E402
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


class EmptyAnnotator:
    """Finds nothing: the engine tests below need Ray, not a model."""

    def predict(self, texts):
        return [[] for _ in texts]


class LeakySpan:
    """A span whose check fails with an error quoting its record (as a library's error message may)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @property
    def start(self) -> int:
        raise ValueError(f"no start in {self.text}")


class QuotesTheRecord(EmptyAnnotator):
    def predict(self, texts):
        return [[LeakySpan(text)] for text in texts]


@dataclass(frozen=True)
class FakeSpec:
    error: Callable[[], Exception] | None = None  # made in the worker (Ray pickles the spec to send it)
    annotator: type = EmptyAnnotator

    def load(self):
        if self.error is not None:
            raise self.error()
        return self.annotator()


@dataclass
class FakeOptions:
    threads: int = 1
    workers: int = 1
    spec: FakeSpec = field(default_factory=FakeSpec)
    ray_address: str | None = None
    progress: bool = False
    batch_records: int = 4
    ray_wave_shards: int = 4

    def model_spec(self) -> FakeSpec:
        return self.spec


def one_shard(text: str = "患者发热三天") -> list[Shard]:
    return [Shard(0, [Item(Source("notes.txt"), id="r0", text=text)])]


@pytest.fixture()
def by_value():
    """Ray workers cannot import this test module: send its classes by value."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_more_threads_than_the_cluster_has_cpus_still_runs(local_ray, by_value, caplog):
    engine = RayEngine(FakeOptions(threads=4))  # the local Ray instance has 2 CPUs
    assert engine.actor_cpus(ray) == 2
    with caplog.at_level("WARNING", logger="medner.batch.ray_engine"):
        results = list(engine.run(iter(one_shard())))
    assert [(shard.index, predictions) for shard, predictions, _ in results] == [(0, [[]])]
    assert "--threads 4" in caplog.text and "2 CPUs" in caplog.text


@pytest.mark.parametrize("error,cls", [
    (partial(ModelError, "the model changed", where="run", fix="rerun"), ModelError),
    (partial(ConfigError, "`device` is 'cuda' but no CUDA GPU is visible", field="device"), ConfigError),
    (partial(RecordProblem, "invalid JSON", kind="bad_json", where="a.jsonl:3", fix="fix it"), CorpusError),  # kind
])
def test_a_medner_error_in_a_ray_worker_comes_back_as_one_line(local_ray, by_value, error, cls):
    engine = RayEngine(FakeOptions(spec=FakeSpec(error=error)))
    with pytest.raises(cls) as raised:
        list(engine.run(iter(one_shard())))
    assert str(raised.value) == str(error()) and "\n" not in str(raised.value)


def test_another_error_in_a_ray_worker_is_one_line_without_record_text(local_ray, by_value):
    engine = RayEngine(FakeOptions(spec=FakeSpec(annotator=QuotesTheRecord)))
    with pytest.raises(ModelError) as raised:
        list(engine.run(iter(one_shard("SECRET患者张三"))))
    message = str(raised.value)
    assert "ray" in message.lower() and "\n" not in message
    assert "SECRET" not in message and "张三" not in message
