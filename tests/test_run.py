"""The run directory: format versions, checksums, refusals; the Annotator it returns does not change."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import medner
from medner.errors import ModelError
from medner.run.directory import META_FILE, fingerprint, load_run, read_meta, verify
from medner.types import round_score

V1 = Path(__file__).parent / "data" / "runs" / "v1"
V1_PREDICTIONS = Path(__file__).parent / "data" / "runs" / "v1_predictions.json"


def test_a_format_1_run_loads_and_predicts_as_it_did():
    expected = json.loads(V1_PREDICTIONS.read_text(encoding="utf-8"))
    annotator = medner.load(V1, device="cpu")
    got = [[s.to_dict(t) for s in spans] for t, spans in zip(expected["texts"], annotator.predict(expected["texts"]))]
    assert got == [[{**d, "score": round_score(d["score"])} for d in spans] for spans in expected["spans"]]
    assert annotator.fingerprint == read_meta(V1)["fingerprint"]


def test_a_saved_run_records_every_model_file(tiny_run):
    meta = read_meta(tiny_run)
    assert meta["format_version"] == 2 and meta["labels"]
    names = set(meta["files"])
    assert {"config.yaml", "labels.json", "head.safetensors", "encoder/model.safetensors",
            "adapter/adapter_model.safetensors", "tokenizer/tokenizer.json"} <= names
    assert not any(n.startswith(("checkpoint/", "metrics")) for n in names)
    assert not (tiny_run / "adapter" / "README.md").exists()  # peft's template is not a model card
    verify(tiny_run)


@pytest.fixture
def copy_of(tiny_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("checkpoint"))
    return target


@pytest.mark.parametrize("name", ["encoder/model.safetensors", "head.safetensors", "config.yaml",
                                  "tokenizer/tokenizer.json"])
def test_a_changed_or_truncated_model_file_is_named(copy_of, name):
    path = copy_of / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="damaged or changed") as err:
        load_run(copy_of)
    assert name.split("/")[-1] in str(err.value) and "Fix:" in str(err.value)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(ModelError, match="damaged or changed"):
        medner.load(copy_of, device="cpu")


def test_missing_added_and_pickle_files_are_refused(copy_of):
    (copy_of / "encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelError, match="pickle") as err:
        load_run(copy_of)
    assert "pytorch_model.bin" in str(err.value)
    (copy_of / "encoder" / "pytorch_model.bin").unlink()
    (copy_of / "encoder" / "extra.json").write_text("{}")
    with pytest.raises(ModelError, match="added after"):
        load_run(copy_of)
    (copy_of / "encoder" / "extra.json").unlink()
    (copy_of / "head.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_run(copy_of)


def test_metadata_problems_say_what_to_do(copy_of, tmp_path):
    with pytest.raises(ModelError, match="nowhere: no such run directory"):
        read_meta(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="not a medner run directory"):
        read_meta(tmp_path)
    meta = json.loads((copy_of / META_FILE).read_text(encoding="utf-8"))
    (copy_of / META_FILE).write_text("[]")  # valid JSON, not a run's metadata
    with pytest.raises(ModelError, match=r"damaged medner_model.json .*copy the run directory again"):
        read_meta(copy_of)
    (copy_of / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match="run format 99"):
        load_run(copy_of)
    (copy_of / META_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        fingerprint(copy_of)


def test_the_fingerprint_changes_with_any_weight(tiny_run, copy_of):
    from medner.run.directory import reseal

    head = copy_of / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 1
    head.write_bytes(bytes(data))
    assert reseal(copy_of) != fingerprint(tiny_run)


def test_an_annotator_does_not_change_once_built(tiny_run):
    annotator = medner.load(tiny_run, device="cpu")
    with pytest.raises(AttributeError, match="does not change"):
        annotator.linker = None
    narrow = medner.load(tiny_run, device="cpu", window={"max_chars": 12, "overlap": 2})
    assert (narrow.window.max_chars, narrow.window.overlap) == (12, 2)
    assert narrow.window.max_tokens == annotator.window.max_tokens
    assert medner.load(tiny_run, device="cpu", precision="bf16").dtype is not None


def test_weight_files_are_as_readable_as_the_other_files_of_a_run(tiny_run):
    """safetensors writes owner-only files: a colleague who can read a run's config could not load its weights."""
    expected = (tiny_run / "config.yaml").stat().st_mode & 0o777
    modes = {p.relative_to(tiny_run).as_posix(): p.stat().st_mode & 0o777 for p in tiny_run.rglob("*.safetensors")}
    assert "head.safetensors" in modes and set(modes.values()) == {expected}, modes
