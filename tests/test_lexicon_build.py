"""`medner lexicon build/stats/match`, config validation, the versioned TSV and load_lexicon."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import openpyxl
import pytest

from medner.cli import main
from medner.errors import ConfigError, LexiconError
from medner.lexicon import LexiconEntry, build_lexicon, load_lexicon, read_config, write_lexicon
from medner.lexicon.build import sidecar_path

DATA = Path(__file__).parent / "data" / "lexicon"
CONFIG = DATA / "lexicon_mini.yaml"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDNER_TEST_LEXICON_DIR", raising=False)


def test_build_merges_with_precedence_and_aliases(tmp_path: Path) -> None:
    out = tmp_path / "lex.tsv"
    result = build_lexicon(CONFIG, out)
    entries = {(e.term, e.label): e for e in load_lexicon(out).entries}
    # hand-computed from the fixtures: 9 (bj) + 3 (gh, 霍乱 shadowed by bj) + 3 (manual) + 4 (words) + 1 alias
    assert len(entries) == 20
    assert entries[("霍乱", "疾病和诊断")].source == "bj" and entries[("霍乱", "疾病和诊断")].code == "A00.901"
    alias = entries[("行为缺陷", "疾病和诊断")]
    assert (alias.code, alias.canonical, alias.source) == ("F70.8", "其他行为缺陷", "gh")
    assert entries[("肺癌", "疾病和诊断")].source == "manual"
    assert entries[("2型糖尿病", "医学词")].code is None
    side = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert side["fingerprint"] == result.fingerprint == load_lexicon(out).fingerprint
    # aliases: the derived 行为缺陷 and manual's 肺癌 (canonical 支气管和肺恶性肿瘤)
    assert side["entries"] == 20 and side["aliases"] == 2 and side["version"] == "test-1"
    sources = {s["name"]: s for s in side["sources"]}
    assert sources["bj"]["rows"] == 13 and sources["bj"]["bad"] == {
        "conflicting_duplicate": 1, "empty_name": 1, "malformed_code": 1}
    assert sources["gh"]["shadowed"] == 1 and sources["gh"]["aliases_by_rule"] == {"qualifier": 1}
    assert sources["gh"]["aliases_not_added"] == 1  # 未特指的霍乱 -> 霍乱, already an official name
    assert sources["bj"]["aliases_not_added"] == 1  # 霍乱,由于…所致 -> 霍乱
    assert side["label_priority"] == ["疾病和诊断", "药物"]


def test_build_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    fa = build_lexicon(CONFIG, a).fingerprint
    fb = build_lexicon(CONFIG, b).fingerprint
    assert fa == fb and a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    header, columns, *rows = a.read_text(encoding="utf-8").splitlines()
    assert header.startswith("# medner-lexicon format=1 version=test-1 entries=20 sha256=")
    assert header.endswith(fa.split(":")[1])
    assert columns == "term\tlabel\tcode\tcanonical\tsource"
    assert rows == sorted(rows, key=lambda r: tuple(r.split("\t")))


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    one = write_lexicon([LexiconEntry("肺癌", "疾病和诊断")], tmp_path / "1.tsv", version="a")
    same = write_lexicon([LexiconEntry("肺癌", "疾病和诊断")] * 2, tmp_path / "2.tsv", version="b")
    other = write_lexicon([LexiconEntry("肺癌", "疾病和诊断", "C34.900")], tmp_path / "3.tsv", version="a")
    assert one == same != other


def test_env_var_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(DATA / "gnuhealth_mini.po", moved / "gnuhealth_mini.po")
    monkeypatch.setenv("MEDNER_TEST_LEXICON_DIR", str(moved))
    spec = {s.name: s for s in read_config(CONFIG).sources}["gh"]
    assert spec.path == moved / "gnuhealth_mini.po"
    monkeypatch.delenv("MEDNER_TEST_LEXICON_DIR")
    assert {s.name: s for s in read_config(CONFIG).sources}["gh"].path == DATA / "gnuhealth_mini.po"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("body,where,fragment", [
    ("version: 1\nsources: []\n", "sources", "non-empty list"),
    ("sauces: []\n", "sauces", "unknown key"),
    ("sources:\n  - {name: a, kind: xls, path: x}\n", "sources[0].kind", "unknown kind"),
    ("sources:\n  - {name: a, kind: csv, path: x, sheet: s}\n", "sources[0].sheet", "unknown key"),
    ("sources:\n  - {name: a, kind: csv}\n", "sources[0].path", "missing"),
    ("sources:\n  - {name: a, kind: list, label: D, path: x}\n  - {name: a, kind: list, label: D, path: y}\n", "sources[1].name",
     "duplicated"),
    ("sources:\n  - {name: a, kind: list, label: D, path: '${NOT_SET_ANYWHERE_42}/x'}\n", "sources[0].path", "not set"),
    ("sources:\n  - {name: a, kind: list, label: D, path: x, strict: yes please}\n", "sources[0].strict", "true or false"),
    ("sources:\n  - {name: a, kind: list, label: D, path: x, alias_rules: [nope]}\n", "sources[0].alias_rules", "unknown"),
    ("version: 'a b'\nsources:\n  - {name: a, kind: list, label: D, path: x}\n", "version", "may only hold"),
    ("sources: [\n", None, "invalid YAML"),
    ("sources:\n  - {name: a, kind: list, path: x}\n", "sources[0].label", "a list source needs a label"),
    ("sources:\n  - {name: a, kind: csv, path: x}\n", "sources[0].label", "a csv source needs a label"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, body: str, where: str | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_config(write_config(tmp_path, body))
    message = str(info.value)
    assert "cfg.yaml" in message and fragment in message and "Fix:" in message
    if where:
        assert f"`{where}`" in message


#: a key that only some kinds take -> those kinds
KIND_KEYS = {"sheet: S": {"icd10_xlsx", "icd9cm3_xlsx"}, "category_labels: {a: b}": {"icd10_xlsx", "icd9cm3_xlsx"},
             "delimiter: ','": {"csv"}, "columns: {name: 名称}": {"icd10_xlsx", "icd9cm3_xlsx", "csv"},
             "context: x": {"po"}, "code_format: given": {"po", "csv"},
             "exclude_codes: ^R": {"icd10_xlsx", "icd9cm3_xlsx", "csv", "po", "tsv"}}
KINDS = ["icd10_xlsx", "icd9cm3_xlsx", "csv", "po", "list", "tsv"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("option", sorted(KIND_KEYS))
def test_each_kind_takes_its_own_keys(tmp_path: Path, kind: str, option: str) -> None:
    path = write_config(tmp_path, f"sources:\n  - {{name: a, kind: {kind}, path: x, label: D, {option}}}\n")
    key = option.split(":")[0]
    if kind in KIND_KEYS[option]:
        [spec] = read_config(path).sources
        assert spec.kind == kind and key in spec.options  # passed to the loader
        return
    with pytest.raises(ConfigError, match=rf"unknown key `sources\[0\]\.{key}` for kind {kind}; valid keys here: "
                                          rf"alias_rules, aliases, .*Fix: remove or rename the key$") as info:
        read_config(path)
    valid = str(info.value).split("valid keys here: ")[1].split(". Fix")[0].split(", ")
    assert key not in valid and {"name", "kind", "path", "label", "strict", "optional"} <= set(valid)


@pytest.mark.parametrize("body, field, fragment", [
    ("sources:\n  - {kind: list, path: x}\n", "sources[0].name", "missing required key"),
    ("sources:\n  - {name: a, path: x}\n", "sources[0].kind", "missing required key"),
    ("sources:\n  - {name: a, kind: list, path: ''}\n", "sources[0].path", "empty path"),
    ("sources:\n  - {name: 'a b', kind: list, path: x}\n", "sources[0].name", "holds characters other than"),
    ("sources:\n  - {name: a, kind: po, path: x, code_format: dot}\n", "sources[0].code_format",
     "must be one of dotted, given"),
    ("sources:\n  - {name: a, kind: csv, path: x, columns: [name]}\n", "sources[0].columns", "must be a mapping"),
    ("sources:\n  - {name: a, kind: csv, path: x, columns: {name: {a: 1}}}\n", "sources[0].columns.name",
     "must be a string or a list of strings or null"),
    ("sources:\n  - {name: a, kind: list, path: x, label: [a]}\n", "sources[0].label", "must be a string"),
    ("sources:\n  - {name: a, kind: list, path: x, alias_rules: tail}\n", "sources[0].alias_rules",
     "must be a list of strings"),
    ("sources: {name: a}\n", "sources", "must be a list of mappings with `kind:`"),
    ("sources:\n  - a.csv\n", "sources[0]", "must be a mapping with `kind:`"),
    ("label_priority: 药物\nsources:\n  - {name: a, kind: list, label: D, path: x}\n", "label_priority",
     "must be a list of strings"),
])
def test_more_config_errors_name_file_and_key(tmp_path: Path, body: str, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_config(write_config(tmp_path, body))
    message = str(info.value)
    assert message.startswith(str(tmp_path / "cfg.yaml") + ": ") and f"`{field}`" in message
    assert fragment in message and ". Fix: " in message and "\n" not in message


def test_config_loads_to_typed_sources(tmp_path: Path) -> None:
    config = read_config(CONFIG)
    assert config.version == "test-1" and config.label_priority == ("疾病和诊断", "药物")
    assert [(s.name, s.kind, s.path_as_written) for s in config.sources] == [
        ("bj", "csv", "beijing_mini.csv"), ("gh", "po", "${MEDNER_TEST_LEXICON_DIR:-.}/gnuhealth_mini.po"),
        ("manual", "tsv", "project_mini.tsv"), ("words", "list", "terms_mini.txt")]
    assert [s.path for s in config.sources] == [DATA / "beijing_mini.csv", DATA / "gnuhealth_mini.po",
                                                DATA / "project_mini.tsv", DATA / "terms_mini.txt"]
    assert all(s.options == {} for s in config.sources)  # unset options: the loaders' defaults
    shipped = read_config(Path(__file__).resolve().parents[1] / "configs" / "lexicon_zh.yaml")
    icd9 = {s.name: s for s in shipped.sources}["icd9cm3_national"]
    assert icd9.kind == "icd9cm3_xlsx" and icd9.aliases and not icd9.strict and icd9.options == {
        "category_labels": {"手术": "手术", "介入治疗": "手术", "治疗性操作": None, "诊断性操作": None}}
    assert {s.name: s for s in shipped.sources}["icd10_cn_3char"].options == {"delimiter": "\t",
                                                                               "exclude_codes": "^[RVWXYZ]"}


def test_missing_source_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sources:\n  - {{name: a, kind: list, path: missing.txt, label: x}}\n"
                                 f"  - {{name: b, kind: list, path: '{DATA / 'terms_mini.txt'}', label: y}}\n")
    with pytest.raises(ConfigError, match=r"`sources\[0\]\.path`.*optional: true"):
        build_lexicon(cfg)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("label: x}", "label: x, optional: true}"), encoding="utf-8")
    result = build_lexicon(cfg)
    assert result.sidecar["sources"][0] == {"name": "a", "kind": "list", "path": "missing.txt", "label": "x",
                                            "missing": True}
    assert result.sidecar["entries"] == 4


def test_strict_build_fails_at_first_bad_row(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match=r"beijing_mini\.csv:10: malformed icd10 code 'N'"):
        build_lexicon(CONFIG, strict=True)


def test_build_with_xlsx_sources(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "全部"
    for row in [("主要编码", "附加编码", "疾病名称"), ("C34.900", None, "支气管和肺恶性肿瘤"),
                ("C16.900", None, "胃恶性肿瘤")]:
        sheet.append(row)
    workbook.save(tmp_path / "icd10.xlsx")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "所有条目"
    for row in [("主要编码", "附加编码", "手术名称", "类别"), ("43.7x00x001", None, "胃大部切除伴胃-空肠吻合术", "手术"),
                ("99.2500", None, "化学治疗", "治疗性操作")]:
        sheet.append(row)
    workbook.save(tmp_path / "icd9.xlsx")
    (tmp_path / "crawled.txt").write_text("肺癌\n胃恶性肿瘤\n", encoding="utf-8")
    cfg = write_config(tmp_path, """version: x1
