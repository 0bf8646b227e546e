"""Config -> labelling functions -> weak records, the report, and the `medner weak` commands, on the tiny
fixtures in tests/data/weak (gold spans written by hand for the test texts)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from medner.cli import main
from medner.corpus import read_corpus
from medner.errors import ConfigError
from medner.types import Record, Span
from medner.weak import WeakPipeline, read_weak_config, report_markdown, weak_report, write_weak_report

DATA = Path(__file__).resolve().parent / "data" / "weak"
CONFIG = DATA / "weak_tiny.yaml"
GOLD = DATA / "tiny_gold.jsonl"


@pytest.fixture(scope="module")
def pipeline() -> WeakPipeline:
    return WeakPipeline.from_config(CONFIG)


@pytest.fixture(scope="module")
def records() -> list:
    return list(read_corpus(GOLD, "jsonl"))


def test_functions_built_from_config(pipeline: WeakPipeline) -> None:
    names = [lf.name for lf in pipeline.functions]
    assert names == ["icd10", "icd9", "procedure_rule", "drugs", "anatomy", "lab", "lab_values", "imaging"]
    labels = set()
    for lf in pipeline.functions:
        labels.update(lf.labels)
    assert labels <= set(pipeline.config.labels)


def test_outputs_offsets_and_sources(pipeline: WeakPipeline, records: list) -> None:
    outputs = pipeline.outputs(records)
    for record, out in zip(records, outputs):
        for name, spans in out.items():
            for s in spans:
                assert s.source == name
                assert 0 <= s.start < s.end <= len(record.text)
    by_id = {r.id: out for r, out in zip(records, outputs)}
    text = {r.id: r.text for r in records}

    def mentions(rid: str, lf: str) -> list[str]:
        return [text[rid][s.start:s.end] for s in by_id[rid][lf]]

    assert mentions("r2", "anatomy") == ["腹", "腹"]            # 恶心 blocks 心; 血常规 (a panel) blocks nothing here
    assert mentions("r4", "icd10") == ["2型糖尿病", "原发性高血压", "直肠癌术后"]   # 腹泻 is a symptom: blocked
    assert mentions("r3", "drugs") == ["卡培他滨"]               # XELOX: a regimen, blocked
    assert mentions("r5", "lab") == []                          # CEA（+）: immunohistochemistry
    assert mentions("r3", "imaging") == ["上腹部CT", "心电图"]
    assert mentions("r1", "procedure_rule") == ["右半结肠切除术"]
    codes = {s.code for s in by_id["r4"]["icd10"]}
    assert codes == {"E11.900", "I10.x05", "C20.x00"}


@pytest.mark.parametrize("method", ["majority", "dawid_skene"])
def test_label_records(pipeline: WeakPipeline, records: list, method: str) -> None:
    result = pipeline.label(records, method=method)
    assert [r.id for r in result.records] == [r.id for r in records]
    gold = {(r.id, s.start, s.end, s.label) for r in records for s in r.spans}
    weak = {(r.id, s.start, s.end, s.label) for r in result.records for s in r.spans}
    assert len(gold & weak) / len(gold) > 0.8  # the fixtures are written so the rules find most of it
    for r in result.records:
        assert all(s.source == f"weak:{method}" and 0.0 < s.score <= 1.0 for s in r.spans)
        assert all(a.end <= b.start for a, b in zip(r.spans, r.spans[1:]))
    coded = {r.text[s.start:s.end]: s.code for r in result.records for s in r.spans if s.code}
    assert coded["右半结肠切除术"] == "45.7300x007"
    # 直肠癌术后 comes with its code from the lexicon function; the linker codes what a rule found alone
    assert coded["直肠癌术后"] == "C20.x00"


def test_link_codes_uncoded_spans(pipeline: WeakPipeline) -> None:
    from medner.types import Record
    record = Record("x", "拟行胆囊切除术。")
    result = pipeline.label([record], method="majority")
    (span,) = [s for s in result.records[0].spans if s.label == "手术"]
    # found by the procedure rule and the ICD-9 list; with link=False a rule-only span would stay uncoded
    assert span.code == "51.2200"
    rule_only = pipeline.label([Record("y", "行胆囊切除术（腹腔镜）")], method="majority")
    (proc,) = [s for s in rule_only.records[0].spans if s.label == "手术"]
    assert proc.code == "51.2200" and proc.source == "weak:majority"
    unlinked = pipeline.label([Record("y", "行胆囊切除术（腹腔镜）")], method="majority", link=False)
    assert [s.code for s in unlinked.records[0].spans if s.label == "手术"] == [None]


def test_report(pipeline: WeakPipeline, records: list, tmp_path: Path) -> None:
    result = pipeline.label(records)
    report = weak_report(records, result.outputs, {"weak:dawid_skene": [r.spans for r in result.records]},
                         reliability=result.aggregator.reliability(), labels=pipeline.config.labels)
    assert report["gold"] and report["records"] == 5
    anatomy = report["sources"]["anatomy"]
    row = anatomy["per_type"]["解剖部位"]
    # hand count. anatomy emits 结肠 结肠 (r1, inside 结肠癌 / 右半结肠切除术), 腹 腹 (r2; 恶心 and 血常规 are
    # blocked), 上腹部 右肺上叶 (r3), 腹 直肠 (r4), 胆囊 (r5; 肝功能 is blocked) = 9 spans; 5 of them are gold
    # (腹 腹 右肺上叶 腹 胆囊); gold has 6 anatomy spans (the 肝 of 肝功能 is missed)
    assert (row["spans"], row["tp"], row["support"]) == (9, 5, 6)
    assert row["precision"] == pytest.approx(5 / 9, abs=1e-4) and row["recall"] == pytest.approx(5 / 6, abs=1e-4)
    assert anatomy["coverage"]["records"] == 1.0
    assert report["sources"]["imaging"]["conflicts"] >= 1  # 上腹部CT overlaps the anatomy span 上腹部
    md = report_markdown(report)
    assert "| anatomy |" in md and "## 解剖部位" in md and "Estimated reliability" in md
    md_path, json_path = write_weak_report(report, tmp_path / "out" / "weak.md")
    assert md_path.read_text(encoding="utf-8") == md
    assert json.loads(json_path.read_text(encoding="utf-8"))["records"] == 5


def test_report_without_gold(pipeline: WeakPipeline, records: list) -> None:
    bare = [r.with_spans([]) for r in records]
    outputs = pipeline.outputs(bare)
    report = weak_report(bare, outputs)
    assert report["gold"] is False
    assert report["sources"]["anatomy"]["micro"]["precision"] is None
    assert "no gold spans" in report_markdown(report)
    with pytest.raises(ValueError, match="one output per record"):
        weak_report(bare, outputs[:2])


def test_cli_label_and_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "weak.jsonl"
    assert main(["weak", "label", "--config", str(CONFIG), str(GOLD), "--format", "jsonl", "-o", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 5
    for rec in lines:
        for span in rec["spans"]:
            assert rec["text"][span["start"]:span["end"]] == span["text"]
            assert span["source"] == "weak:dawid_skene" and 0 < span["score"] <= 1
        assert rec["meta"]["weak"]["aggregator"] == "dawid_skene"
    assert any(s.get("code") == "C20.x00" for rec in lines for s in rec["spans"])
    capsys.readouterr()
    assert main(["weak", "report", "--config", str(CONFIG), str(GOLD), "--format", "jsonl", "--json",
                 "-o", str(tmp_path / "rep")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["sources"]) >= {"anatomy", "weak:majority", "weak:dawid_skene"}
    assert (tmp_path / "rep.md").exists() and (tmp_path / "rep.json").exists()
    assert main(["weak", "report", "--config", str(CONFIG), str(GOLD), "--aggregator", "majority"]) == 0
    assert "| weak:majority | aggregate |" in capsys.readouterr().out


def test_cli_report_refuses_to_write_over_its_input_and_keeps_dots_in_the_prefix(tmp_path, capsys) -> None:
    gold = tmp_path / "gold.json"
    shutil.copy(GOLD, gold)
    before = gold.read_bytes()
    for prefix in ("gold", "gold.json", "gold.md"):
        assert main(["weak", "report", "--config", str(CONFIG), str(gold), "--format", "jsonl",
                     "-o", str(tmp_path / prefix)]) == 2
        assert "would replace what was read" in capsys.readouterr().err
    assert gold.read_bytes() == before and not (tmp_path / "gold.md").exists()
    assert main(["weak", "report", "--config", str(CONFIG), str(gold), "--format", "jsonl",
                 "-o", str(tmp_path / "weak.v2")]) == 0
    assert (tmp_path / "weak.v2.md").is_file() and (tmp_path / "weak.v2.json").is_file()


def test_cli_label_and_report_can_skip_malformed_records(tmp_path, capsys) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(GOLD.read_text(encoding="utf-8") + '{"id": "bad", "text": "患者", "spans": [{"start": 5, '
                      '"end": 1, "label": "x"}]}\n', encoding="utf-8")
    out = tmp_path / "weak.jsonl"
    assert main(["weak", "label", "--config", str(CONFIG), str(corpus), "--format", "jsonl", "-o", str(out)]) == 2
    assert "--on-error skip" in capsys.readouterr().err and not out.exists()
    assert main(["weak", "label", "--config", str(CONFIG), str(corpus), "--format", "jsonl", "-o", str(out),
                 "--on-error", "skip"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 6  # the bad span is dropped, its record labelled


def write_config(tmp_path: Path, mutate) -> Path:
    tree = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    mutate(tree)
    for name in ("icd_tiny.tsv", "curated_tiny.tsv"):
        shutil.copy(DATA / name, tmp_path / name)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("mutate,field", [
    (lambda t: t.update(extra=1), "extra"),
    (lambda t: t.update(labels=[]), "labels"),
    (lambda t: t["functions"][0].update(kind="magic"), "functions[0].kind"),
    (lambda t: t["functions"][0].update(colour="red"), "functions[0].colour"),
    (lambda t: t["functions"][1].update(name="icd10"), "functions[1].name"),
    (lambda t: t["functions"][0].update(lexicon="nope"), "functions[0].lexicon"),
    (lambda t: t["functions"][0].update(label_map={"疾病和诊断": "DISEASE"}), "functions[0].label_map"),
    (lambda t: t["functions"][2].update(label="手术x"), "functions[2].label"),
    (lambda t: t.update(aggregator={"method": "snorkel"}), "aggregator.method"),
    (lambda t: t.update(aggregator={"method": "majority", "min_confidence": 0.5}), "aggregator.min_confidence"),
    (lambda t: t.update(aggregator={"method": "majority", "majority": {"min_confidence": 0.5}}),
     "aggregator.majority.min_confidence"),
    (lambda t: t.update(aggregator={"method": "majority", "dawid_skene": 3}), "aggregator.dawid_skene"),
    (lambda t: t["lexicons"]["icd"].update(colour=1), "lexicons.icd.colour"),
    (lambda t: t.update(link={"lexicon": "nope"}), "link.lexicon"),
    (lambda t: t.update(link={"lexicon": "icd", "labels": ["X"]}), "link.labels"),
    (lambda t: t.update(link={"lexicon": "icd", "colour": 1}), "link.colour"),
    (lambda t: t["functions"].append({"name": "ext", "kind": "extent", "label": "疾病和诊断", "base": ["nope"]}),
     "functions[8].base"),
    (lambda t: t["functions"].insert(0, {"name": "ext", "kind": "extent", "label": "疾病和诊断", "base": ["icd10"]}),
     "functions[0].base"),   # a composite names functions defined above it only
    (lambda t: t["functions"].append({"name": "ext", "kind": "extent", "label": "疾病和诊断", "base": "icd10"}),
     "functions[8].base"),
    (lambda t: t["functions"].append({"name": "ext", "kind": "extent", "label": "疾病和诊断", "base": ["icd10"],
                                      "sites": ["anatomy"], "right": "("}), "functions[8]"),
    (lambda t: t["functions"][0].update(block_matching="("), "functions[0]"),
    (lambda t: t["functions"].append({"name": "lesion", "kind": "tumour_site", "label": "疾病和诊断",
                                      "sites": ["胃"], "heads": 3}), "functions[8].heads"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, mutate, field: str) -> None:
    path = write_config(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        WeakPipeline.from_config(path)
    message = str(info.value)
    assert str(path) in message and f"`{field}`" in message and "Fix:" in message
    assert "\n" not in message


def test_extent_function_from_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda t: t["functions"].append(
        {"name": "ext", "kind": "extent", "label": "疾病和诊断", "base": ["icd10"], "sites": ["anatomy"]}))
    pipe = WeakPipeline.from_config(path)
    ext = pipe.functions[-1]
    assert ext.name == "ext" and [lf.name for lf in ext.base] == ["icd10"] and ext.sites[0].name == "anatomy"


def test_lesion_heads_and_block_matching_from_config(tmp_path: Path) -> None:
    def mutate(tree: dict) -> None:
        tree["functions"][0]["block_matching"] = "癌$"
        tree["functions"].append({"name": "lesion", "kind": "tumour_site", "label": "疾病和诊断",
                                  "sites": ["胃", "肝"], "heads": ["溃疡", "囊肿"]})
    pipe = WeakPipeline.from_config(write_config(tmp_path, mutate))
    icd10, lesion = pipe.functions[0], pipe.functions[-1]
    text = "胃溃疡，肝多发囊肿，结肠癌"
    record = Record("r", text)
    assert [text[s.start:s.end] for s in lesion.find_spans(record)] == ["胃溃疡", "肝多发囊肿"]
    assert not [s for s in icd10.find_spans(record) if text[s.start:s.end].endswith("癌")]


def test_missing_lexicon_and_bad_term_list(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda t: t["lexicons"]["icd"].update(path="missing.tsv"))
    with pytest.raises(ConfigError, match="lexicon file not found.*lexicons.icd.path"):
        WeakPipeline.from_config(path)
    path = write_config(tmp_path, lambda t: t["functions"][7].update(modalities=42))
    with pytest.raises(ConfigError, match="functions\\[7\\].modalities"):
        WeakPipeline.from_config(path)
    path = write_config(tmp_path, lambda t: t["functions"][7].update(modalities={"lexicon": "curated",
                                                                                 "labels": ["nothing"]}))
    with pytest.raises(ConfigError, match="no terms with labels"):
        WeakPipeline.from_config(path)


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("functions: [\n", encoding="utf-8")
    assert main(["weak", "report", "--config", str(bad), str(GOLD)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error:") and "invalid YAML" in err and "\n" not in err


def test_read_weak_config_resolves_relative_paths() -> None:
    config = read_weak_config(CONFIG)
    assert config.labels[0] == "疾病和诊断" and config.aggregator.method == "dawid_skene"


def test_cli_report_on_gold_of_other_labels_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = tmp_path / "other.jsonl"  # the same texts, annotated with labels the weak config does not know
    rows = [json.loads(x) for x in GOLD.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        for span in row.get("spans", []):
            span["label"] = "dis"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert main(["weak", "report", "--config", str(CONFIG), str(other), "--format", "jsonl", "--json"]) == 0
    assert "have none in common, so every precision and recall is 0" in caplog.text



def test_cli_label_refuses_to_write_over_a_lexicon_the_config_reads(tmp_path: Path, capsys) -> None:
    for name in ("lexicon_mini.yaml", "beijing_mini.csv", "gnuhealth_mini.po", "project_mini.tsv"):
        shutil.copy(DATA.parent / "lexicon" / name, tmp_path / name)
    path = write_config(tmp_path, lambda t: t["lexicons"]["icd"].update(build="lexicon_mini.yaml"))
    for name in ("curated_tiny.tsv", "icd_tiny.tsv", "lexicon_mini.yaml", "beijing_mini.csv"):
        target = tmp_path / name
        before = target.read_bytes()
        assert main(["weak", "label", "--config", str(path), str(GOLD), "--format", "jsonl",
                     "-o", str(target)]) == 2, name
        assert "would replace what was read" in capsys.readouterr().err
        assert target.read_bytes() == before


def test_cli_report_refuses_to_write_over_a_lexicon_the_config_reads(tmp_path: Path, capsys) -> None:
    path = write_config(tmp_path, lambda t: t["lexicons"]["curated"].update(path="curated.json"))
    (tmp_path / "curated_tiny.tsv").rename(tmp_path / "curated.json")
    before = (tmp_path / "curated.json").read_bytes()
    assert main(["weak", "report", "--config", str(path), str(GOLD), "--format", "jsonl",
                 "-o", str(tmp_path / "curated")]) == 2
    assert "would replace what was read" in capsys.readouterr().err
    assert (tmp_path / "curated.json").read_bytes() == before and not (tmp_path / "curated.md").exists()


def test_report_counts_a_duplicated_gold_span_once() -> None:
    d = "疾病和诊断"
    record = Record("a", "诊断：胃癌。", (Span(3, 5, d), Span(3, 5, d)))
    outputs = [{"lf": [Span(3, 5, d, source="lf"), Span(3, 5, d, source="lf")]}]
    report = weak_report([record], outputs, {"weak:x": [[Span(3, 5, d)]]})
    assert report["gold_spans"] == {d: 1}
    for name in ("lf", "weak:x"):
        micro = report["sources"][name]["micro"]
        assert (micro["precision"], micro["recall"]) == (1.0, 1.0), name


@pytest.mark.parametrize("action", [["label", "--aggregator", "dawid_skene", "-o"], ["report", "-o"]])
def test_cli_refuses_records_that_all_have_empty_texts(tmp_path: Path, capsys, action: list) -> None:
    corpus = tmp_path / "e.jsonl"
    corpus.write_text('{"id": "a", "text": ""}\n{"id": "b", "text": ""}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["weak", action[0], "--config", str(CONFIG), str(corpus), *action[1:], str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error:") and str(corpus) in err and "empty" in err and "\n" not in err
    assert not list(tmp_path.glob("out*"))
