"""Loaders on tiny fixtures: row accounting, bad rows (lenient and strict), headers by name, encodings."""
from __future__ import annotations

import logging
import re

from pathlib import Path

import openpyxl
import pytest

from medner.errors import LexiconError
from medner.lexicon import (LexiconEntry, dotted_icd10, is_valid_code, load_csv, load_icd9cm3_xlsx,
                            load_icd10_xlsx, load_list, load_po, load_project_tsv)
from medner.lexicon.codes import CODE_SYSTEMS

DATA = Path(__file__).parent / "data" / "lexicon"


def by_term(result) -> dict[str, LexiconEntry]:
    return {e.term: e for e in result.entries}


def write_xlsx(path: Path, sheets: dict[str, list[tuple]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    workbook.save(path)
    return path


ICD10_ROWS = [
    ("主要编码", "附加编码", "疾病名称"),            # row 1
    ("A00.000", None, "霍乱，由于O1群霍乱弧菌，霍乱生物型所致"),
    ("A01.000x003", "†G01*", "伤寒并发脑膜炎"),     # row 3: dagger/asterisk -> A01.000x003+G01*
    ("A01.001†", "K77.0*", "伤寒性肝炎"),           # row 4: -> A01.001+K77.0*
    ("C22.101", "M81600/3", "胆管癌"),              # row 5: morphology extra code not kept
    (None, "M80000/3", "恶性肿瘤"),                 # row 6: code only in 附加编码
    ("A0O.100", None, "坏编码霍乱"),                # row 7: malformed (letter O)
    ("B01.900", None, "  "),                        # row 8: empty name
    (None, None, None),                             # row 9: blank spreadsheet row, not a row
    ("M81600/3", None, "胆管癌"),                   # row 10: conflicting duplicate of row 5
    ("C22.101x001", None, "胆管癌"),                # row 11: refines C22.101 -> merged, keeps this code
    ("A33.x00", None, "新生儿破伤风"),
]


def test_icd10_xlsx_codes_and_bad_rows(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "icd10.xlsx", {"说明": [("x",)], "全部": ICD10_ROWS})
    result = load_icd10_xlsx(path, source="nat")
    report = result.report
    entries = by_term(result)
    assert report.rows == 10 and report.balanced()
    assert report.loaded == 6 and report.merged == 1
    assert report.bad_counts() == {"conflicting_duplicate": 1, "empty_name": 1, "malformed_code": 1}
    assert entries["伤寒并发脑膜炎"].code == "A01.000x003+G01*"
    assert entries["伤寒性肝炎"].code == "A01.001+K77.0*"
    assert entries["胆管癌"].code == "C22.101x001"
    assert entries["恶性肿瘤"].code == "M80000/3"
    assert entries["新生儿破伤风"].label == "疾病和诊断" and entries["新生儿破伤风"].source == "nat"
    wheres = {b.kind: b.where for b in report.bad}
    assert wheres["malformed_code"].endswith("icd10.xlsx[全部]:7")
    assert wheres["empty_name"].endswith(":8")
    assert wheres["conflicting_duplicate"].endswith(":10")


def test_icd10_xlsx_strict_names_file_row_field_and_fix(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "icd10.xlsx", {"全部": ICD10_ROWS})
    with pytest.raises(LexiconError) as info:
        load_icd10_xlsx(path, strict=True)
    message = str(info.value)
    assert "icd10.xlsx[全部]:7" in message and "主要编码" in message and "Fix:" in message
    assert "\n" not in message


def test_xlsx_columns_found_by_name_not_position(tmp_path: Path) -> None:
    rows = [("疾病名称", "备注", "主要编码")] + [(name, "", code) for code, _, name in ICD10_ROWS[1:3]]
    path = write_xlsx(tmp_path / "shuffled.xlsx", {"全部": rows})
    entries = by_term(load_icd10_xlsx(path))
    assert entries["伤寒并发脑膜炎"].code == "A01.000x003"


def test_xlsx_missing_header_names_sheet_and_headers_found(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "bad.xlsx", {"全部": [("编号", "名字"), ("A00.000", "霍乱")]})
    with pytest.raises(LexiconError) as info:
        load_icd10_xlsx(path)
    message = str(info.value)
    assert "sheet 全部" in message and "疾病名称" in message  # the names it looks for
    assert "headers found: [] and 2 other cell(s), not shown" in message  # 编号, 名字: no known column names


def test_xlsx_missing_sheet_lists_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", {"Sheet1": ICD10_ROWS})
    with pytest.raises(LexiconError, match=r"no sheet '全部'; sheets found: \['Sheet1'\]"):
        load_icd10_xlsx(path)


def test_xlsx_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_text("code,name\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="cannot open as an xlsx workbook"):
        load_icd10_xlsx(path)


def test_icd9cm3_xlsx_category_labels(tmp_path: Path) -> None:
    rows = [
        ("主要编码", "附加编码", "手术名称", "类别", "录入选项"),
        ("00.0100", None, "头和颈部血管治疗性超声", "治疗性操作", "选择性"),
        ("01.6x00", None, "颅骨病损的切除术", "手术", "必选"),
        ("00.0200x001", None, "心脏血管治疗性超声", "诊断性操作", "必选"),
        (None, "00.3100", "CT/CTA的计算机辅助外科手术", "治疗性操作", "必选"),
        ("86.700x0013", None, "游离皮瓣移植术", "手术", "必选"),
        ("A01.000", None, "不是手术编码", "手术", "必选"),
    ]
    path = write_xlsx(tmp_path / "icd9.xlsx", {"所有条目": rows})
    plain = load_icd9cm3_xlsx(path, source="ops")
    assert plain.report.loaded == 5 and plain.report.bad_counts() == {"malformed_code": 1}
    assert {e.label for e in plain.entries} == {"手术"}
    mapped = load_icd9cm3_xlsx(path, category_labels={"手术": "手术", "诊断性操作": "检查", "治疗性操作": None})
    entries = by_term(mapped)
    assert entries["心脏血管治疗性超声"].label == "检查"
    assert "头和颈部血管治疗性超声" not in entries
    assert mapped.report.skipped == {"category 治疗性操作": 2}
    assert mapped.report.balanced()


def test_csv_bom_crlf_quoted_and_dagger_codes() -> None:
    result = load_csv(DATA / "beijing_mini.csv", source="bj", label="疾病和诊断")
    report = result.report
    entries = by_term(result)
    assert report.rows == 13 and report.balanced()
    assert (report.loaded, report.merged) == (9, 1)
    assert report.bad_counts() == {"conflicting_duplicate": 1, "empty_name": 1, "malformed_code": 1}
    assert [b.where.rsplit(":", 1)[1] for b in report.bad] == ["10", "11", "13"]
    assert entries["伤寒并发脑膜炎"].code == "A01.003+G01*"
    assert entries["霍乱"].code == "A00.901"  # refines A00
    assert entries["阑尾炎"].code == "K35.900"  # first row wins a conflict
    assert "霍乱,由于01群霍乱弧菌,霍乱生物型所致" in entries
    assert not any(t.startswith("\ufeff") for t in entries)


def test_csv_gb18030_tab_sniffed() -> None:
    result = load_csv(DATA / "beijing_mini_gb18030.tsv", label="疾病和诊断", encoding="gb18030")
    assert result.report.rows == 13 and result.report.loaded == 9
    assert by_term(result)["霍乱，由于01群霍乱弧菌，霍乱生物型所致"].code == "A00.0"


def test_csv_wrong_encoding_names_line_and_fix() -> None:
    with pytest.raises(LexiconError) as info:
        load_csv(DATA / "beijing_mini_gb18030.tsv", label="疾病和诊断")
    assert "beijing_mini_gb18030.tsv:2" in str(info.value) and "gb18030" in str(info.value)


def test_csv_utf8_given_gb18030_is_refused_not_garbled(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("code,name\nA00.0,霍乱\nA01.0,伤寒\n", encoding="utf-8")  # decodes as GB18030 too, garbled
    with pytest.raises(LexiconError) as info:
        load_csv(path, label="疾病和诊断", encoding="gb18030")
    assert "x.csv: the file is UTF-8, not gb18030" in str(info.value) and "encoding: utf-8" in str(info.value)
    assert set(by_term(load_csv(path, label="疾病和诊断"))) == {"霍乱", "伤寒"}


def test_csv_code_format_dotted(tmp_path: Path) -> None:
    path = tmp_path / "who.csv"
    path.write_text("code,name\nA000,霍乱\nj155 ,大肠杆菌性肺炎\nA01,伤寒\nA02.0,沙门菌肠炎\n", encoding="utf-8")
    given = {e.term: e.code for e in load_csv(path, label="疾病和诊断").entries}
    assert given == {"霍乱": "A000", "大肠杆菌性肺炎": "J155", "伤寒": "A01", "沙门菌肠炎": "A02.0"}
    dotted = {e.term: e.code for e in load_csv(path, label="疾病和诊断", code_format="dotted").entries}
    assert dotted == {"霍乱": "A00.0", "大肠杆菌性肺炎": "J15.5", "伤寒": "A01", "沙门菌肠炎": "A02.0"}
    with pytest.raises(LexiconError, match="unknown code_format 'dots'.*use `dotted` or `given`"):
        load_csv(path, label="疾病和诊断", code_format="dots")


def test_csv_strict_and_malformed_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("code;name\nA00;霍乱\nA01;伤寒;多余\n", encoding="utf-8")
    result = load_csv(path, label="疾病和诊断")
    assert result.report.bad_counts() == {"malformed_row": 1}
    with pytest.raises(LexiconError, match=r"x\.csv:3: expected 2 fields"):
        load_csv(path, label="疾病和诊断", strict=True)
    with pytest.raises(LexiconError, match=r"lacks column\(s\) code/编码"):
        load_csv(path, label="疾病和诊断", delimiter=",")
    headerless = tmp_path / "records.csv"  # a record file given by mistake: its first row is no header
    headerless.write_text("r1,患者因反复胸闷胸痛三年余加重一周入院治疗\n", encoding="utf-8")
    with pytest.raises(LexiconError) as err:
        load_csv(headerless, label="疾病和诊断", delimiter=",")
    assert "headers found: ['r1'] and 1 other cell(s), not shown" in str(err.value)
    assert "胸闷" not in str(err.value)


def _stray_quote(tmp_path: Path) -> Path:
    path = tmp_path / "q.csv"  # a stray quote on line 3: csv reads every later row into that one field
    rows = "".join(f"C00.{i:03d},病{i}\n" for i in range(200))
    path.write_text(f'code,name\nC15.900,食管癌\nC16.900,"胃癌\n{rows}', encoding="utf-8")
    return path


def test_csv_a_stray_quote_is_refused_at_the_line_it_opens(tmp_path: Path) -> None:
    path = _stray_quote(tmp_path)
    for strict in (None, True):  # unless the source says `strict: false`, the load stops there
        with pytest.raises(LexiconError) as info:
            load_csv(path, label="疾病和诊断", strict=strict)
        message = str(info.value)
        assert "q.csv:3:" in message and "quote" in message and "strict: false" in message
        assert "\n" not in message and "胃癌" not in message


def test_csv_a_stray_quote_skips_one_row_when_not_strict(tmp_path: Path) -> None:
    result = load_csv(_stray_quote(tmp_path), label="疾病和诊断", strict=False)
    assert result.report.bad_counts() == {"malformed_row": 1}
    assert result.report.bad[0].where.endswith("q.csv:3") and "quote" in result.report.bad[0].message
    assert result.report.rows == 202 and result.report.loaded == 201 and result.report.balanced()
    assert {"食管癌", "病0", "病199"} <= set(by_term(result)) and "胃癌" not in by_term(result)


def test_csv_a_quoted_cell_over_two_lines_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"  # Excel's Alt+Enter inside a quoted cell: a row over two lines, no stray quote
    path.write_text('name,code\n"伤寒\n副伤寒",A01.000\n霍乱,A00.900\n', encoding="utf-8")
    result = load_csv(path, label="疾病和诊断")
    assert set(by_term(result)) == {"伤寒 副伤寒", "霍乱"} and not result.report.bad


def test_csv_a_stray_quote_closed_on_a_later_line_costs_that_line_too(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"  # the quote opened on line 3 closes inside line 5: rows 4 is kept, 3 and 5 are bad
    path.write_text('code,name\nC15.900,食管癌\nC16.900,"胃癌\nC17.900,小肠癌\nC18.900,结"肠癌\nC19.x00,直肠癌\n',
                    encoding="utf-8")
    result = load_csv(path, label="疾病和诊断", strict=False)
    assert set(by_term(result)) == {"食管癌", "小肠癌", "直肠癌"}  # no `结"肠癌`, no `胃癌\nC17.900...`
    assert [bad.where.rsplit(":", 1)[1] for bad in result.report.bad] == ["3", "5"]


def test_exclude_codes() -> None:
    result = load_csv(DATA / "beijing_mini.csv", label="疾病和诊断", exclude_codes="^A0")
    entries = by_term(result)
    assert "霍乱" not in entries and "伤寒并发脑膜炎" not in entries and "新生儿破伤风" in entries
    assert result.report.skipped == {"excluded code": 5} and result.report.balanced()
    with pytest.raises(LexiconError, match="invalid regular expression"):
        load_csv(DATA / "beijing_mini.csv", label="x", exclude_codes="[")


def test_csv_custom_columns_and_no_code_system(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("编号\t药名\nX-1\t阿司匹林\n", encoding="utf-8")
    result = load_csv(path, label="药物", columns={"code": "编号", "name": "药名"}, code_system="none")
    assert result.entries == [LexiconEntry("阿司匹林", "药物", "X-1", "阿司匹林", "csv")]


def test_po_msgctxt_codes_and_skips() -> None:
    result = load_po(DATA / "gnuhealth_mini.po", source="gh")
    report = result.report
    entries = by_term(result)
    assert report.rows == 10 and report.balanced()
    assert entries["大肠杆菌性肺炎"].code == "J15.5"
    assert entries["未特指的霍乱"].code == "A00.9"
    assert entries["霍乱"].code == "A00"
    assert report.skipped == {"untranslated": 1, "fuzzy": 1, "other context": 1, "obsolete": 1}
    assert report.bad_counts() == {"conflicting_duplicate": 1, "malformed_code": 1}
    assert "过时条目" not in entries and "肺炎" not in entries
    given = by_term(load_po(DATA / "gnuhealth_mini.po", code_format="given"))
    assert given["大肠杆菌性肺炎"].code == "J155"


def test_po_strict_names_line() -> None:
    with pytest.raises(LexiconError) as info:
        load_po(DATA / "gnuhealth_mini.po", strict=True)
    assert "gnuhealth_mini.po:" in str(info.value) and "J1X9" in str(info.value)


def test_list_comments_and_frequency_column() -> None:
    result = load_list(DATA / "terms_mini.txt", label="医学词", source="thuocl")
    assert [e.term for e in result.entries] == ["精神", "医院", "高血压", "2型糖尿病"]
    assert all(e.code is None and e.label == "医学词" for e in result.entries)
    assert result.report.rows == 7 and result.report.balanced()
    assert result.report.bad_counts() == {"not_a_term": 3}  # 21, III, Ⅳ
    assert [b.where.rsplit(":", 1)[1] for b in result.report.bad] == ["9", "10", "11"]


def test_list_keeps_a_number_after_one_space_and_warns_of_a_label_column(tmp_path, caplog) -> None:
    path = tmp_path / "terms.txt"
    path.write_text("维生素B 12\n白细胞介素 2\n肺炎\t疾病\n高血压\t35\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="medner.lexicon.loaders"):
        result = load_list(path, label="药物", source="s")
    assert [e.term for e in result.entries] == ["维生素B 12", "白细胞介素 2", "肺炎", "高血压"]
    assert "1 lines have a second column that is not a frequency (the first at line 3)" in caplog.text


def test_list_needs_label() -> None:
    with pytest.raises(LexiconError, match="needs a label"):
        load_list(DATA / "terms_mini.txt", label=None)


def test_project_tsv() -> None:
    result = load_project_tsv(DATA / "project_mini.tsv", label="默认")
    entries = by_term(result)
    assert entries["肺癌"] == LexiconEntry("肺癌", "疾病和诊断", "C34.900", "支气管和肺恶性肿瘤", "manual")
    assert entries["CT"].code is None and entries["CT"].label == "影像检查"
    assert entries["阿司匹林"].label == "药物" and entries["阿司匹林"].canonical == "阿司匹林"
    assert entries["阿司匹林"].source == "project_mini"


def test_missing_file_is_a_lexicon_error(tmp_path: Path) -> None:
    for load in (lambda p: load_csv(p, label="x"), lambda p: load_list(p, label="x"), load_po, load_project_tsv):
        with pytest.raises(LexiconError, match="not found"):
            load(tmp_path / "nope.txt")


@pytest.mark.parametrize("code", ["A00", "A00.9", "A00.000", "A00.000x001", "A33.x00", "A33.x00x002", "A38.X",
                                  "A33xx01", "F04xx001", "E16.8x011", "C79.8201", "Z51.89201", "L57.402B",
                                  "L90.505A1", "A01.001†", "A06.5+", "G01*", "D63.0*", "A01.003+G01*",
                                  "A18.128+N33.0*", "M81600/3", "M800000/0", "J155"])
def test_icd10_codes_accepted(code: str) -> None:
    assert is_valid_code(code, CODE_SYSTEMS["icd10"])


@pytest.mark.parametrize("code", ["N", "A0", "a00.1", "A00.", "A00.123456", "AA0", "A00 .1", "00.0100", "M8000/3"])
def test_icd10_codes_rejected(code: str) -> None:
    assert not is_valid_code(code, CODE_SYSTEMS["icd10"])


@pytest.mark.parametrize("code,ok", [("00.0100", True), ("01.6x00", True), ("00.0200x001", True),
                                     ("03.1x00x001", True), ("86.700x0013", True), ("99.25", True), ("00", True),
                                     ("A00.000", False), ("0.01", False), ("00.01000", False)])
def test_icd9cm3_codes(code: str, ok: bool) -> None:
    assert is_valid_code(code, CODE_SYSTEMS["icd9cm3"]) is ok


@pytest.mark.parametrize("given,dotted", [("J155", "J15.5"), ("A000", "A00.0"), ("A00", "A00"), ("J15.5", "J15.5"),
                                          ("B9711", "B97.11")])
def test_dotted_icd10(given: str, dotted: str) -> None:
    assert dotted_icd10(given) == dotted


def test_bad_rows_make_one_short_warning_line_with_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The build's warnings were hundreds of characters (five rows quoted); now one line: count, kinds, first row."""
    import logging

    path = write_xlsx(tmp_path / "icd10.xlsx", {"全部": ICD10_ROWS})
    with caplog.at_level(logging.DEBUG, logger="medner.lexicon"):
        load_icd10_xlsx(path, source="nat")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["nat: 3 bad rows skipped (conflicting_duplicate 1, empty_name 1, malformed_code 1), the first "
                        "at icd10.xlsx[全部]:7; -vv lists each"]
    assert str(tmp_path) not in warnings[0] and "坏编码霍乱" not in warnings[0]  # short: file name, no terms
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "bad row" in r.getMessage()]
    assert len(debug) == 3 and any(":7" in line for line in debug)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 1 and "3 bad," in info[0] and "\n" not in info[0]


def _workbook(path: Path, rows: list[tuple], title: str = "所有条目", formats: dict[str, str] | None = None) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for ref, number_format in (formats or {}).items():
        sheet[ref].number_format = number_format
    book.save(path)
    return path


def test_xlsx_header_below_a_title_row_numeric_codes_and_categories(tmp_path, caplog) -> None:
    rows = [("国家临床版 ICD-9-CM-3 手术编码", None, None, None), (None,) * 4,
            ("主要编码", "附加编码", "手术名称", "类别"),
            (38.1, None, "动脉内膜切除术", "手术"),           # shown as 38.10 under 00.00
            (1.01, None, "脑池穿刺", "手术"),                 # shown as 01.01
            (38.1, None, "通用格式的编码", "手术"),            # General: 38.1 or 38.10? refused
            ("88.0100", None, "腹部CT", "诊断性操作"),
            ("88.0200", None, "腹部CT增强", None),            # a merged category cell read below its first row
            ("99.2600", None, "放疗", "其他操作")]              # not in category_labels: keeps the label, warned
    path = _workbook(tmp_path / "icd9.xlsx", rows, formats={"A4": "00.00", "A5": "00.00"})
    with caplog.at_level(logging.WARNING, logger="medner.lexicon.loaders"):
        result = load_icd9cm3_xlsx(path, category_labels={"手术": "手术", "诊断性操作": None},
                                   code_pattern=r"\d{2}\.\d{2,4}")
    codes = {e.term: e.code for e in result.entries}
    assert codes == {"动脉内膜切除术": "38.10", "脑池穿刺": "01.01", "放疗": "99.2600"}
    bad = {b.where.rsplit(":", 1)[1]: (b.kind, b.message) for b in result.report.bad}
    assert bad["6"][0] == "malformed_code" and "holds the number 38.1" in bad["6"][1]
    assert bad["8"] == ("unknown_category", "empty category (a merged cell? only its first row holds the value)")
    assert result.report.skipped == {"category 诊断性操作": 1} and result.report.balanced()
    assert "category '其他操作' is not in `category_labels`: its 1 rows keep the label '手术'" in caplog.text


def test_csv_with_two_candidate_name_columns_is_refused_until_one_is_named(tmp_path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,name,疾病名称\nA00.0,Cholera,霍乱,\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"2 columns that could be the name column: name, 疾病名称.*"
                                           r"`columns: \{name: name\}`"):
        load_csv(path, label="疾病和诊断")
    [entry] = load_csv(path, label="疾病和诊断", columns={"name": "疾病名称"}).entries  # the trailing comma is no field
    assert (entry.term, entry.code) == ("霍乱", "A00.0")


def test_codes_as_hospitals_write_them_are_normalised_not_dropped(tmp_path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code,name\na00.0,霍乱\nＡ01.0,伤寒\nA17.0†G01*,结核性脑膜炎\nA000 ,古典生物型霍乱\n"
                    "A33.x00,新生儿破伤风\n", encoding="utf-8")
    result = load_csv(path, label="疾病和诊断")
    assert {e.term: e.code for e in result.entries} == {
        "霍乱": "A00.0", "伤寒": "A01.0", "结核性脑膜炎": "A17.0+G01*", "古典生物型霍乱": "A000",
        "新生儿破伤风": "A33.x00"}  # the x of a clinical code stays lower case
    assert result.report.bad == []


@pytest.mark.parametrize("data,hint", [
    ("code,name\nA00.0,霍乱\n".encode("utf-16"), "looks like UTF-16: set `encoding: utf-16`"),
    (b"PK\x03\x04" + b"\xff" * 40, "an .xlsx workbook?"),
])
def test_an_undecodable_source_gets_a_hint_for_what_it_looks_like(tmp_path, data, hint) -> None:
    path = tmp_path / "codes.csv"
    path.write_bytes(data)
    with pytest.raises(LexiconError, match=re.escape(hint)):
        load_csv(path, label="疾病和诊断")


RECORD = "患者因反复胸闷胸痛三年余加重一周入院治疗，既往高血压病史十年，规律服药，血压控制可。" * 6


def test_bad_row_messages_give_the_length_of_a_long_row_not_its_text(tmp_path: Path, caplog) -> None:
    records = tmp_path / "small.txt"  # a corpus given as a term list by mistake
    records.write_text('{"originalText": "' + RECORD + '", "entities": []}\n' + RECORD[:70] + "\tx\n", encoding="utf-8")
    with pytest.raises(LexiconError) as info:
        load_list(records, label="x", strict=True)
    assert "small.txt:1:" in str(info.value) and "characters" in str(info.value)
    caplog.set_level(logging.DEBUG)
    report = load_list(records, label="x").report
    assert report.bad_counts() == {"malformed_row": 1} and report.loaded == 1      # the tab row: a long term
    codes = tmp_path / "c.csv"  # long names with a bad code, or a code that conflicts: length, no text
    codes.write_text(f"code,name\nXYZ,{RECORD[:50]}\nA00,{RECORD[:40]}\nB99,{RECORD[:40]}\n"
                     f"{RECORD[:30]},霍乱\n", encoding="utf-8")
    bad = load_csv(codes, label="x", code_pattern=r"[A-Z]\d\d").report
    assert bad.bad_counts() == {"conflicting_duplicate": 1, "malformed_code": 2}
    shown = " ".join([str(info.value), caplog.text, *map(str, report.bad), *map(str, bad.bad),
                      *report.to_dict()["bad_examples"]])
    assert "患者" not in shown and "originalText" not in shown
    assert "霍乱" in str(bad.bad[-1])  # a short name is a lexicon term: shown
