"""Record text never reaches an error message, a log record or a read report: corrupted corpora in every format,
with secret markers in the record text and the annotations' mentions, read under both on_error policies and
through `medner corpus` and `medner evaluate`. With --show-text (debugging a corpus) the markers do appear."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medner.cli import main
from medner.corpus import ReadReport, read_corpus
from medner.errors import MednerError

SECRET = "SECRETXQZ"
SECRET_ZH = "机密标记"
MARKERS = (SECRET, SECRET_ZH)
TEXT = f"患者{SECRET}发热{SECRET_ZH}伴咳嗽。"  # SECRET = [2, 11), 发热 = [11, 13), SECRET_ZH = [13, 17)


def jl(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def jsonl(obj) -> callable:
    return lambda root: write(root / "c.jsonl", jl(obj))


def brat(ann: str) -> callable:
    def build(root: Path) -> Path:
        write(root / "b" / "1.txt", TEXT)
        write(root / "b" / "1.ann", ann)
        return root / "b"
    return build


def ccks2017(ann: str) -> callable:
    def build(root: Path) -> Path:
        write(root / "c17" / "sec" / "sec-1.txtoriginal.txt", TEXT)
        write(root / "c17" / "sec" / "sec-1.txt", ann)
        return root / "c17"
    return build


# each case: one corruption that a careless message would quote
CASES = {
    "jsonl-mention-mismatch": ("jsonl", jsonl({"id": "a", "text": TEXT, "spans": [
        {"start": 2, "end": 11, "label": "x", "text": SECRET_ZH + SECRET}]})),
    "jsonl-mention-shifted": ("jsonl", jsonl({"id": "a", "text": TEXT, "spans": [
        {"start": 3, "end": 12, "label": "x", "text": SECRET}]})),
    "jsonl-offset-is-text": ("jsonl", jsonl({"id": "a", "text": TEXT, "spans": [
        {"start": SECRET, "end": 11, "label": "x"}]})),
    "jsonl-label-is-a-list": ("jsonl", jsonl({"id": "a", "text": TEXT, "spans": [
        {"start": 2, "end": 11, "label": [SECRET]}]})),
    "jsonl-unknown-key": ("jsonl", jsonl({"id": "a", "text": TEXT, SECRET_ZH: 1})),
    "jsonl-unknown-span-key": ("jsonl", jsonl({"id": "a", "text": TEXT, "spans": [
        {"start": 2, "end": 11, "label": "x", SECRET_ZH + "x": 1}]})),
    "jsonl-truncated-line": ("jsonl", lambda root: write(root / "c.jsonl", jl({"id": "a", "text": TEXT})[:20] + "\n")),
    "jsonl-text-not-a-string": ("jsonl", jsonl({"id": "a", "text": [TEXT]})),
    "ccks2019-offset-is-text": ("ccks2019", jsonl({"originalText": TEXT, "entities": [
        {"label_type": "x", "start_pos": SECRET_ZH, "end_pos": 3}]})),
    "ccks2019-past-the-end": ("ccks2019", jsonl({"originalText": TEXT, "entities": [
        {"label_type": "x", "start_pos": 2, "end_pos": 99}]})),
    "cmedqaner-mismatch": ("cmedqaner", jsonl({"text": TEXT, "mention_data": [
        {"mention": SECRET + "x", "offset": "2", "type": "x"}]})),
    "cmedqaner-offset-is-text": ("cmedqaner", jsonl({"text": TEXT, "mention_data": [
        {"mention": SECRET, "offset": SECRET, "type": "x"}]})),
    "cmeee-mismatch": ("cmeee", lambda root: write(root / "c.json", json.dumps([{"text": TEXT, "entities": [
        {"start_idx": 2, "end_idx": 10, "type": "x", "entity": SECRET_ZH}]}], ensure_ascii=False))),
    "cmeee-offset-is-text": ("cmeee", lambda root: write(root / "c.json", json.dumps([{"text": TEXT, "entities": [
        {"start_idx": SECRET, "end_idx": 10, "type": "x"}]}], ensure_ascii=False))),
    "chip-offset-is-text": ("chip", lambda root: write(root / "c.txt", f"{TEXT}|||{SECRET} 10 x|||\n")),
    "chip-start-after-end": ("chip", lambda root: write(root / "c.txt", f"{TEXT}|||10 2 x|||\n")),
    "chip-two-fields": ("chip", lambda root: write(root / "c.txt", f"{TEXT}|||{SECRET_ZH} {SECRET}|||\n")),
    "bio-tag-is-text": ("bio", lambda root: write(root / "c.bio", f"患 O\n{SECRET[0]} {SECRET}\n\n")),
    "bio-tag-is-chinese": ("bio", lambda root: write(root / "c.bio", f"患 {SECRET_ZH}\n\n")),
    "brat-mismatch": ("brat", brat(f"T1\tx 2 11\t{SECRET_ZH}{SECRET}\n")),
    "brat-offsets-are-text": ("brat", brat(f"T1\tx {SECRET} 11\t{SECRET}\n")),
    "brat-discontinuous": ("brat", brat(f"T{SECRET}\tx 2 5;{SECRET_ZH} 11\t{SECRET}\n")),
    "brat-discontinuous-named": ("brat", brat(f"T1\tx 2 5;7 11\t{SECRET}\n")),
    "ccks2017-mismatch": ("ccks2017", ccks2017(f"{SECRET_ZH}\t2\t10\tx\n")),
    "ccks2017-offset-is-text": ("ccks2017", ccks2017(f"{SECRET}\t{SECRET_ZH}\t10\tx\n")),
    "undecodable": ("chip", lambda root: write(root / "c.txt", f"{TEXT}|||2 10 x|||\n".encode("gb18030")
                                                + b"\xff\xfe" + TEXT.encode("utf-8") + b"|||\n")),
}


def assert_clean(*texts: str) -> None:
    for text in texts:
        for marker in MARKERS:
            assert marker not in text, (marker, text)
            assert marker[:4] not in text, (marker[:4], text)  # not even an excerpt


def logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]


@pytest.mark.parametrize("case", list(CASES))
def test_no_marker_in_errors_logs_or_reports(tmp_path, caplog, case):
    fmt, build = CASES[case]
    path = build(tmp_path)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(MednerError) as info:
            list(read_corpus(path, fmt))
        report = ReadReport()
        records = list(read_corpus(path, fmt, on_error="skip", report=report))
    error = info.value
    assert_clean(str(error), repr(error), str(error.fix), str(error.field), *logged(caplog))
    assert_clean(json.dumps(report.to_dict(), ensure_ascii=False), report.summary(), *report.examples)
    assert report.skipped, "the corruption must be seen"
    del records


@pytest.mark.parametrize("case", ["jsonl-mention-mismatch", "cmeee-mismatch", "brat-mismatch", "chip-offset-is-text",
                                  "bio-tag-is-chinese"])
def test_show_text_quotes_the_text_for_debugging(tmp_path, case):
    """The opt-in: the same errors quote what they are about, so the test above can fail."""
    fmt, build = CASES[case]
    path = build(tmp_path)
    with pytest.raises(MednerError) as info:
        list(read_corpus(path, fmt, show_text=True))
    assert any(marker[:4] in str(info.value) for marker in MARKERS), str(info.value)


def test_a_mismatch_message_gives_offsets_lengths_and_digests(tmp_path):
    fmt, build = CASES["jsonl-mention-mismatch"]
    with pytest.raises(MednerError) as info:
        list(read_corpus(build(tmp_path), fmt))
    message = str(info.value)
    assert "c.jsonl:1 span 0: mention mismatch: text[2:11] (9 characters, sha256 " in message
    assert "differs from text (13 characters, sha256 " in message and "field `text`" in message
    fmt, build = CASES["jsonl-mention-shifted"]
    with pytest.raises(MednerError, match=r"found at start 2: offsets off by -1"):
        list(read_corpus(build(tmp_path / "shifted"), fmt))


@pytest.mark.parametrize("command", ["stats", "convert"])
def test_corpus_cli_prints_no_record_text_unless_asked(tmp_path, capsys, caplog, command):
    fmt, build = CASES["cmeee-mismatch"]
    path = build(tmp_path)
    args = ["corpus", command, str(path), *([str(tmp_path / "out.jsonl")] if command == "convert" else []),
            "--format", fmt]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_clean(captured.out, captured.err, *logged(caplog))
    assert "mention mismatch" in captured.err and "\n" not in captured.err.strip()
    assert main(args + ["--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert_clean(captured.out, captured.err, *logged(caplog))
    assert main(args + ["--show-text"]) == 2
    assert SECRET_ZH in capsys.readouterr().err


def test_evaluate_prints_no_record_text(tmp_path, capsys, caplog):
    gold = write(tmp_path / "gold.jsonl", jl({"id": "a", "text": TEXT,
                                              "spans": [{"start": 2, "end": 11, "label": "x"}]}))
    other = write(tmp_path / "pred.jsonl", jl({"id": "a", "text": TEXT.replace("发热", "头痛"), "spans": []}))
    bad = CASES["jsonl-mention-mismatch"][1](tmp_path / "bad")
    for pred in (other, bad):
        assert main(["evaluate", "--gold", str(gold), "--pred", str(pred)]) == 2
        captured = capsys.readouterr()
        assert_clean(captured.out, captured.err, *logged(caplog))
    assert "first difference at offset 11" in _last_error(capsys, gold, other)
    assert main(["evaluate", "--gold", str(gold), "--pred", str(bad), "--show-text"]) == 2
    assert SECRET_ZH in capsys.readouterr().err


def _last_error(capsys, gold, pred) -> str:
    main(["evaluate", "--gold", str(gold), "--pred", str(pred)])
    return capsys.readouterr().err
