"""displaCy rendering (`medner render` and medner.spacy.render): texts escaped, colours per type, codes in labels."""
from __future__ import annotations

import html
from pathlib import Path

import pytest
import spacy

import medner
from medner.cli import main
from medner.corpus import read_corpus, write_jsonl
from medner.spacy.render import TYPE_COLOURS, render_docs, render_records, type_colour
from medner.types import Record, Span

LEXICON = Path(__file__).parent / "data" / "spacy" / "lexicon.tsv"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_render_records_escapes_text_and_shows_codes_and_colours():
    text = "诊断：A&B病<2>，予头孢治疗。"
    records = [Record("<r1>", text, (Span(3, 7, "疾病和诊断", code="X99.900"), Span(11, 13, "药物"),
                                     Span(10, 13, "手术")))]  # 手术 [10, 13) overlaps 药物 [11, 13)
    result = render_records(records)
    page = result.html
    assert "A&amp;B病" in page and "&lt;2&gt;" in page and "&lt;r1&gt;" in page and "<r1>" not in page
    assert "疾病和诊断 X99.900" in page
    assert TYPE_COLOURS["疾病和诊断"] in page and TYPE_COLOURS["手术"] in page
    assert (result.records, result.entities, result.hidden) == (1, 2, 1)  # the longer 手术 span is drawn
    assert page.lstrip().lower().startswith("<!doctype html>")


def test_type_colours_are_stable_for_unknown_types():
    assert type_colour("bod") == type_colour("bod")
    assert type_colour("bod").startswith("#") and len(type_colour("bod")) == 7


def test_render_docs_uses_kb_ids():
    nlp = spacy.blank("zh")
    nlp.add_pipe("medner_lexicon", config={"lexicon": str(LEXICON), "ents_policy": "overwrite"})
    result = render_docs([nlp("因直肠癌入院")], titles=["doc-1"])
    assert "直肠癌" in result.html and "疾病和诊断 C20.x00" in result.html and "doc-1" in result.html


def test_cli_render_with_a_model(tiny_run, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "html" / "out.html"
    code = main(["render", str(tiny_corpus / "dev.jsonl"), "--model", str(tiny_run), "-o", str(out), "--limit", "5",
                 "--device", "cpu"])
    assert code == 0
    page = out.read_text(encoding="utf-8")
    texts = [r.text for r in read_corpus(tiny_corpus / "dev.jsonl")][:5]
    predicted = medner.load(tiny_run, device="cpu").predict(texts)
    assert sum(map(len, predicted)) > 0
    for text, spans in zip(texts, predicted):
        for s in spans:
            assert html.escape(s.mention(text)) in page
            assert TYPE_COLOURS[s.label] in page
    assert capsys.readouterr().out.strip() == f"{out}: 5 records, {sum(map(len, predicted))} entities"


def test_cli_render_gold(tmp_path, capsys):
    records = tmp_path / "gold.jsonl"
    write_jsonl([Record("a", "因直肠癌入院", (Span(1, 4, "疾病和诊断", code="C20.x00"),))], records)
    assert main(["render", str(records), "--gold", "-o", str(tmp_path / "g.html")]) == 0
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    assert "直肠癌" in page and "疾病和诊断 C20.x00" in page and TYPE_COLOURS["疾病和诊断"] in page


@pytest.mark.parametrize("argv, expected", [
    (["--gold", "--model", "runs/x"], "exactly one of --model"),
    ([], "exactly one of --model"),
    (["--gold", "--format", "conll2003"], "unknown corpus format"),
])
def test_cli_render_errors_are_one_line(tmp_path, capsys, argv, expected):
    records = tmp_path / "r.jsonl"
    write_jsonl([Record("a", "因直肠癌入院")], records)
    assert main(["render", str(records), "-o", str(tmp_path / "o.html"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medner: error:") and expected in err and "\n" not in err
    assert not (tmp_path / "o.html").exists()


def test_cli_render_missing_records(tmp_path, capsys):
    assert main(["render", str(tmp_path / "none.jsonl"), "--gold", "-o", str(tmp_path / "o.html")]) == 2
    assert "none.jsonl" in capsys.readouterr().err
