"""Weight averaging of run directories (medner.run.soup): the mean of the merged weights, loadable as a run."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import medner
from medner.cli import main
from medner.config import load_config
from medner.corpus import read_corpus
from medner.errors import ModelError
from medner.run.directory import load_run, reseal
from medner.run.soup import average_runs
from medner.training.finetune import finetune
from tiny_model import write_config


@pytest.fixture(scope="module")
def sibling(tmp_path_factory, tiny_corpus, tiny_run):
    """A second member: ``tiny_run``'s weights trained two more epochs with another seed."""
    root = tmp_path_factory.mktemp("sibling")
    config = load_config(write_config(root, tiny_corpus, epochs=2), [f"init_from={tiny_run}", "seed=11"])
    return finetune(config, progress=False)


def test_soup_weights_are_the_mean_of_the_merged_members(tiny_run, sibling, tmp_path):
    out = average_runs([tiny_run, sibling], tmp_path / "soup")
    a, b = (load_run(run).tagger.state_dict() for run in (tiny_run, sibling))
    assert any(not torch.equal(a[k], b[k]) for k in a if "encoder" in k), "members must differ for this test"
    loaded = load_run(out)
    config, meta = loaded.config, loaded.meta
    for key, value in loaded.tagger.state_dict().items():
        torch.testing.assert_close(value, (a[key] + b[key]) / 2 if value.is_floating_point() else a[key])
    assert meta["encoder"] == "full" and config.lora is None and config.output_dir == str(out)
    assert [m["run"] for m in meta["soup"]] == [str(tiny_run), str(sibling)]
    assert all(len(m["fingerprint"]) == 16 for m in meta["soup"])


def test_soup_of_a_run_with_its_copy_predicts_like_the_run(tiny_run, tiny_corpus, tmp_path, caplog):
    texts = [r.text for r in read_corpus(tiny_corpus / "dev.jsonl", "jsonl")]
    copy = shutil.copytree(tiny_run, tmp_path / "copy")
    with pytest.raises(ModelError, match="is named twice"):  # one run twice: a weighted average, not a soup
        average_runs([tiny_run, copy / ".." / "copy", copy], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()
    out = average_runs([tiny_run, copy], tmp_path / "soup")
    assert "has the same weights as" in caplog.text
    expected, got = medner.load(tiny_run, device="cpu").predict(texts), medner.load(out, device="cpu").predict(texts)
    assert any(expected), "the tiny run must predict something for this test"
    assert [[(s.start, s.end, s.label) for s in spans] for spans in got] == \
        [[(s.start, s.end, s.label) for s in spans] for spans in expected]
    assert [s.score for spans in got for s in spans] == pytest.approx([s.score for spans in expected for s in spans],
                                                                       abs=1e-5)


def _edit_json(path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("name, edit, message", [
    ("labels.json", lambda d: d["types"].pop(), "another label scheme"),
    ("tokenizer/tokenizer.json", lambda d: d["model"]["vocab"].pop(), "another tokenizer"),
    ("medner_model.json", lambda d: d.update(lexicon_fingerprint="0" * 16), "different lexicon features"),
])
def test_soup_refuses_members_that_do_not_match(tiny_run, sibling, tmp_path, name, edit, message):
    odd = tmp_path / "odd"
    shutil.copytree(sibling, odd)
    _edit_json(odd / name, edit)
    with pytest.raises(ModelError, match=message) as err:
        average_runs([tiny_run, odd], tmp_path / "soup")
    assert "odd" in str(err.value) or name == "medner_model.json"
    assert not (tmp_path / "soup").exists(), "nothing is written for a refused soup"


def test_soup_never_writes_over_a_member_or_a_full_directory(tiny_run, sibling, tmp_path):
    with pytest.raises(ModelError, match="at least two"):
        average_runs([tiny_run], tmp_path / "soup")
    with pytest.raises(ModelError, match="is one of its members"):
        average_runs([tiny_run, sibling], sibling)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ModelError, match="not empty"):
        average_runs([tiny_run, sibling], tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ModelError, match="a_file exists and is not a directory"):
        average_runs([tiny_run, sibling], tmp_path / "a_file")
    assert (tmp_path / "a_file").read_text() == "x"
    with pytest.raises(ModelError, match="lies inside its member"):
        average_runs([tiny_run, sibling], sibling / "soup")
    assert not (sibling / "soup").exists()
    damaged = tmp_path / "damaged"  # was a JSONDecodeError traceback
    shutil.copytree(sibling, damaged)
    (damaged / "labels.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match=r"damaged/labels.json: model file damaged or missing"):
        average_runs([tiny_run, damaged], tmp_path / "soup")


def test_soup_command(tiny_run, sibling, tmp_path, capsys):
    assert main(["soup", str(tiny_run), str(sibling), "-o", str(tmp_path / "soup")]) == 0
    assert json.loads((tmp_path / "soup" / "medner_model.json").read_text(encoding="utf-8"))["soup"]
    assert main(["soup", str(tiny_run), str(tmp_path / "nowhere"), "-o", str(tmp_path / "soup2")]) == 2
    assert "nowhere: no such run directory" in capsys.readouterr().err


def test_soup_keeps_icd_linking_when_the_members_lexicon_has_moved(tiny_run, sibling, tiny_corpus, tmp_path):
    import yaml

    from medner.lexicon import LexiconEntry, write_lexicon

    lexicon = tmp_path / "icd.tsv"
    write_lexicon([LexiconEntry(name, "疾病和诊断", code, name, "icd10")
                   for name, code in (("直肠癌", "C20.x00"), ("胃癌", "C16.900"), ("肺炎", "J18.900"))], lexicon)
    members = []
    for run in (tiny_run, sibling):
        linked = tmp_path / f"linked_{run.parent.name}"
        shutil.copytree(run, linked, ignore=shutil.ignore_patterns("checkpoint"))
        cfg = yaml.safe_load((linked / "config.yaml").read_text(encoding="utf-8"))
        cfg["link"] = {"lexicon": str(tmp_path / "moved_away.tsv"), "labels": ["疾病和诊断"], "min_score": 0.6}
        (linked / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        shutil.copyfile(lexicon, linked / "icd_lexicon.tsv")
        reseal(linked)  # a deliberate edit: record the new files
        members.append(linked)
    out = average_runs(members, tmp_path / "soup")
    assert (out / "icd_lexicon.tsv").read_bytes() == lexicon.read_bytes()
    texts = [r.text for r in read_corpus(tiny_corpus / "dev.jsonl", "jsonl")]
    assert any(s.code for spans in medner.load(out, device="cpu").predict(texts) for s in spans)
