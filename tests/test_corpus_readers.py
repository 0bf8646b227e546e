"""Every corpus reader on small hand-made fixtures (tests/data/corpus), and reader -> jsonl -> reader identity.

Expected mentions below are written out by hand from the fixture sentences (the oracle), not computed.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from medner.corpus import READERS, ReadReport, formats, read_corpus, record_from_json, record_to_json, write_jsonl
from medner.errors import CorpusError
from medner.types import Record, Span

DATA = Path(__file__).parent / "data" / "corpus"


def mentions(record: Record) -> list[tuple[str, str]]:
    return [(record.text[s.start:s.end], s.label) for s in record.spans]


def read(path, fmt, **kwargs) -> list[Record]:
    return list(read_corpus(path, fmt, **kwargs))


def test_registry_lists_every_format():
    assert set(formats()) == {"jsonl", "ccks2019", "ccks2017", "chip", "cmeee", "cmedqaner", "brat", "bio"}
    assert formats() == list(READERS)


def test_ccks2019_bom_crlf_exclusive_end():
    records = read(DATA / "ccks2019" / "sample.txt", "ccks2019")
    assert [r.id for r in records] == ["sample:1", "sample:2", "sample:3", "case-7"]
    assert not records[0].text.startswith("\ufeff")
    assert all("\r" not in r.text for r in records)
    assert mentions(records[0]) == [("双肺", "解剖部位"), ("右下肺", "解剖部位")]
    assert mentions(records[1]) == [("社区获得性肺炎", "疾病和诊断"), ("头孢曲松", "药物"), ("胸部CT", "影像检查"),
                                    ("右肺下叶", "解剖部位")]
    assert records[2].text == "" and records[2].spans == ()
    assert mentions(records[3]) == [("WBC", "实验室检验"), ("中性粒细胞比例", "实验室检验")]
    assert records[1].meta["line"] == 2 and records[1].meta["format"] == "ccks2019"


def test_chip_inclusive_end_nested_and_unlabelled_lines():
    report = ReadReport()
    records = read(DATA / "chip" / "sample.txt", "chip", report=report)
    assert [r.id for r in records] == ["sample:1", "sample:2", "sample:4", "sample:5"]
    assert all("\r" not in r.text for r in records)  # CRLF line ends removed, nothing else
    assert mentions(records[0]) == [("发热", "sym"), ("咳嗽", "sym"), ("咳痰", "sym")]
    assert mentions(records[1]) == [("社区获得性肺炎", "dis"), ("肺炎", "dis"), ("右下肺", "bod"),
                                    ("右下肺可闻及湿啰音", "sym"), ("湿啰音", "sym")]
    assert mentions(records[2]) == [("头孢曲松", "dru"), ("抗感染治疗", "pro")]
    assert records[3].text == "入院后完善相关检查。" and records[3].spans == ()
    assert (report.records, report.spans, report.skipped) == (4, 10, 0)


def test_chip_crlf_and_lf_files_read_the_same(tmp_path):
    lf = tmp_path / "lf.txt"
    lf.write_bytes((DATA / "chip" / "sample.txt").read_bytes().replace(b"\r\n", b"\n"))
    crlf = read(DATA / "chip" / "sample.txt", "chip")
    assert [(r.text, r.spans) for r in read(lf, "chip")] == [(r.text, r.spans) for r in crlf]


def test_cmeee_array_inclusive_end_and_unlabelled_test_file():
    records = read(DATA / "cmeee" / "sample.json", "cmeee")
    assert [r.id for r in records] == ["sample:0", "sample:1", "sample:2"]
    assert mentions(records[0]) == [("肺炎支原体", "mic"), ("肺炎支原体感染", "dis"), ("咳嗽", "sym")]
    assert mentions(records[1]) == [("胸部X线片", "ite"), ("双肺", "bod"), ("双肺纹理增粗", "sym")]
    assert records[2].spans == ()
    assert [r.meta["line"] for r in records] == [2, 25, 48]  # line of each element's `{`
    test = read(DATA / "cmeee" / "test.json", "cmeee")
    assert len(test) == 2 and all(r.spans == () for r in test)


def test_cmedqaner_string_offsets_and_case_only_mismatch():
    report = ReadReport()
    records = read(DATA / "cmedqaner" / "sample.json", "cmedqaner", report=report)
    assert mentions(records[0]) == [("便秘", "disease"), ("两周", "time")]
    assert mentions(records[1]) == [("胸部CT", "test"), ("肺结节", "disease")]  # file says 胸部ct
    assert mentions(records[2]) == [("孩子", "crowd"), ("发烧", "symptom"), ("三天", "time"), ("儿科", "department")]
    assert report.case_mismatches == 1 and report.skipped == 0


def test_cmedqaner_bio_txt_matches_json():
    as_json = read(DATA / "cmedqaner" / "sample.json", "cmedqaner")
    as_bio = read(DATA / "cmedqaner" / "sample.txt", "bio")
    assert [(r.text, r.spans) for r in as_bio] == [(r.text, r.spans) for r in as_json]


def test_bio_schemes_separators_and_whitespace_tokens():
    records = read(DATA / "bio" / "bio.txt", "bio")
    assert [r.id for r in records] == ["bio:3", "bio:11"]
    assert mentions(records[0]) == [("发热", "sym"), ("咳嗽", "sym")]
    assert records[1].text == "右下肺\u3000湿啰音"
    assert mentions(records[1]) == [("右下肺", "bod"), ("湿啰音", "sym")]
    bioes = read(DATA / "bio" / "bioes.txt", "bio")
    assert mentions(bioes[0]) == [("头孢曲松", "dru"), ("痰", "sym")]
    bmes = read(DATA / "bio" / "bmes.txt", "bio")
    assert [mentions(r) for r in bmes] == [[("肺炎", "dis"), ("胸痛", "sym")], [("咳", "sym"), ("喘", "sym")]]


def test_bio_space_token(tmp_path):
    path = tmp_path / "space.txt"
    path.write_text("A B-x\n  I-x\nB I-x\nC O\n", encoding="utf-8")
    (record,) = read(path, "bio")
    assert record.text == "A BC" and mentions(record) == [("A B", "x")]


def test_bio_invalid_sequences_repaired_like_conlleval():
    report = ReadReport()
    (record,) = read(DATA / "bio" / "invalid.txt", "bio", report=report)
    # O I-sym I-sym O E-dis B-sym I-dis
    assert [(s.start, s.end, s.label) for s in record.spans] == [(1, 3, "sym"), (4, 5, "dis"), (5, 6, "sym"),
                                                                 (6, 7, "dis")]
    assert report.invalid_tag_sequences == 3


def test_ccks2017_folder_keeps_crlf_text_and_inclusive_offsets():
    records = read(DATA / "ccks2017", "ccks2017")
    assert [r.id for r in records] == ["一般项目/一般项目-1", "一般项目/一般项目-2", "病史特点/病史特点-1",
                                       "病史特点/病史特点-10"]
    assert all(r.text.endswith("\r\n\r\n\r\n\r\n") for r in records)
    assert mentions(records[0]) == [("咳嗽", "症状和体征"), ("咳痰", "症状和体征")]
    assert records[1].spans == ()
    history = records[2]
    assert "\r\n2." in history.text  # internal CRLF counted as two characters by the offsets
    assert mentions(history) == [("双肺", "身体部位"), ("湿啰音", "症状和体征"), ("胸部CT", "检查和检验"),
                                 ("右肺下叶", "身体部位"), ("右肺下叶炎症", "疾病和诊断")]
    assert mentions(records[3]) == [("头孢曲松", "治疗"), ("抗感染治疗", "治疗")]
    assert history.meta["section"] == "病史特点"


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return target


def test_ccks2017_zip_equals_folder_and_names_are_utf8(tmp_path):
    archive = _zip_folder(DATA / "ccks2017", tmp_path / "data_origin.zip")
    with zipfile.ZipFile(archive) as zf:
        assert all(info.flag_bits & 0x800 for info in zf.infolist() if not info.filename.isascii())
    assert read(archive, "ccks2017") == read(DATA / "ccks2017", "ccks2017")


def test_ccks2017_zip_with_gbk_names_without_utf8_flag(tmp_path):
    """Legacy archives store GBK names without flag 0x800; zipfile would decode them as cp437."""
    section = "一般项目".encode("gbk")  # 8 bytes
    placeholder = b"ABCDEFGH"
    text = "患者咳嗽三天。\r\n".encode()
    ann = "咳嗽\t2\t3\t症状和体征\r\n".encode()
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("ABCDEFGH/ABCDEFGH-1.txtoriginal.txt", text)
        zf.writestr("ABCDEFGH/ABCDEFGH-1.txt", ann)
    legacy = tmp_path / "legacy.zip"
    legacy.write_bytes(plain.read_bytes().replace(placeholder, section))
    (record,) = read(legacy, "ccks2017")
    assert record.id == "一般项目/一般项目-1" and mentions(record) == [("咳嗽", "症状和体征")]


def test_brat_folder_ignores_other_lines_and_keeps_crlf():
    report = ReadReport()
    records = read(DATA / "brat", "brat", report=report)
    assert [r.id for r in records] == ["1", "2", "10"]
    assert mentions(records[0]) == [("一次2片", "DRUG_DOSAGE"), ("风寒感冒", "DISEASE"), ("头痛", "SYMPTOM"),
                                    ("发热", "SYMPTOM"), ("鼻塞流涕", "SYMPTOM"), ("孕妇", "PERSON_GROUP")]
    assert records[1].text == "清热解毒。\r\n用于咽喉肿痛。\r\n"
    assert mentions(records[1]) == [("清热解毒", "DRUG_EFFICACY"), ("咽喉肿痛", "SYMPTOM")]
    assert records[2].spans == ()
    assert report.discontinuous_spans == 0 and report.skipped == 0


def test_brat_single_document_path():
    (record,) = read(DATA / "brat" / "2.ann", "brat")
    assert record.id == "2" and len(record.spans) == 2


def test_brat_discontinuous_span_counted_and_policy_applied():
    with pytest.raises(CorpusError, match=r"1\.ann:2: discontinuous span"):
        read(DATA / "brat_discontinuous", "brat")
    report = ReadReport()
    (record,) = read(DATA / "brat_discontinuous", "brat", on_error="skip", report=report)
    assert mentions(record) == [("风寒感冒", "DISEASE")]
    assert report.discontinuous_spans == 1 and report.skipped_spans == 1
    assert report.problems["discontinuous"] == 1


def test_jsonl_reads_optional_fields_and_defaults():
    records = read(DATA / "jsonl" / "sample.jsonl", "jsonl")
    assert [r.id for r in records] == ["doc-1", "doc-2", "sample:3"]
    doc = records[0]
    assert mentions(doc) == [("咳嗽", "sym"), ("急性支气管炎", "dis")]
    assert (doc.spans[1].code, doc.spans[1].score, doc.spans[1].source) == ("J20.900", 0.93, "lexicon")
    assert doc.meta == {"split": "dev", "note": {"n": 1}}
    assert records[2].spans == () and records[2].meta == {}


def test_record_json_round_trip():
    record = Record("r1", "发热咳嗽", (Span(0, 2, "sym", code="R50.900", score=0.5, source="lf"), Span(2, 4, "sym")),
                    {"k": [1, 2]})
    obj = record_to_json(record)
    assert obj["spans"][0] == {"start": 0, "end": 2, "label": "sym", "text": "发热", "code": "R50.900",
                               "score": 0.5, "source": "lf"}
    back = record_from_json(obj)
    assert back == record
    assert [s.to_dict() for s in back.spans] == [s.to_dict() for s in record.spans]


def test_record_from_json_rejects_wrong_span_text():
    obj = {"id": "x", "text": "发热咳嗽", "spans": [{"start": 0, "end": 2, "label": "sym", "text": "咳嗽"}]}
    with pytest.raises(CorpusError, match=r"here span 0: mention mismatch.*field `text`"):
        record_from_json(obj, where="here")


ALL_FIXTURES = [
    ("ccks2019", DATA / "ccks2019" / "sample.txt"),
    ("chip", DATA / "chip" / "sample.txt"),
    ("cmeee", DATA / "cmeee" / "sample.json"),
    ("cmeee", DATA / "cmeee" / "test.json"),
    ("cmedqaner", DATA / "cmedqaner" / "sample.json"),
    ("bio", DATA / "cmedqaner" / "sample.txt"),
    ("bio", DATA / "bio" / "bio.txt"),
    ("bio", DATA / "bio" / "bioes.txt"),
    ("bio", DATA / "bio" / "bmes.txt"),
    ("ccks2017", DATA / "ccks2017"),
    ("brat", DATA / "brat"),
    ("jsonl", DATA / "jsonl" / "sample.jsonl"),
]


def test_every_format_has_a_round_trip_fixture():
    assert {fmt for fmt, _ in ALL_FIXTURES} == set(formats())


@pytest.mark.parametrize("fmt,path", ALL_FIXTURES, ids=[f"{f}-{p.name}" for f, p in ALL_FIXTURES])
def test_reader_jsonl_reader_identity(fmt, path, tmp_path):
    original = read(path, fmt)
    assert original, "fixture must hold records"
    for record in original:
        for span in record.spans:
            assert 0 <= span.start < span.end <= len(record.text)
    out = tmp_path / "out.jsonl"
    assert write_jsonl(iter(original), out) == len(original)
    again = read(out, "jsonl")
    assert again == original
    assert [[s.to_dict() for s in r.spans] for r in again] == [[s.to_dict() for s in r.spans] for r in original]
    # and a second write is byte-identical (stable output)
    out2 = tmp_path / "out2.jsonl"
    write_jsonl(again, out2)
    assert out2.read_bytes() == out.read_bytes()


def test_write_jsonl_is_atomic(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n", encoding="utf-8")

    def failing():
        yield Record("a", "发热")
        raise CorpusError("boom", where="x.txt:2")

    with pytest.raises(CorpusError, match="boom"):
        write_jsonl(failing(), out)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_write_jsonl_rejects_unserialisable_meta(tmp_path):
    with pytest.raises(CorpusError, match=r"record bad: cannot write record as JSON.*field `meta`"):
        write_jsonl([Record("bad", "x", (), {"obj": object()})], tmp_path / "o.jsonl")
    assert list(tmp_path.iterdir()) == []
