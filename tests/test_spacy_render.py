"""displaCy rendering (`medner render` and medner.spacy.render): texts escaped, colours per type with a legend,
codes in labels, score and ICD name on hover, a page that reads in Chinese (checked in headless Chromium)."""
from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import spacy
from PIL import Image as PIL_Image

import medner
from medner.cli import main
from medner.corpus import read_corpus, write_jsonl
from medner.spacy.render import FONT_STACK, TYPE_COLOURS, hover_text, render_docs, render_records, type_colour
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
    import os
    import subprocess
    import sys

    # stable across processes (Python's own str hash is salted per process; the colour must not be)
    code = "from medner.spacy.render import type_colour; print(type_colour('bod'), type_colour('ite'))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1 and runs.pop().split() == [type_colour("bod"), type_colour("ite")]
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


def _page_with_hover() -> str:
    text = "患者因直肠癌入院，予阿司匹林治疗。"
    spans = (Span(3, 6, "疾病和诊断", code="C20.x00", score=0.9312345, name="直肠恶性肿瘤", match="alias",
                  link_score=0.95), Span(10, 14, "药物", score=0.5))
    return render_records([Record("r1", text, spans)], title="<t>").html


def test_page_reads_in_chinese():
    page = _page_with_hover()
    head = page[:page.index("<body>")]
    assert '<meta charset="utf-8">' in head and '<html lang="zh-CN">' in page
    assert FONT_STACK in head and '"Noto Sans CJK SC"' in FONT_STACK and "&lt;t&gt;" in head
    legend = page[page.index('class="legend"'):page.index("</div>", page.index('class="legend"'))]
    assert "疾病和诊断" in legend and "药物" in legend and TYPE_COLOURS["药物"] in legend and "手术" not in legend
    assert 'title="疾病和诊断 · score 0.931 · C20.x00 直肠恶性肿瘤 · alias link 0.950"' in page
    assert 'title="药物 · score 0.500"' in page
    assert hover_text(Span(0, 1, "手术")) == "手术"


def test_hover_text_is_escaped():
    page = render_records([Record("r", "A病", (Span(0, 2, "疾病和诊断", code="X1", name='"><script>'),))]).html
    assert "<script>" not in page and "&quot;&gt;&lt;script&gt;" in page


def test_render_docs_shows_extension_values_on_hover():
    nlp = spacy.blank("zh")
    nlp.add_pipe("medner_lexicon", config={"lexicon": str(LEXICON), "ents_policy": "overwrite"})
    page = render_docs([nlp("因直肠癌入院")]).html
    assert "C20.x00 直肠恶性肿瘤 · alias link 0.950" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _screenshot(html_text: str, folder: Path, name: str, size: str = "1000,400"):
    page = folder / f"{name}.html"
    page.write_text(html_text, encoding="utf-8")
    shot = folder / f"{name}.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={folder / ('profile-' + name)}", f"--screenshot={shot}",
                           f"--window-size={size}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 500, done.stderr[-2000:]
    return np.asarray(PIL_Image.open(shot).convert("RGB"), dtype=np.int64)


def _dark_pixels(image: np.ndarray) -> int:
    return int((image.sum(axis=2) < 200).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (Debian: apt-get install chromium)")
def test_screenshot_draws_chinese_glyphs_not_boxes(tmp_path):
    """Headless Chromium draws the page. Missing glyphs are all the same box, so a page of 一 and a page of 龍
    would look alike; drawn glyphs differ a lot in ink. Both entity colours are on the page."""
    font = subprocess.run(["fc-match", "-f", "%{family}", "sans-serif:lang=zh-cn"], capture_output=True,
                          text=True).stdout if shutil.which("fc-match") else ""
    if not any(k in font for k in ("CJK", "Hei", "Han", "Ming", "Song", "Kai")):
        pytest.skip(f"no CJK font installed (fc-match: {font!r}; Debian: apt-get install fonts-noto-cjk)")
    png = _screenshot(_page_with_hover(), tmp_path, "page")
    colours = {tuple(int(TYPE_COLOURS[t][i:i + 2], 16) for i in (1, 3, 5)) for t in ("疾病和诊断", "药物")}
    drawn = {tuple(px) for px in png.reshape(-1, 3).tolist()}
    assert colours <= drawn  # both entity colours are drawn
    thin = _dark_pixels(_screenshot(render_records([Record("r", "一" * 20)]).html, tmp_path, "thin", "900,200"))
    dense = _dark_pixels(_screenshot(render_records([Record("r", "龍" * 20)]).html, tmp_path, "dense", "900,200"))
    assert dense > thin * 2, (thin, dense)
