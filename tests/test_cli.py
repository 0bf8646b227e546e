"""Command-line manners: --version, -v/-q before or after the command, predict from .txt files, folders and
standard input, a closed pipe ends quietly, help texts."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medner import __version__
from medner.cli import BROKEN_PIPE_STATUS, build_parser, log_level, main
from medner.corpus import read_corpus, write_jsonl
from medner.types import Record, Span

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def run_cli(*argv: str, stdin: bytes | None = None, shell: str | None = None) -> subprocess.CompletedProcess:
    if shell is not None:
        return subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, env=ENV, cwd=REPO,
                              timeout=300)
    return subprocess.run([sys.executable, "-m", "medner", *argv], input=stdin, capture_output=True, env=ENV,
                          cwd=REPO, timeout=300)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"medner {__version__}"


@pytest.mark.parametrize("argv, level", [
    (["evaluate", "--gold", "g", "--pred", "p"], logging.INFO),
    (["-v", "evaluate", "--gold", "g", "--pred", "p"], logging.DEBUG),
    (["evaluate", "--gold", "g", "--pred", "p", "-v"], logging.DEBUG),
    (["-q", "evaluate", "--gold", "g", "--pred", "p"], logging.WARNING),
    (["evaluate", "-q", "--gold", "g", "--pred", "p"], logging.WARNING),
    (["-q", "lexicon", "stats", "x", "-q"], logging.ERROR),
    (["corpus", "stats", "x", "--format", "jsonl", "-vv"], logging.DEBUG),
])
def test_verbosity_before_or_after_the_command(argv, level):
    assert log_level(build_parser().parse_args(argv)) == level


def test_help_texts_of_predict():
    parser = build_parser()
    predict = next(a for a in parser._actions if a.dest == "command").choices["predict"]
    helps = {a.dest: a.help for a in predict._actions}
    assert helps["batch_size"] and "windows" in helps["batch_size"]
    assert all(helps[d] for d in ("input", "model", "format", "encoding", "output", "device", "icd_lexicon"))


def test_predict_reads_txt_files_folders_and_jsonl(tiny_run, tmp_path, capsys):
    folder = tmp_path / "notes"
    (folder / "ward").mkdir(parents=True)
    (folder / "a.txt").write_text("患者因胃癌入院。\n查体示肝压痛。", encoding="utf-8")
    (folder / "ward" / "b.txt").write_bytes("因直肠癌入院，予阿司匹林治疗。".encode("gb18030"))
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(tiny_run), str(folder), "-o", str(out), "--device", "cpu"]) == 0
    records = {r.id: r for r in read_corpus(out)}
    assert set(records) == {"a", "ward/b"} and records["ward/b"].text == "因直肠癌入院，予阿司匹林治疗。"
    assert main(["predict", "--model", str(tiny_run), str(folder / "a.txt"), "--device", "cpu"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()  # standard output by default
    assert json.loads(line)["id"] == "a" and json.loads(line)["text"] == records["a"].text
    gold = tmp_path / "gold.jsonl"
    write_jsonl([Record("g1", "因胃癌入院", (Span(1, 3, "疾病和诊断"),), {"ward": 3})], gold)
    assert main(["predict", "--model", str(tiny_run), str(gold), "-o", str(out), "--device", "cpu"]) == 0
    (record,) = read_corpus(out)
    assert record.id == "g1" and record.meta == {"ward": 3}  # the project's jsonl keeps ids and meta
    table = tmp_path / "table" / "notes.csv"  # other column names: --id-field / --text-field, as annotate takes
    table.parent.mkdir()
    table.write_text("病历号,内容\nn1,因胃癌入院\n", encoding="utf-8")
    assert main(["predict", "--model", str(tiny_run), str(table), "-o", str(out), "--device", "cpu",
                 "--id-field", "病历号", "--text-field", "内容"]) == 0
    assert [(r.id, r.text) for r in read_corpus(out)] == [("n1", "因胃癌入院")]
    lines = tmp_path / "table" / "notes.jsonl"  # a .jsonl with other keys: read as annotate reads it too
    lines.write_text('{"病历号": "n2", "内容": "因直肠癌入院"}\n', encoding="utf-8")
    assert main(["predict", "--model", str(tiny_run), str(lines), "-o", str(out), "--device", "cpu",
                 "--id-field", "病历号", "--text-field", "内容"]) == 0
    assert [(r.id, r.text) for r in read_corpus(out)] == [("n2", "因直肠癌入院")]
    assert main(["predict", "--model", str(tiny_run), str(gold), "--format", "jsonl", "--text-field", "内容"]) == 2


def test_predict_from_standard_input(tiny_run):
    done = run_cli("predict", "--model", str(tiny_run), "--device", "cpu", "-q", "-",
                   stdin="患者因直肠癌入院，予阿司匹林治疗。\n\n右肺呼吸音清。\n".encode("utf-8"))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["stdin:1", "stdin:3"] and rows[1]["text"] == "右肺呼吸音清。"
    assert all(set(s) >= {"start", "end", "label", "text", "score"} and "code" not in s for r in rows
               for s in r["spans"])  # no linker: `code` is left out, never null
    assert b"INFO" not in done.stderr  # -q after the command


def test_standard_input_is_decoded_as_files_are(monkeypatch):
    import io

    from medner.cli.predict import _stdin_records
    from medner.errors import CorpusError

    def stdin(data: bytes):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))

    for codec in ("utf-8", "gb18030", "utf-16"):  # GB18030 was "not utf-8-sig (UnicodeDecodeError)"
        stdin("患者发热\n右肺呼吸音清。\n".encode(codec))
        assert [r.text for r in _stdin_records(None)] == ["患者发热", "右肺呼吸音清。"]
    stdin(b"\x80\xff\x80\n")
    with pytest.raises(CorpusError, match=r"standard input cannot decode as utf-8, gb18030 \(first bad byte at "
                                          r"offset 0\).*--encoding"):
        list(_stdin_records(None))


def test_predict_stops_at_a_malformed_span_or_skips_it_on_request(tiny_run, tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "患者因胃癌入院。", "spans": [{"start": 5, "end": 1, "label": "x"}]},
                                 ensure_ascii=False) + "\n" + json.dumps({"id": "b", "text": "右肺呼吸音清。"},
                                                                           ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(tiny_run), str(corpus), "-o", str(out), "--device", "cpu"]) == 2
    assert "c.jsonl:1 span 0" in capsys.readouterr().err and not out.exists()
    assert main(["predict", "--model", str(tiny_run), str(corpus), "-o", str(out), "--device", "cpu",
                 "--on-error", "skip"]) == 0
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "b"]


def test_predict_errors_are_one_line(tiny_run, tmp_path, capsys):
    assert main(["predict", "--model", str(tiny_run), str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error:") and "missing.txt" in err and "\n" not in err
    broken = tmp_path / "s.jsonl"  # a broken JSON escape: half a surrogate pair, no Unicode text
    broken.write_text('{"id": "s1", "text": "患者因高血压\\ud83d入院"}\n', encoding="utf-8")
    not_utf8 = tmp_path / "gbk.tsv"
    not_utf8.write_bytes("term\tlabel\n霍乱\t疾病和诊断\n".encode("gb18030"))
    (tmp_path / "ok.txt").write_text("患者因胃癌入院。", encoding="utf-8")
    for args, message in (([str(broken)], "s.jsonl record s1: lone surrogate at character 6"),
                          ([str(tmp_path / "ok.txt"), "--device", "tpu"], "`device` is 'tpu'"),
                          ([str(tmp_path / "ok.txt"), "--icd-lexicon", str(not_utf8)], "gbk.tsv:2: cannot decode")):
        assert main(["predict", "--model", str(tiny_run), *args, "-o", str(tmp_path / "out.jsonl")]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("medner: error:") and message in err and "\n" not in err, err
        assert "高血压" not in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    lexicon = REPO / "tests" / "data" / "spacy" / "lexicon.tsv"
    (tmp_path / "in.txt").write_text("因直肠癌入院\n" * 20000, encoding="utf-8")
    done = run_cli(shell=f"{sys.executable} -m medner lexicon match {lexicon} < {tmp_path / 'in.txt'} | head -n 1")
    assert done.stdout.decode("utf-8").count("\n") == 1
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr.decode()[-2000:]
    assert done.returncode == BROKEN_PIPE_STATUS  # pipefail: medner's own status, from the handler in main
    records = [Record(f"r{i}", "因胃癌入院" * 20, (Span(1, 3, "疾病和诊断"),)) for i in range(300)]
    write_jsonl(records, tmp_path / "g.jsonl")
    done = run_cli(shell=f"{sys.executable} -m medner evaluate --gold {tmp_path / 'g.jsonl'} "
                         f"--pred {tmp_path / 'g.jsonl'} --json | head -n 2")
    assert b"Traceback" not in done.stderr and done.stdout.decode().count("\n") == 2


def test_an_interrupted_command_that_resumes_says_how(monkeypatch, capsys, tmp_path):
    import medner.batch.runner as runner
    import medner.training.supervision as supervision

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "annotate", interrupted)  # both looked up when the command runs
    monkeypatch.setattr(supervision, "run_phases", interrupted)
    (tmp_path / "in.txt").write_text("因胃癌入院", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{train: [{tmp_path / 'in.jsonl'}]}}\noutput_dir: {tmp_path / 'run'}\n")
    for argv, hint in ((["annotate", "--model", str(tmp_path), str(tmp_path / "in.txt"), "--out",
                         str(tmp_path / "out")], "rerun the same command to continue where it stopped"),
                       (["finetune", str(config)], "rerun the command with --resume (in place of --overwrite")):
        assert main(argv) == 130
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"medner: interrupted; {hint}")


def test_predict_over_a_folder_with_an_unreadable_file_predicts_the_rest_and_exits_3(tiny_run, tmp_path, caplog):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("患者因胃癌入院。", encoding="utf-8")
    (folder / "b.txt").write_text("   ", encoding="utf-8")  # empty: no record to predict
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(tiny_run), str(folder), "-o", str(out), "--device", "cpu"]) == 3
    assert [r.id for r in read_corpus(out)] == ["a"]
    repeated = tmp_path / "twice.jsonl"  # predicted, but evaluate would refuse the output: said at once
    write_jsonl([Record("r1", "因胃癌入院"), Record("r1", "查体示肝压痛")], repeated)
    assert main(["predict", "--model", str(tiny_run), str(repeated), "-o", str(out), "--device", "cpu"]) == 0
    assert len(list(read_corpus(out))) == 2 and "1 record ids occur more than once (first: r1)" in caplog.text


def test_file_system_refusals_and_bad_numbers_are_one_line(tmp_path, capsys):
    lexicon = REPO / "tests" / "data" / "spacy" / "lexicon.tsv"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv, message in ((["lexicon", "match", str(lexicon), "高血压", "--min-length", "0"], "--min-length must be"),
                          (["corpus", "convert", "--format", "jsonl", str(REPO / "tests" / "data" / "corpus" / "jsonl"
                                                                           / "sample.jsonl"),
                            str(a_file / "out.jsonl")], "a_file")):  # a path through a file
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("medner: error:") and message in err and "\n" not in err, err
