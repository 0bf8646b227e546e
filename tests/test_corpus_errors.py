"""Broken inputs tried on purpose: each raises one CorpusError naming file, line and field, or is skipped
and counted under on_error="skip"."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medner.corpus import ReadReport, read_corpus
from medner.errors import CorpusError

DATA = Path(__file__).parent / "data" / "corpus"
TEXT = "患者发热伴咳嗽。"  # 发热 = [2, 4), 咳嗽 = [5, 7)


def read(path, fmt, **kwargs):
    return list(read_corpus(path, fmt, **kwargs))


def write(path: Path, content: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(content.encode(encoding))
    return path


def jl(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def good_jsonl(i: int) -> str:
    return jl({"id": f"r{i}", "text": TEXT, "spans": [{"start": 2, "end": 4, "label": "sym"}]})


def assert_one_line(exc: CorpusError, *needles: str) -> None:
    message = str(exc)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_truncated_json_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", good_jsonl(1) + "\n" + good_jsonl(2)[:25] + "\n" + good_jsonl(3) + "\n")
    with pytest.raises(CorpusError) as info:
        read(path, "jsonl")
    assert_one_line(info.value, "bad.jsonl:2:", "invalid JSON", "column")
    report = ReadReport()
    assert [r.id for r in read(path, "jsonl", on_error="skip", report=report)] == ["r1", "r3"]
    assert (report.skipped_records, report.problems["bad_json"]) == (1, 1)
    assert report.examples[0].startswith(f"{path}:2: invalid JSON")


def test_start_after_end_chip(tmp_path):
    path = write(tmp_path / "chip.txt", f"{TEXT}|||2    3    sym|||\n{TEXT}|||2    3    sym|||6    5    sym|||\n")
    with pytest.raises(CorpusError) as info:
        read(path, "chip")
    assert_one_line(info.value, "chip.txt:2", "expected start <= end, got start=6, end=5", "field `end`")
    report = ReadReport()
    records = read(path, "chip", on_error="skip", report=report)
    assert [len(r.spans) for r in records] == [1, 1]  # only the bad span is dropped
    assert (report.skipped_spans, report.skipped_records) == (1, 0)


def test_empty_span_exclusive_end(tmp_path):
    path = write(tmp_path / "a.jsonl", jl({"id": "a", "text": TEXT, "spans": [{"start": 3, "end": 3, "label": "x"}]}))
    with pytest.raises(CorpusError, match=r"a\.jsonl:1 span 0: expected start < end, got start=3, end=3"):
        read(path, "jsonl")


def test_offset_past_text_ccks2019(tmp_path):
    obj = {"originalText": TEXT, "entities": [{"label_type": "症状", "start_pos": 5, "end_pos": 99}]}
    path = write(tmp_path / "c19.txt", "\n" + jl(obj) + "\n")
    with pytest.raises(CorpusError) as info:
        read(path, "ccks2019")
    assert_one_line(info.value, "c19.txt:2", f"expected end_pos <= {len(TEXT)}", "got 99", "field `end_pos`")


def test_negative_offset_and_empty_label(tmp_path):
    obj = {"originalText": TEXT, "entities": [{"label_type": "a", "start_pos": -1, "end_pos": 2},
                                              {"label_type": " ", "start_pos": 0, "end_pos": 2},
                                              {"label_type": "b", "start_pos": 0, "end_pos": 2}]}
    path = write(tmp_path / "c19.txt", jl(obj))
    with pytest.raises(CorpusError, match=r"c19\.txt:1 entity 0: expected start_pos >= 0"):
        read(path, "ccks2019")
    report = ReadReport()
    (record,) = read(path, "ccks2019", on_error="skip", report=report)
    assert [s.label for s in record.spans] == ["b"]
    assert dict(report.problems) == {"negative_offset": 1, "empty_label": 1}


def test_mention_mismatch_cmeee_names_line_and_record(tmp_path):
    arr = [{"text": TEXT, "entities": [{"start_idx": 2, "end_idx": 3, "type": "sym", "entity": "发热"}]},
           {"text": TEXT, "entities": [{"start_idx": 4, "end_idx": 5, "type": "sym", "entity": "咳嗽"}]}]
    path = write(tmp_path / "dev.json", json.dumps(arr, ensure_ascii=False, indent=1))
    with pytest.raises(CorpusError) as info:
        read(path, "cmeee")
    # indent=1 dump: line 1 `[`, lines 2-12 the first element, line 13 the `{` of the second
    assert_one_line(info.value, "dev.json:13 (record 1) entity 0", "mention mismatch", "offsets off by +1",
                    "field `entity`")
    report = ReadReport()
    records = read(path, "cmeee", on_error="skip", report=report)
    assert [len(r.spans) for r in records] == [1, 0] and report.problems["mention_mismatch"] == 1


def test_cmedqaner_off_by_one_is_an_error_case_only_is_not(tmp_path):
    obj = {"text": "胸部CT和B超", "mention_data": [{"mention": "胸部ct", "offset": "0", "type": "test"},
                                                   {"mention": "B超", "offset": "4", "type": "test"}]}
    path = write(tmp_path / "q.json", jl(obj) + "\n")
    with pytest.raises(CorpusError) as info:
        read(path, "cmedqaner")
    assert_one_line(info.value, "q.json:1 mention 1", "found at start 5: offsets off by +1")
    report = ReadReport()
    (record,) = read(path, "cmedqaner", on_error="skip", report=report)
    assert [(s.start, s.end) for s in record.spans] == [(0, 4)]
    assert (report.case_mismatches, report.skipped_spans) == (1, 1)


def test_missing_field_is_a_record_error(tmp_path):
    path = write(tmp_path / "c19.txt", jl({"entities": []}) + "\n" + jl({"originalText": TEXT}) + "\n")
    with pytest.raises(CorpusError) as info:
        read(path, "ccks2019")
    assert_one_line(info.value, "c19.txt:1", "missing field 'originalText'", "field `originalText`")
    report = ReadReport()
    assert len(read(path, "ccks2019", on_error="skip", report=report)) == 1
    assert report.skipped_records == 1


def test_wrong_types(tmp_path):
    path = write(tmp_path / "a.jsonl", jl({"id": "a", "text": 5}) + "\n" + jl([1, 2]) + "\n"
                 + jl({"id": "b", "text": TEXT, "entities": []}) + "\n")
    report = ReadReport()
    assert read(path, "jsonl", on_error="skip", report=report) == []
    assert dict(report.problems) == {"bad_type": 2, "unknown_field": 1}
    with pytest.raises(CorpusError, match=r"b\.jsonl:1: unknown key 'entities'"):
        read(write(tmp_path / "b.jsonl", jl({"id": "b", "text": TEXT, "entities": []})), "jsonl")


GB_LINE = "患者发热伴咳嗽。|||2    3    sym|||\n"


def test_gb18030_is_detected_and_a_wrong_given_encoding_names_the_fix(tmp_path):
    path = write(tmp_path / "gb.txt", GB_LINE * 2, encoding="gb18030")
    (first, second) = read(path, "chip")  # no encoding given: detected as the batch annotator does
    assert first.text == TEXT and first.spans[0].mention(first.text) == "发热"
    with pytest.raises(CorpusError) as info:
        read(path, "chip", encoding="utf-8")
    assert_one_line(info.value, "gb.txt:1", "as utf-8", "encoding: gb18030", "--encoding gb18030", "field `encoding`")
    assert read(path, "chip", encoding="gb18030")[0].text == TEXT


@pytest.mark.parametrize("fmt,encoding", [("chip", "gb18030"), ("chip", "GBK"), ("cmeee", "gb2312")])
def test_utf8_given_a_gb_encoding_is_refused_not_garbled(tmp_path, fmt, encoding):
    """UTF-8 Chinese decodes as GB18030 without an error, every character garbled: the readers refuse it."""
    body = GB_LINE * 2 if fmt == "chip" else "[\n" + jl({"text": TEXT}) + "\n]"
    path = write(tmp_path / "u.txt", body, encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        read(path, fmt, encoding=encoding)
    assert_one_line(info.value, "u.txt", "is UTF-8, not", "garbled", "encoding: utf-8", "field `encoding`")
    assert read(path, fmt, encoding="utf-8")[0].text == TEXT
    ascii_only = write(tmp_path / "a.txt", "fever and cough|||0    5    sym|||\n", encoding="utf-8")
    assert read(ascii_only, "chip", encoding="gb18030")[0].text == "fever and cough"  # the same bytes in both


def test_undecodable_line_skipped_alone(tmp_path):
    path = tmp_path / "mixed.txt"
    bad = GB_LINE.encode("utf-8").replace("发".encode("utf-8"), b"\xff\xfe")  # neither UTF-8 nor GB18030
    path.write_bytes(GB_LINE.encode("utf-8") + bad + GB_LINE.encode("utf-8"))
    report = ReadReport()
    assert [r.id for r in read(path, "chip", on_error="skip", report=report)] == ["mixed:1", "mixed:3"]
    assert report.problems["undecodable"] == 1 and "mixed.txt:2" in report.examples[0]


@pytest.mark.parametrize("fmt,suffix", [("cmeee", ".json"), ("brat", "")])
def test_whole_file_formats_name_encoding_too(tmp_path, fmt, suffix):
    if fmt == "cmeee":
        path = write(tmp_path / "dev.json", "[\n" + jl({"text": TEXT}) + "\n]", encoding="gb18030")
    else:
        path = tmp_path / "brat"
        path.mkdir()
        write(path / "1.txt", TEXT, encoding="gb18030")
        write(path / "1.ann", "T1\tsym 2 4\t发热\n", encoding="gb18030")
    (detected,) = read(path, fmt)  # no encoding given: detected
    assert detected.text == TEXT
    with pytest.raises(CorpusError, match=r"as utf-8.*--encoding gb18030"):
        read(path, fmt, encoding="utf-8")
    (record,) = read(path, fmt, encoding="gb18030")
    assert record.text == TEXT


def test_unknown_encoding_format_policy(tmp_path):
    path = write(tmp_path / "a.jsonl", good_jsonl(1))
    with pytest.raises(CorpusError, match="unknown encoding 'nope'.*field `encoding`"):
        read_corpus(path, "jsonl", encoding="nope")
    with pytest.raises(CorpusError, match="unknown corpus format 'conll9'.*use one of jsonl"):
        read_corpus(path, "conll9")
    with pytest.raises(CorpusError, match="unknown on_error policy 'ignore'"):
        read_corpus(path, "jsonl", on_error="ignore")
    with pytest.raises(CorpusError, match="missing.jsonl: no such file"):
        read_corpus(tmp_path / "missing.jsonl", "jsonl")
    with pytest.raises(CorpusError, match="/dev/null: not a regular file"):  # was "found a folder"
        list(read_corpus("/dev/null", "jsonl"))


@pytest.mark.parametrize("fmt", ["jsonl", "ccks2019", "chip", "cmeee", "cmedqaner", "bio"])
def test_empty_file_gives_zero_records_and_a_warning(tmp_path, caplog, fmt):
    path = write(tmp_path / "empty.txt", "")
    report = ReadReport()
    with caplog.at_level(logging.WARNING, logger="medner"):
        assert read(path, fmt, report=report) == []
    assert report.empty_files == 1 and report.records == 0
    assert any("empty input" in rec.getMessage() for rec in caplog.records)


def test_empty_folders(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="medner"):
        assert read(tmp_path, "brat") == []
        assert read(tmp_path, "ccks2017") == []
    assert sum("empty input" in rec.getMessage() for rec in caplog.records) == 2


@pytest.mark.parametrize("fmt,line", [
    ("jsonl", good_jsonl(1)),
    ("chip", GB_LINE.strip()),
    ("cmedqaner", jl({"text": TEXT, "mention_data": [{"mention": "发热", "offset": 2, "type": "s"}]})),
    ("ccks2019", jl({"originalText": TEXT, "entities": [{"label_type": "s", "start_pos": 2, "end_pos": 4}]})),
])
def test_bom_accepted(tmp_path, fmt, line):
    path = write(tmp_path / "bom.txt", "\ufeff" + line + "\r\n")
    (record,) = read(path, fmt)
    assert record.text == TEXT and record.spans[0].mention(record.text) == "发热"


def test_bom_accepted_in_json_array(tmp_path):
    path = write(tmp_path / "d.json", "\ufeff" + json.dumps([{"text": TEXT}]))
    assert read(path, "cmeee")[0].text == TEXT


def test_truncated_json_array_names_line(tmp_path):
    full = json.dumps([{"text": TEXT}, {"text": TEXT}], ensure_ascii=False, indent=1)
    path = write(tmp_path / "t.json", full[: full.rindex("}")])
    with pytest.raises(CorpusError) as info:
        read(path, "cmeee")
    assert_one_line(info.value, f"t.json:{full[: full.rindex('}')].count(chr(10)) + 1}:", "invalid JSON")
    with pytest.raises(CorpusError, match="expected a JSON array.*try --format jsonl"):
        read(write(tmp_path / "o.json", good_jsonl(1)), "cmeee")


def test_json_array_given_as_jsonl_hints_format(tmp_path):
    with pytest.raises(CorpusError, match=r"sample\.json:1: invalid JSON.*try --format cmeee"):
        read(DATA / "cmeee" / "sample.json", "jsonl")
    path = write(tmp_path / "arr.json", json.dumps([{"text": TEXT}]))
    with pytest.raises(CorpusError, match=r"arr\.json:1: expected a JSON object, got list.*use --format cmeee"):
        read(path, "jsonl")


def test_bio_bad_tag_and_missing_tag(tmp_path):
    path = write(tmp_path / "t.bio", "发 B-sym\n热 I-sym\n\n咳 X-sym\n嗽 O\n\n伴\n\n痛 S-sym\n")
    with pytest.raises(CorpusError) as info:
        read(path, "bio")
    assert_one_line(info.value, "t.bio:4", "unknown tag 'X-sym'", "field `tag`")
    report = ReadReport()
    records = read(path, "bio", on_error="skip", report=report)
    assert [r.text for r in records] == ["发热", "痛"]
    assert dict(report.problems) == {"bad_tag": 1, "bad_line": 1}


def test_brat_missing_ann_and_bad_line(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    write(folder / "1.txt", TEXT)
    write(folder / "2.txt", TEXT)
    write(folder / "2.ann", "T1\tsym 2 4\t发热\nT2\tsym\t咳嗽\n")
    with pytest.raises(CorpusError, match=r"1\.txt: no annotation file '1\.ann'"):
        read(folder, "brat")
    report = ReadReport()
    (record,) = read(folder, "brat", on_error="skip", report=report)
    assert record.id == "2" and len(record.spans) == 1
    assert (report.skipped_records, report.skipped_spans) == (1, 1)
    write(folder / "3.ann", "T1\tsym 0 2\t发热\n")  # its text file left behind when the folder was copied
    write(folder / "1.ann", "")
    with pytest.raises(CorpusError, match=r"3\.ann: no text file beside the annotations"):
        read(folder, "brat")
    report = ReadReport()
    assert [r.id for r in read(folder, "brat", on_error="skip", report=report)] == ["1", "2"]
    assert report.skipped_records == 1


def test_ccks2017_bad_annotation_line(tmp_path):
    folder = tmp_path / "sec"
    folder.mkdir()
    write(folder / "sec-1.txtoriginal.txt", TEXT + "\r\n")
    # text is 10 characters with its CRLF, so the last inclusive end is 9
    write(folder / "sec-1.txt", "发热\t2\t3\t症状\r\n咳嗽\t11\t12\t症状\r\n")
    with pytest.raises(CorpusError) as info:
        read(tmp_path, "ccks2017")
    assert_one_line(info.value, "sec-1.txt:2", "expected end <= 9 (text length 10), got 12", "field `end`")


def test_skip_mode_logs_a_summary(tmp_path, caplog):
    path = write(tmp_path / "s.txt", f"{TEXT}|||6    5    sym|||\n")
    with caplog.at_level(logging.WARNING, logger="medner"):
        read(path, "chip", on_error="skip")
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 spans skipped" in message and "s.txt:1" in message
    assert TEXT not in message  # no record text in logs


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "gbk"])
def test_other_encodings(tmp_path, encoding):
    path = write(tmp_path / "enc.txt", GB_LINE + "\ufeff" + GB_LINE, encoding=encoding) if encoding != "gbk" \
        else write(tmp_path / "enc.txt", GB_LINE * 2, encoding=encoding)
    records = read(path, "chip", encoding=encoding)
    assert [r.id for r in records] == ["enc:1", "enc:2"]
    assert records[0].text == TEXT
    if encoding != "gbk":  # a BOM character inside the file is text, only a leading one is dropped
        assert records[1].text == "\ufeff" + TEXT


CMEEE_ARRAY = json.dumps([{"text": "患者发热。", "entities": [{"start_idx": 2, "end_idx": 3, "type": "sym",
                                                             "entity": "发热"}]}] * 3, ensure_ascii=False, indent=2)


@pytest.mark.parametrize("fmt,content,message", [
    ("chip", '{"id": "a", "text": "患者发热。", "spans": []}\n', "JSON records, one a line.*jsonl"),
    ("chip", '{"text": "患者发热。", "entities": []}\n', "JSON records, one a line.*jsonl"),
    ("chip", '[{"text": "患者发热。", "entities": []}]\n', "a JSON document.*--format.*: cmeee"),  # on one line
    ("chip", "患 O\n者 B-sym\n发 I-sym\n热 O\n。 O\n", "`character tag` lines.*--format.*: bio"),
    ("chip", CMEEE_ARRAY + "\n", "a JSON document.*--format.*: cmeee"),
    ("chip", "\n" + CMEEE_ARRAY[1:].replace("\n  ", "\n"), "a JSON document.*--format.*: cmeee"),  # no `[` line
    ("chip", "好 O\n发 B_症状\n热 I_症状\n。 O\n\n患者发热。|||2 3 sym|||\n", "`character tag` lines"),
    ("cmedqaner", '{"id": "a", "text": "患者发热。", "spans": [{"start": 2, "end": 4, "label": "sym"}]}\n',
     "the project's jsonl, not cMedQANER"),
])
def test_a_file_of_another_format_is_refused_not_read_as_text(tmp_path, fmt, content, message):
    path = tmp_path / "c.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message) as info:
        list(read_corpus(path, fmt))
    assert "--format" in str(info.value) and "患者" not in str(info.value)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_json_document_read_as_chip_gives_no_record_whatever_on_error_says(tmp_path, on_error):
    path = tmp_path / "CMeEE-V2_dev.json"
    path.write_text(CMEEE_ARRAY, encoding="utf-8")
    with pytest.raises(CorpusError, match=r"CMeEE-V2_dev.json: this file is a JSON document") as info:
        list(read_corpus(path, "chip", on_error=on_error))
    assert str(info.value).count("\n") == 0


def test_chip_lines_and_unlabelled_sentences_are_not_taken_for_another_format(tmp_path):
    path = tmp_path / "chip.txt"
    path.write_text("患者发热。|||2 3 sym|||\n[1]患者咳嗽。\n血型 O\n\"发热\"三天。\n", encoding="utf-8")
    assert [r.text for r in read_corpus(path, "chip")] == ["患者发热。", "[1]患者咳嗽。", "血型 O", '"发热"三天。']


def test_a_folder_of_another_format_is_refused_by_ccks2017_and_an_archive_by_brat(tmp_path):
    folder = tmp_path / "tianchi"
    folder.mkdir()
    write(folder / "1.txt", TEXT)
    write(folder / "1.ann", "T1\tsym 2 4\t发热\n")
    with pytest.raises(CorpusError, match=r"no CCKS 2017 document .* among its 2 files.*a folder of N.txt \+ N.ann "
                                          r"is brat"):
        read(folder, "ccks2017")  # was a warning "empty input" and zero records
    archive = tmp_path / "data_origin.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    with pytest.raises(CorpusError, match=r"brat reads a folder or one N.txt / N.ann pair, not a `.zip` file"):
        read(archive, "brat")  # was "data_origin.ann: no text file beside the annotations"


@pytest.mark.parametrize("fmt", ["jsonl", "ccks2019", "cmedqaner"])
def test_a_chip_file_read_as_json_lines_names_the_chip_format(tmp_path, fmt):
    path = write(tmp_path / "train_data.txt", GB_LINE)
    with pytest.raises(CorpusError, match=r"invalid JSON.*read the file with --format chip"):
        read(path, fmt)