sources:
  - {name: nat, kind: icd10_xlsx, path: icd10.xlsx, label: 疾病和诊断, aliases: true}
  - {name: ops, kind: icd9cm3_xlsx, path: icd9.xlsx, label: 手术, category_labels: {治疗性操作: null}}
  - {name: crawled, kind: list, path: crawled.txt, label: 疾病和诊断}
""")
    result = build_lexicon(cfg, tmp_path / "out.tsv")
    terms = {e.term: e for e in result.entries}
    # the list's uncoded 肺癌 gives way to the coded alias; its 胃恶性肿瘤 is shadowed by the official name
    assert terms["肺癌"].code == "C34.900" and terms["肺癌"].canonical == "支气管和肺恶性肿瘤"
    assert terms["肺癌"].source == "nat" and terms["胃恶性肿瘤"].source == "nat"
    crawled = result.sidecar["sources"][2]
    assert (crawled["replaced_by_coded_alias"], crawled["shadowed"], crawled["official_in_lexicon"]) == (1, 1, 0)
    assert terms["胃癌"].code == "C16.900"
    assert "化学治疗" not in terms and terms["胃大部切除伴胃-空肠吻合术"].label == "手术"
    assert result.sidecar["sources"][1]["skipped"] == {"category 治疗性操作": 1}


def test_load_lexicon_recomputes_fingerprint_of_edited_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "lex.tsv"
    fp = build_lexicon(CONFIG, out).fingerprint
    out.write_text(out.read_text(encoding="utf-8") + "新词\t疾病和诊断\t\t\tmanual\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        lexicon = load_lexicon(out)
    assert lexicon.fingerprint != fp and "differs from the header" in caplog.text
    assert lexicon.version == "test-1" and len(lexicon) == 21


def test_load_lexicon_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("词\t类\n肺癌\t疾病\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"bad\.tsv:1: header row lacks column"):
        load_lexicon(bad)
    bad.write_text("term\tlabel\n肺癌\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"bad\.tsv:2: expected >= 2 tab-separated fields"):
        load_lexicon(bad)
    with pytest.raises(LexiconError, match="not found"):
        load_lexicon(tmp_path / "none.tsv")
    bad.write_bytes("term\tlabel\n肺癌\t疾病和诊断\n".encode("gb18030"))  # saved by a GBK editor
    with pytest.raises(LexiconError, match=r"bad\.tsv:2: cannot decode.*Fix: a medner lexicon is UTF-8"):
        load_lexicon(bad)
    with pytest.raises(LexiconError, match="is a folder"):
        load_lexicon(tmp_path)


def test_a_corpus_given_as_lexicon_is_refused_without_showing_its_text(tmp_path: Path) -> None:
    corpus = tmp_path / "dev.jsonl"  # a plausible slip: the record file where the lexicon belongs
    corpus.write_text('{"id": "r1", "text": "患者因高血压入院"}\n', encoding="utf-8")
    with pytest.raises(LexiconError) as err:
        load_lexicon(corpus)
    message = str(err.value)
    assert "dev.jsonl:1: header row lacks column(s) ['term', 'label']" in message and "JSON corpus" in message
    assert "高血压" not in message and "r1" not in message
    tagged = tmp_path / "tagged.tsv"  # a character-per-line tagged corpus: short cells, still record text
    tagged.write_text("患\tO\n者\tO\n", encoding="utf-8")
    with pytest.raises(LexiconError) as err:
        load_lexicon(tagged)
    assert "headers found: ['O'] and 1 other cell(s), not shown" in str(err.value) and "患" not in str(err.value)


def test_cli_build_stats_match(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lex.tsv"
    assert main(["lexicon", "build", str(CONFIG), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20 entries (2 aliases)" in printed and "sha256:" in printed
    assert main(["lexicon", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 20 and stats["by_label"]["医学词"] == 4 and stats["aliases"] == 2
    assert main(["lexicon", "stats", str(out)]) == 0
    assert "by label:" in capsys.readouterr().out
    assert main(["lexicon", "match", str(out), "患者ＣＴ示肺癌，服阿司匹林"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert [(s["text"], s["label"]) for s in line["spans"]] == [("ＣＴ", "影像检查"), ("肺癌", "疾病和诊断"),
                                                               ("阿司匹林", "药物")]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["lexicon", "build", str(CONFIG), "-o", str(tmp_path / "x.tsv"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("medner: error: ") and "beijing_mini.csv:10" in err[-1]
    assert main(["lexicon", "stats", str(tmp_path / "missing.tsv")]) == 2
    assert "not found" in capsys.readouterr().err


def test_build_refuses_to_write_over_its_config_or_sources_and_a_json_lexicon(tmp_path: Path, capsys) -> None:
    (tmp_path / "mine.txt").write_text("肺炎\n", encoding="utf-8")
    cfg = write_config(tmp_path, "version: t1\nsources:\n  - {name: s, kind: list, path: mine.txt, label: 疾病和诊断}\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for out, message in (("mine.txt", "mine.txt: writing it would replace"), ("cfg.yaml", "cfg.yaml: writing it would"),
                         ("mine.json", "is the name of the JSON sidecar of mine.tsv"),
                         ("cfg.tsv", None)):
        code = main(["lexicon", "build", str(cfg), "-o", str(tmp_path / out)])
        err = capsys.readouterr().err
        if message is None:  # cfg.tsv's sidecar would be cfg.json: no clash with cfg.yaml
            assert code == 0
            continue
        assert code == 2 and message in err, err
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())
    (tmp_path / "lex.yaml").write_text("version: t1\nsources:\n  - {name: s, kind: list, path: lex.json, "
                                       "label: 疾病和诊断}\n", encoding="utf-8")
    (tmp_path / "lex.json").write_text("肺炎\n", encoding="utf-8")
    assert main(["lexicon", "build", str(tmp_path / "lex.yaml"), "-o", str(tmp_path / "lex.tsv")]) == 2
    assert "-o (its sidecar)" in capsys.readouterr().err  # lex.tsv's sidecar is the source lex.json


def test_a_source_that_gives_no_entries_fails_the_build_and_keeps_the_earlier_lexicon(tmp_path: Path) -> None:
    (tmp_path / "codes.csv").write_text("code,name\nZD0001,霍乱\nZD0002,伤寒\n", encoding="utf-8")  # internal codes
    cfg = write_config(tmp_path, "version: t1\nsources:\n  - {name: s, kind: csv, path: codes.csv, label: D}\n")
    (tmp_path / "out.tsv").write_text("earlier\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"source 's' gave no entries \(2 rows, 2 malformed_code\)"):
        build_lexicon(cfg, tmp_path / "out.tsv")
    assert (tmp_path / "out.tsv").read_text(encoding="utf-8") == "earlier\n"


def test_xlsx_sources_without_a_label_take_their_kinds_default(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "全部"
    for row in [("主要编码", "附加编码", "疾病名称"), ("C16.900", None, "胃恶性肿瘤")]:
        book.active.append(row)
    book.save(tmp_path / "icd10.xlsx")
    cfg = write_config(tmp_path, "version: t1\nsources:\n  - {name: nat, kind: icd10_xlsx, path: icd10.xlsx}\n")
    [entry] = build_lexicon(cfg).entries
    assert entry.label == "疾病和诊断"


def test_cli_match_takes_the_built_label_priority_and_refuses_unknown_labels(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.txt").write_text("头痛\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("头痛\n", encoding="utf-8")
    cfg = write_config(tmp_path, "version: t1\nlabel_priority: [症状]\nsources:\n"
                                 "  - {name: a, kind: list, path: a.txt, label: 疾病和诊断}\n"
                                 "  - {name: b, kind: list, path: b.txt, label: 症状}\n")
    out = tmp_path / "lex.tsv"
    assert main(["lexicon", "build", str(cfg), "-o", str(out)]) == 0
    capsys.readouterr()

    def label(*options: str) -> str:
        assert main(["lexicon", "match", str(out), "患者头痛", *options]) == 0
        return json.loads(capsys.readouterr().out)["spans"][0]["label"]

    assert label() == "症状" and label("--label-priority", "疾病和诊断") == "疾病和诊断"
    assert main(["lexicon", "match", str(out), "头痛", "--label-priority", "症候"]) == 2
    assert "'症候', not a label of" in capsys.readouterr().err
    side = out.with_suffix(".json")  # the build named a label none of its sources gave (an optional one was absent)
    side.write_text(json.dumps({**json.loads(side.read_text(encoding="utf-8")), "label_priority": ["药物", "症状"]},
                               ensure_ascii=False), encoding="utf-8")
    assert label() == "症状"  # was "--label-priority names '药物'", an option never given
    (tmp_path / "folder").mkdir()
    assert main(["lexicon", "build", str(cfg), "-o", str(tmp_path / "folder")]) == 2
    assert "folder: is a folder, not a file" in capsys.readouterr().err and not list((tmp_path / "folder").iterdir())


def test_a_bad_row_in_a_lexicon_file_names_a_fix_that_applies(tmp_path: Path) -> None:
    path = tmp_path / "lex.tsv"
    path.write_text("term\tlabel\tcode\n霍乱\t疾病和诊断\tA00.0\n\t疾病和诊断\t\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=r"lex.tsv:3: empty name.*build the lexicon again") as info:
        load_lexicon(path)
    assert "strict" not in str(info.value)


def test_a_stray_quote_in_a_csv_source_fails_the_build_unless_the_source_says_strict_false(tmp_path, capsys) -> None:
    rows = "".join(f"C00.{i:03d},病{i}\n" for i in range(50))
    (tmp_path / "q.csv").write_text(f'code,name\nC15.900,食管癌\nC16.900,"胃癌\n{rows}', encoding="utf-8")
    source = "sources:\n  - {name: e, kind: csv, path: q.csv, label: 疾病和诊断%s}\n"
    cfg = write_config(tmp_path, source % "")
    assert main(["lexicon", "build", str(cfg), "-o", str(tmp_path / "lex.tsv")]) == 2
    err = capsys.readouterr().err
    assert "q.csv:3:" in err and "strict: false" in err and not (tmp_path / "lex.tsv").exists()
    cfg = write_config(tmp_path, source % ", strict: false")
    result = build_lexicon(cfg)
    [item] = result.sidecar["sources"]
    assert (item["rows"], item["loaded"], item["bad"]) == (52, 51, {"malformed_row": 1})


def test_two_lexicons_in_one_folder_keep_their_own_sidecars(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.txt").write_text("头痛\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("头痛\n", encoding="utf-8")
    sources = ("  - {name: a, kind: list, path: a.txt, label: 疾病和诊断}\n"
               "  - {name: b, kind: list, path: b.txt, label: 症状}\n")
    for version, priority in (("v1", "[疾病和诊断, 症状]"), ("v2", "[症状, 疾病和诊断]")):
        cfg = write_config(tmp_path, f"version: {version}\nlabel_priority: {priority}\nsources:\n{sources}")
        assert main(["lexicon", "build", str(cfg), "-o", str(tmp_path / f"lexicon.{version}")]) == 0
        assert f"sidecar: {tmp_path / f'lexicon.{version}.json'}" in capsys.readouterr().out
    assert sidecar_path(tmp_path / "lexicon.tsv") == tmp_path / "lexicon.json"  # as documented
    assert sidecar_path(tmp_path / "lexicon") == tmp_path / "lexicon.json"
    for version, label in (("v1", "疾病和诊断"), ("v2", "症状")):
        side = json.loads((tmp_path / f"lexicon.{version}.json").read_text(encoding="utf-8"))
        assert side["version"] == version
        assert main(["lexicon", "match", str(tmp_path / f"lexicon.{version}"), "头痛"]) == 0   # its own priority
        assert json.loads(capsys.readouterr().out)["spans"][0]["label"] == label
    assert not (tmp_path / "lexicon.json").exists()


def test_a_sidecar_under_its_earlier_name_is_still_read_when_it_is_the_lexicons(tmp_path: Path, capsys,
                                                                                  caplog) -> None:
    (tmp_path / "a.txt").write_text("头痛\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("头痛\n", encoding="utf-8")
    cfg = write_config(tmp_path, "version: v1\nlabel_priority: [症状, 疾病和诊断]\nsources:\n"
                                 "  - {name: a, kind: list, path: a.txt, label: 疾病和诊断}\n"
                                 "  - {name: b, kind: list, path: b.txt, label: 症状}\n")
    assert main(["lexicon", "build", str(cfg), "-o", str(tmp_path / "lexicon.v1")]) == 0
    (tmp_path / "lexicon.v1.json").rename(tmp_path / "lexicon.json")  # as a build before the naming change wrote it
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="medner"):
        assert main(["lexicon", "match", str(tmp_path / "lexicon.v1"), "头痛"]) == 0
    assert json.loads(capsys.readouterr().out)["spans"][0]["label"] == "症状"  # the build's priority, not file order
    assert "earlier" not in caplog.text and "before medner named it lexicon.v1.json" in caplog.text
    side = json.loads((tmp_path / "lexicon.json").read_text(encoding="utf-8"))
    side["fingerprint"] = "sha256:another lexicon's"
    (tmp_path / "lexicon.json").write_text(json.dumps(side), encoding="utf-8")
    assert main(["lexicon", "match", str(tmp_path / "lexicon.v1"), "头痛"]) == 0
    assert json.loads(capsys.readouterr().out)["spans"][0]["label"] == "疾病和诊断"  # another lexicon's: not read
