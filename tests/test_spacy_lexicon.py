"""The `medner_lexicon` spaCy component: lexicon matches as spans with codes and names, label filter,
entity policy, serialisation and errors. Expected spans are read off tests/data/spacy/lexicon.tsv by hand."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import spacy

from medner.errors import ConfigError, LexiconError

LEXICON = Path(__file__).parent / "data" / "spacy" / "lexicon.tsv"
TEXT = "患者因直肠癌入院，予阿司匹林治疗，右肺呼吸音清。"
# 直肠癌 [3, 6) is an alias of 直肠恶性肿瘤 (C20.x00); 阿司匹林 [10, 14) and 右肺 [17, 19) have no code
EXPECTED = [
    (3, 6, "疾病和诊断", "C20.x00", "直肠恶性肿瘤"),
    (10, 14, "药物", "", None),
    (17, 19, "解剖部位", "", None),
]


def lexicon_nlp(lexicon=LEXICON, **config):
    nlp = spacy.blank("zh")
    component = nlp.add_pipe("medner_lexicon", config={"lexicon": str(lexicon), **config})
    return nlp, component


def spans_of(doc, key="medner_lexicon"):
    return [(s.start_char, s.end_char, s.label_, s.kb_id_, s._.icd_name) for s in doc.spans[key]]


def test_matches_become_spans_with_codes_and_names():
    nlp, component = lexicon_nlp()
    doc = nlp(TEXT)
    assert spans_of(doc) == EXPECTED
    spans = doc.spans["medner_lexicon"]
    assert all(s._.score is None and s._.char_offsets == (s.start_char, s.end_char) for s in spans)
    assert list(doc.ents) == []  # default ents_policy "keep": a weak labeller leaves doc.ents alone
    assert (component.stats["spans"], component.stats["aligned"]) == (3, 3)


def test_label_filter_and_writing_entities():
    nlp, _ = lexicon_nlp(labels=["疾病和诊断"], ents_policy="merge", spans_key="icd")
    doc = nlp(TEXT)
    assert spans_of(doc, "icd") == EXPECTED[:1]
    assert [(e.start_char, e.end_char, e.label_, e.kb_id_) for e in doc.ents] == [(3, 6, "疾病和诊断", "C20.x00")]


def test_html_like_terms_and_pipe():
    nlp, _ = lexicon_nlp()
    docs = list(nlp.pipe(["诊断：A&B病。", TEXT, ""], batch_size=2))
    assert spans_of(docs[0]) == [(3, 7, "疾病和诊断", "X99.900", "A&B病")]
    assert spans_of(docs[1]) == EXPECTED and spans_of(docs[2]) == []


@pytest.mark.parametrize("store", [True, False])
def test_round_trip(tmp_path, store):
    lexicon = tmp_path / "lexicon.tsv"
    shutil.copyfile(LEXICON, lexicon)
    nlp, _ = lexicon_nlp(lexicon, store_lexicon=store)
    nlp.to_disk(tmp_path / "pipe")
    meta = json.loads((tmp_path / "pipe" / "medner_lexicon" / "medner_component.json").read_text(encoding="utf-8"))
    assert meta["stored"] is store
    if store:
        lexicon.unlink()  # the saved pipeline carries its own copy
    loaded = spacy.load(tmp_path / "pipe")
    assert spans_of(loaded(TEXT)) == EXPECTED


def test_errors_name_the_field_and_the_fix(tmp_path):
    nlp = spacy.blank("zh")
    with pytest.raises(ConfigError, match="`lexicon`") as err:
        nlp.add_pipe("medner_lexicon")
    assert "Fix:" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(LexiconError, match="missing.tsv") as err:  # at add_pipe, not on the first document
        nlp.add_pipe("medner_lexicon", config={"lexicon": str(tmp_path / "missing.tsv")})
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)
    assert "medner_lexicon" not in nlp.pipe_names
    records = tmp_path / "records.jsonl"  # a record file where the lexicon belongs: refused at add_pipe too
    records.write_text('{"id": "r1", "text": "患者因高血压入院"}\n', encoding="utf-8")
    with pytest.raises(LexiconError, match="records.jsonl:1: header row lacks column"):
        nlp.add_pipe("medner_lexicon", config={"lexicon": str(records)})
    assert "medner_lexicon" not in nlp.pipe_names
    with pytest.raises(ConfigError, match=r"labels \['疾病'\] are not in the lexicon .*its labels: .*疾病和诊断"):
        nlp.add_pipe("medner_lexicon", config={"lexicon": str(LEXICON), "labels": ["疾病"]})  # matched nothing
    with pytest.raises(ConfigError, match="min_length must be a whole number >= 1, got 0"):
        nlp.add_pipe("medner_lexicon", config={"lexicon": str(LEXICON), "min_length": 0})
    assert "medner_lexicon" not in nlp.pipe_names


def test_writes_entities_on_request_and_scores():
    from spacy.training import Example

    nlp, component = lexicon_nlp(ents_policy="merge")
    doc = nlp(TEXT)
    assert [(e.start_char, e.end_char, e.label_, e.kb_id_) for e in doc.ents] == [s[:4] for s in EXPECTED]
    (disease,) = [e for e in doc.ents if e.kb_id_]
    assert (disease._.icd_name, disease._.match, disease._.link_score) == ("直肠恶性肿瘤", "alias", 0.95)
    assert set(nlp.meta["labels"]["medner_lexicon"]) >= {"疾病和诊断", "药物", "解剖部位"}
    reference = nlp.make_doc(TEXT)
    reference.ents = [reference.char_span(3, 6, label="疾病和诊断"), reference.char_span(17, 19, label="解剖部位")]
    scores = nlp.evaluate([Example(nlp.make_doc(TEXT), reference)])
    assert scores["ents_p"] == pytest.approx(2 / 3) and scores["ents_r"] == 1.0
    keep, _ = lexicon_nlp()  # a weak labeller: its doc.spans group against the reference entities
    scores = keep.evaluate([Example(keep.make_doc(TEXT), reference)])
    assert scores["spans_medner_lexicon_p"] == pytest.approx(2 / 3) and "ents_f" not in scores
