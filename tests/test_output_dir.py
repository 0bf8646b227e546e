"""Safe re-runs: a non-empty output folder is refused (one line naming --resume and --overwrite) before any work;
--overwrite replaces the whole earlier run, never an unrelated folder; the supervision phases check once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import medner.training.supervision as sup
from medner.cli import main
from medner.config import load_config
from medner.errors import ConfigError, CorpusError
from medner.training.finetune import finetune
from medner.run.output_dir import check_output, prepare_output
from tiny_model import write_config

WEAK = Path(__file__).parent / "data" / "supervision" / "weak.yaml"
LABELS = "data.labels=[疾病和诊断, 药物, 解剖部位]"


def earlier_run(out: Path) -> dict[str, bytes]:
    """A folder holding what an earlier run leaves (marker files and one the new run will not write); returns its
    contents."""
    (out / "checkpoint").mkdir(parents=True)
    files = {"metrics.jsonl": b'{"epoch": 1}\n', "dev_report.json": b"{}", "lexicon_features.tsv": b"term\tlabel\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


@pytest.mark.parametrize("entries, resume, overwrite, expected", [
    ([], False, False, False),  # empty: fine, nothing to delete
    (["metrics.jsonl"], True, False, False),  # resume: kept
    (["metrics.jsonl"], False, True, True),  # overwrite an earlier run: delete it first
    (["metrics.jsonl"], True, True, False),  # resume wins
])
def test_check_output(tmp_path, entries, resume, overwrite, expected):
    for name in entries:
        (tmp_path / name).write_text("x")
    assert check_output(tmp_path, resume=resume, overwrite=overwrite) is expected
    assert check_output(tmp_path / "absent", resume=resume, overwrite=overwrite) is False


def test_a_non_empty_folder_is_refused_and_overwrite_deletes_only_runs(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("x")
    with pytest.raises(ConfigError) as err:
        check_output(tmp_path / "run")
    message = str(err.value)
    assert "not empty" in message and "--resume" in message and "--overwrite" in message and "\n" not in message
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="holds no earlier medner run"):
        prepare_output(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_output(tmp_path / "file", resume=True)
    prepare_output(tmp_path / "run", overwrite=True)
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize("foreign", ["notes.txt", "analysis", "data"])
def test_overwrite_refuses_a_run_folder_that_holds_a_users_files_too(tmp_path, foreign):
    """A marker makes a folder a run, but --overwrite deletes only what runs write: a user's notes beside a run, or
    a data folder that happens to hold a `labels.json`, are named and kept."""
    out = tmp_path / "run"
    files = earlier_run(out)
    (out / foreign).mkdir() if foreign != "notes.txt" else (out / foreign).write_text("mine")
    with pytest.raises(ConfigError, match=f"entries no run writes \\({foreign}\\).*move them out"):
        prepare_output(out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == {
        **files, **({"notes.txt": b"mine"} if foreign == "notes.txt" else {})}
    encoder = tmp_path / "encoder"  # what `medner pretrain` writes is a run's too
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "medner_encoder.json", "metrics.jsonl", "pretrain_config.yaml"):
        (encoder / name).parent.mkdir(exist_ok=True)
        (encoder / name).write_text("x")
    assert check_output(encoder, overwrite=True)


def test_finetune_twice_is_a_one_line_refusal_naming_the_flags(tiny_corpus, tmp_path, capsys):
    """What `scripts/finetune.sh configs/emr_zh.yaml` run twice shows the second time (before any work)."""
    path = write_config(tmp_path, tiny_corpus, epochs=1)
    files = earlier_run(tmp_path / "run")
    assert main(["finetune", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error: ") and "\n" not in err and "Traceback" not in err
    assert str(tmp_path / "run") in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == files  # untouched
    assert (tmp_path / "run" / "checkpoint").is_dir()
    with pytest.raises(SystemExit):  # both flags make no sense together
        main(["finetune", str(path), "--resume", "--overwrite"])


def test_overwrite_leaves_no_file_of_the_earlier_run(tiny_corpus, tmp_path):
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1))
    earlier_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="not empty"):
        finetune(config, progress=False)
    run = finetune(config, overwrite=True, progress=False)
    assert not (run / "lexicon_features.tsv").exists()  # the earlier run's, not this one's
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    assert (run / "medner_model.json").is_file()


def test_phases_check_the_output_once_before_any_phase(tiny_corpus, tmp_path, monkeypatch):
    calls = []

    def fake_finetune(config, *, resume=False, overwrite=False, progress=True, data=None, output_ready=False, **_):
        assert output_ready and not overwrite  # prepared once by run_phases; phases never re-check or delete
        calls.append(config.output_dir)
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("{}\n")  # a phase's output, in the folder the next phase writes under
        return out

    monkeypatch.setattr(sup, "finetune", fake_finetune)
    config = load_config(write_config(tmp_path, tiny_corpus), [
        LABELS, f"supervision={{mode: weak+gold, weak_config: {WEAK}, pretrain_epochs: 1}}"])
    sup.run_phases(config, progress=False)
    assert calls == [str(tmp_path / "run" / "phases" / "weak"), str(tmp_path / "run")]
    calls.clear()
    with pytest.raises(ConfigError, match="not empty"):  # the whole run again: refused before the first phase
        sup.run_phases(config, progress=False)
    assert calls == []
    (tmp_path / "run" / "phases" / "weak" / "stale.txt").write_text("x")
    sup.run_phases(config, overwrite=True, progress=False)
    assert len(calls) == 2 and not (tmp_path / "run" / "phases" / "weak" / "stale.txt").exists()
    sup.run_phases(config, resume=True, progress=False)  # resume: every phase continues, nothing deleted
    assert len(calls) == 4


@pytest.mark.parametrize("bad", ["train", "auxiliary", "unlabelled"])
def test_overwrite_with_bad_input_keeps_the_earlier_run(tiny_corpus, tmp_path, bad):
    """--overwrite deletes the earlier run only once the new run's inputs are read and checked: a missing or
    unreadable file is an error that leaves the earlier run as it was."""
    files = earlier_run(tmp_path / "run")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n", encoding="utf-8")
    overrides = {
        "train": [f"data.train=[{broken}]"],
        "auxiliary": [LABELS, "data.auxiliary=[{name: other, format: jsonl, train: [" + str(broken) + "], "
                              "own_labels: true}]"],
        "unlabelled": [LABELS, f"supervision={{mode: weak, weak_config: {WEAK}, unlabelled: [{broken}]}}"],
    }[bad]
    config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), overrides)
    with pytest.raises((ConfigError, CorpusError), match=str(broken)):
        sup.run_phases(config, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == files


def test_an_input_inside_the_output_dir_is_refused_before_overwrite_deletes_it(tiny_run, tiny_corpus, tmp_path):
    """`--set output_dir=X --set init_from=X --overwrite` would delete the run it starts from; a corpus kept in the
    output folder likewise. Refused, whatever the flags, with both left as they were."""
    import shutil

    from medner.config import load_pretrain_config
    from medner.training.distill import distill
    from medner.training.pretrain import pretrain

    start = shutil.copytree(tiny_run, tmp_path / "start")
    before = sorted(p.name for p in start.iterdir())
    corpus = shutil.copytree(tiny_corpus, start / "corpus")  # a corpus put into a run's folder
    for overrides, field in (([f"output_dir={start}", f"init_from={start}"], "init_from"),
                             ([f"output_dir={start}", f"data.train=[{corpus / 'train.jsonl'}]"], "data.train")):
        config = load_config(write_config(tmp_path, tiny_corpus, epochs=1), overrides)
        with pytest.raises(ConfigError, match=f"`{field}` .* lies in the output_dir"):
            finetune(config, overwrite=True, progress=False)
    assert sorted(p.name for p in start.iterdir()) == sorted(before + ["corpus"])
    with pytest.raises(ConfigError, match="`distill.teachers` .* lies in the output_dir"):
        distill([str(start)], tmp_path, overwrite=True, progress=False)
    pretrain_config = tmp_path / "pretrain.yaml"
    pretrain_config.write_text(f"encoder: {{name: {start / 'encoder'}}}\noutput_dir: {start}\n"
                               f"sources: [{{path: {corpus / 'train.jsonl'}}}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="`encoder.name` .* lies in the output_dir"):
        pretrain(load_pretrain_config(pretrain_config), overwrite=True, progress=False)
    assert sorted(p.name for p in start.iterdir()) == sorted(before + ["corpus"])


def test_overwrite_tells_a_killed_run_from_a_model_folder(tmp_path):
    """Leftovers of a kill (a temporary file or folder, an aside folder) belong to the run; a downloaded Hugging
    Face model folder is no run, however much it looks like an encoder medner wrote."""
    killed = tmp_path / "killed"
    files = earlier_run(killed)
    for name in ("config.yaml.tmp4242", "metrics.jsonl.tmp7"):
        (killed / name).write_text("half")
    for name in (".student_init.tmp-host-4242", ".encoder.old-host-4242"):
        (killed / name).mkdir()
    assert check_output(killed, overwrite=True) and len(files) == 3
    model = tmp_path / "bert-base-chinese"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        (model / name).write_text("x")
    with pytest.raises(ConfigError, match="holds no earlier medner run"):
        prepare_output(model, overwrite=True)
    assert len(list(model.iterdir())) == 6
    (model / "labels.json").write_text("x")  # some downloaded model folders hold one: no run marker either
    with pytest.raises(ConfigError, match="holds no earlier medner run"):
        prepare_output(model, overwrite=True)
    assert len(list(model.iterdir())) == 7


def test_overwrite_of_a_linked_output_dir_is_refused_at_once(tmp_path):
    earlier_run(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError, match=r"is a symbolic link.*name the folder it points to"):
        check_output(tmp_path / "link", overwrite=True)
    assert (tmp_path / "real" / "metrics.jsonl").exists()


def test_resume_of_a_folder_holding_no_run_is_refused(tmp_path):
    """--resume into a folder of the user's (or a misspelt output_dir) warned "no complete checkpoint", then
    replaced its config.yaml and README.md; an empty or absent folder still starts a run."""
    mine = tmp_path / "proj"
    mine.mkdir()
    for name in ("README.md", "config.yaml", "notes.txt"):
        (mine / name).write_text("mine")
    with pytest.raises(ConfigError, match="holds no medner run to resume.*leave --resume out"):
        prepare_output(mine, resume=True)
    assert sorted(p.read_text() for p in mine.iterdir()) == ["mine"] * 3
    assert not check_output(tmp_path / "empty", resume=True) and prepare_output(tmp_path / "empty", resume=True)
