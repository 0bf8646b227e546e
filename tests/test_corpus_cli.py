"""`medner corpus stats|convert` through medner.cli.main: output, and one-line errors with exit status 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medner.cli import main
from medner.corpus import read_corpus

DATA = Path(__file__).parent / "data" / "corpus"
TEXT = "患者发热伴咳嗽。"


def jl(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def test_stats_json(capsys):
    assert main(["corpus", "stats", str(DATA / "chip" / "sample.txt"), "--format", "chip", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    stats = json.loads(out[0])
    assert {"records", "characters", "entities", "per_type", "overlapping_pairs", "length_percentiles"} <= set(stats)
    assert (stats["records"], stats["entities"], stats["overlapping_pairs"]) == (4, 10, 3)
    # lengths 10 14 21 22; nearest rank: p50 = 2nd smallest, p90 = p99 = 4th
    assert stats["length_percentiles"] == {"p50": 14, "p90": 22, "p99": 22, "max": 22}
    assert stats["read_report"]["skipped"] == 0


def test_stats_table(capsys):
    assert main(["corpus", "stats", str(DATA / "brat"), "--format", "brat"]) == 0
    out = capsys.readouterr().out
    assert "records" in out and "SYMPTOM" in out and "overlapping pairs" in out


def test_stats_skip_mode_reports_skips(tmp_path, capsys):
    path = tmp_path / "c.txt"
    path.write_text(f"{TEXT}|||2    3    sym|||6    5    sym|||\n", encoding="utf-8")
    assert main(["corpus", "stats", str(path), "--format", "chip", "--on-error", "skip", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entities"] == 1 and stats["read_report"]["skipped_spans"] == 1


def test_stats_with_encoding(tmp_path, capsys):
    path = tmp_path / "gb.txt"
    path.write_bytes(f"{TEXT}|||2    3    sym|||\n".encode("gb18030"))
    assert main(["corpus", "stats", str(path), "--format", "chip", "--encoding", "gb18030", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["characters"] == len(TEXT)


@pytest.mark.parametrize("fmt,path", [("ccks2017", DATA / "ccks2017"), ("cmeee", DATA / "cmeee" / "sample.json"),
                                      ("bio", DATA / "bio" / "bio.txt")])
def test_convert_is_lossless(tmp_path, capsys, fmt, path):
    out = tmp_path / "out.jsonl"
    assert main(["corpus", "convert", str(path), str(out), "--format", fmt]) == 0
    original = list(read_corpus(path, fmt))
    assert list(read_corpus(out, "jsonl")) == original
    assert f"wrote {len(original)} records" in capsys.readouterr().out


def _broken(tmp_path: Path) -> list[tuple[str, Path, str, list[str]]]:
    """(format, path, expected location, extra args) for each broken input."""
    cases = []
    p = tmp_path / "trunc.jsonl"
    p.write_text(jl({"id": "a", "text": TEXT}) + "\n" + jl({"id": "b", "text": TEXT})[:12] + "\n", encoding="utf-8")
    cases.append(("jsonl", p, "trunc.jsonl:2", []))
    p = tmp_path / "order.txt"
    p.write_text(f"{TEXT}|||2    3    sym|||\n{TEXT}|||6    5    sym|||\n", encoding="utf-8")
    cases.append(("chip", p, "order.txt:2", []))
    p = tmp_path / "past.txt"
    p.write_text(jl({"originalText": TEXT, "entities": [{"label_type": "s", "start_pos": 2, "end_pos": 40}]}),
                 encoding="utf-8")
    cases.append(("ccks2019", p, "past.txt:1", []))
    p = tmp_path / "mismatch.json"
    p.write_text(jl([{"text": TEXT, "entities": [{"start_idx": 2, "end_idx": 3, "type": "s", "entity": "咳嗽"}]}]),
                 encoding="utf-8")
    cases.append(("cmeee", p, "mismatch.json:1", []))
    p = tmp_path / "gb.txt"
    p.write_bytes(f"{TEXT}|||2    3    sym|||\n".encode("gb18030") + b"\xff\xfe|||\n")  # line 2: no codec decodes it
    cases.append(("chip", p, "gb.txt:2", []))
    p = tmp_path / "trunc_array.json"
    p.write_text(jl([{"text": TEXT}, {"text": TEXT}])[:-5], encoding="utf-8")
    cases.append(("cmeee", p, "trunc_array.json:1", []))
    return cases


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("command", ["stats", "convert"])
def test_broken_input_gives_one_line_error_and_status_2(tmp_path, capsys, index, command):
    fmt, path, where, extra = _broken(tmp_path)[index]
    out = tmp_path / "out.jsonl"
    args = ["corpus", "stats", str(path)] if command == "stats" else ["corpus", "convert", str(path), str(out)]
    assert main([*args, "--format", fmt, *extra]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("medner: error: ") and where in lines[0] and "Fix:" in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()  # convert leaves nothing behind


def test_gb18030_error_suggests_encoding_option(tmp_path, capsys):
    path = tmp_path / "gb.txt"
    path.write_bytes(f"{TEXT}|||2    3    sym|||\n".encode("gb18030"))
    assert main(["corpus", "stats", str(path), "--format", "chip"]) == 0  # detected
    capsys.readouterr()
    assert main(["corpus", "stats", str(path), "--format", "chip", "--encoding", "utf-8"]) == 2
    assert "--encoding gb18030" in capsys.readouterr().err


def test_missing_path(tmp_path, capsys):
    assert main(["corpus", "stats", str(tmp_path / "nope.txt"), "--format", "chip"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error: ") and "nope.txt: no such file" in err and "\n" not in err


def test_writing_over_the_input_is_refused_by_every_command_that_reads_a_corpus(tmp_path, capsys):
    """`corpus convert X X`, `weak label X -o X` and `predict X -o X` would replace the corpus they read (gold
    spans by weak labels or predictions): refused before reading, the file left as it was."""
    import shutil

    gold = shutil.copy(next((DATA / "jsonl").glob("*.jsonl")), tmp_path / "gold.jsonl")
    before = Path(gold).read_bytes()
    weak_config = Path(__file__).parent / "data" / "supervision" / "weak.yaml"
    for argv in (["corpus", "convert", "--format", "jsonl", str(gold), str(tmp_path / "." / "gold.jsonl")],
                 ["weak", "label", "--config", str(weak_config), str(gold), "--format", "jsonl", "-o", str(gold)],
                 ["predict", "--model", str(tmp_path), str(gold), "-o", str(gold)]):
        assert main(argv) == 2, argv
        assert "writing it would replace what was read" in capsys.readouterr().err
        assert Path(gold).read_bytes() == before


def test_convert_to_standard_output(tmp_path, capsys):
    source = next((DATA / "jsonl").glob("*.jsonl"))
    assert main(["corpus", "convert", "--format", "jsonl", str(source), "-"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["id"] for line in captured.out.splitlines()] == [r.id for r in read_corpus(source)]
    assert "to standard output" in captured.err and not Path("-").exists()  # was a file named `-`


def test_outputs_over_any_file_read_are_refused(tmp_path, capsys):
    """Not only the path given: a brat pair's other file, a file inside an input folder (read again by the next run
    over it), a file of the model run (damaged, the run refused from then on) or the ICD lexicon."""
    import shutil

    gold = Path(shutil.copy(next((DATA / "jsonl").glob("*.jsonl")), tmp_path / "gold.jsonl"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "medner_model.json").write_text("{}", encoding="utf-8")
    brat = tmp_path / "brat"
    brat.mkdir()
    (brat / "1.txt").write_text(TEXT, encoding="utf-8")
    (brat / "1.ann").write_text("T1\tsym 2 4\t发热\n", encoding="utf-8")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT, encoding="utf-8")
    lexicon = tmp_path / "lex.tsv"
    lexicon.write_text("x", encoding="utf-8")
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = [
        (["render", str(gold), "--gold", "-o", str(gold)], "is the input"),
        (["render", str(gold), "--model", str(run), "-o", str(run / "labels.json")], "inside the input folder"),
        (["predict", "--model", str(run), str(gold), "-o", str(run / "medner_model.json")], "inside the input folder"),
        (["predict", "--model", str(run), str(gold), "--icd-lexicon", str(lexicon), "-o", str(lexicon)],
         "is the input"),
        (["predict", "--model", str(run), str(folder), "-o", str(folder / "new.jsonl")], "inside the input folder"),
        (["corpus", "convert", "--format", "brat", str(brat / "1.ann"), str(brat / "1.txt")], "is the input"),
        (["predict", "--model", str(run), str(brat / "1.txt"), "--format", "brat", "-o", str(brat / "1.ann")],
         "is the input"),
        (["weak", "label", "--config", str(Path(__file__).parent / "data" / "supervision" / "weak.yaml"),
          str(brat / "1.txt"), "--format", "brat", "-o", str(brat / "1.ann")], "is the input"),
        (["evaluate", "--gold", str(brat / "1.ann"), "--gold-format", "brat", "--pred", str(gold), "--errors",
          str(brat / "1.txt")], "is the input"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    for size in ("0", "-1"):  # a batch of 0 windows crashed, of -1 predicted nothing: 0 entities, status 0
        assert main(["render", str(gold), "--model", str(run), "-o", str(tmp_path / "x.html"), "--batch-size",
                     size]) == 2
        assert "--batch-size must be a whole number >= 1" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files  # nothing written or changed


def test_stats_counts_spans_with_whitespace_at_an_edge(tmp_path, capsys):
    """Kept as written (offsets are the file's), but named: a model's spans never start or end in whitespace."""
    text = "患者 发热伴咳嗽 。"
    spans = [{"start": 2, "end": 5, "label": "sym"}, {"start": 6, "end": 9, "label": "sym"},
             {"start": 3, "end": 5, "label": "sym"}]  # " 发热", "咳嗽 ", "发热"
    path = tmp_path / "c.jsonl"
    path.write_text(jl({"id": "a", "text": text, "spans": spans[:2]}) + "\n"
                    + jl({"id": "b", "text": text, "spans": spans[2:]}) + "\n", encoding="utf-8")
    assert main(["corpus", "stats", str(path), "--format", "jsonl", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entities"] == 3 and stats["read_report"]["whitespace_edge_spans"] == 2
    assert main(["corpus", "stats", str(path), "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    assert "2 spans begin or end with whitespace" in out and "发热" not in out.split("read:")[1]
