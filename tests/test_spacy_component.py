"""The `medner` spaCy component: equality with the bare Annotator, batching, alignment on char and word
segmenters, entity policies, ICD codes, serialisation, multiprocessing and entry-point discovery."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import spacy

import medner
from medner.annotate import Annotator
from medner.corpus import read_corpus
from medner.errors import ConfigError, MednerError, ModelError
from medner.types import Span, round_score

LEXICON = Path(__file__).parent / "data" / "spacy" / "lexicon.tsv"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeAnnotator:
    """Fixed spans per text (by text), linked like the Annotator does; records the number of texts of each
    ``predict`` call."""

    def __init__(self, table: dict[str, list[Span]]) -> None:
        self.table = table
        self.calls: list[int] = []
        self.linker = None

    def predict(self, texts, batch_size=None):
        self.calls.append(len(texts))
        link = self.linker or (lambda text, span: span)
        return [[link(t, s) for s in self.table.get(t, [])] for t in texts]


def pipeline(model, segmenter: str = "char", **config):
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": segmenter}}})
    component = nlp.add_pipe("medner", config={"model": str(model), **config})
    return nlp, component


def ents_of(doc) -> list[tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def triples(spans) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, s.label) for s in spans]


def scores_of(doc, key: str = "medner") -> list[float]:
    return [s._.score for s in doc.spans[key]]


@pytest.fixture(scope="module")
def texts(tiny_corpus) -> list[str]:
    """Dev texts of the tiny corpus, one long text (many windows), an empty and a whitespace-only text."""
    dev = [r.text for r in read_corpus(tiny_corpus / "dev.jsonl")]
    return dev + ["".join(dev[:4]), "", "  \n "]


@pytest.fixture(scope="module")
def bare(tiny_run):
    return medner.load(tiny_run, device="cpu")


def test_char_segmenter_equals_bare_annotator(tiny_run, texts, bare):
    nlp, component = pipeline(tiny_run)
    assert nlp.tokenizer.segmenter == "char"
    docs = list(nlp.pipe(texts, batch_size=len(texts)))  # one predict call, like the bare annotator
    expected = bare.predict(texts)
    total = sum(len(p) for p in expected)
    assert total > 0, "the tiny model predicts nothing: the comparison would be empty"
    for doc, text, pred in zip(docs, texts, expected):
        assert doc.text == text
        assert ents_of(doc) == triples(pred)
        assert [(s.start_char, s.end_char, s.label_) for s in doc.spans["medner"]] == triples(pred)
        assert scores_of(doc) == [round_score(s.score) for s in pred]  # rounded like every output
        assert [e._.char_offsets for e in doc.ents] == [(s.start, s.end) for s in pred]
        assert all(e.kb_id_ == "" and e._.icd_name is None for e in doc.ents)
    stats = component.stats
    assert (stats["docs"], stats["spans"], stats["aligned"], stats["ents_added"]) == (len(texts), total, total, total)
    assert stats["expanded"] == stats["unaligned"] == stats["ents_skipped"] == 0


def test_call_and_small_batches_give_the_same_entities(tiny_run, texts):
    nlp, _ = pipeline(tiny_run)
    sample = texts[:5] + texts[-3:]  # short ones, the long one, the empty and the blank one
    one_by_one = [nlp(t) for t in sample]
    batched = list(nlp.pipe(sample, batch_size=3))
    for a, b in zip(one_by_one, batched):
        assert ents_of(a) == ents_of(b)
        assert scores_of(a) == pytest.approx(scores_of(b), abs=1e-5)


def test_pipe_sends_batches_of_docs_to_the_model(tiny_run):
    nlp, component = pipeline(tiny_run)  # never loaded: a fake annotator answers
    fake = component.annotator = FakeAnnotator({})
    docs = list(nlp.pipe([f"第{i}例" for i in range(10)], batch_size=4))
    assert fake.calls == [4, 4, 2]
    assert [d.text for d in docs] == [f"第{i}例" for i in range(10)]


def test_word_segmenter_expands_and_counts_misaligned_spans(tmp_path, caplog, tiny_run):
    pytest.importorskip("jieba")
    text = "患者诊断为直肠癌， 予阿司匹林治疗。"
    nlp, component = pipeline(tiny_run, segmenter="jieba")
    doc = nlp.make_doc(text)
    word = next(t for t in doc if len(t) >= 3)  # a word of 3+ characters to cut into
    space = text.index(" ")
    inside = [Span(word.idx + 1, word.idx + len(word), "疾病和诊断", score=0.9),  # starts inside the word
              Span(word.idx, word.idx + 1, "解剖部位", score=0.5)]  # the same word's first character
    exact = Span(word.idx, word.idx + len(word), "手术", score=0.7)
    blank = Span(space, space + 1, "药物", score=0.1)  # whitespace only: no token to cover
    # the exact span is put in a second text so that spans of one doc do not overlap before alignment
    component.annotator = FakeAnnotator({text: inside + [blank], text + "。": [exact]})
    with caplog.at_level(logging.DEBUG, logger="medner.spacy.writer"):
        doc = component(nlp.make_doc(text))
        second = component(nlp.make_doc(text + "。"))
    got = {s.label_: s for s in doc.spans["medner"]}
    assert set(got) == {"疾病和诊断", "解剖部位"}
    for label in got:
        assert (got[label].start_char, got[label].end_char) == (word.idx, word.idx + len(word))
        # spaCy keys `._` by boundaries: both spans show the first one's values
        assert got[label]._.char_offsets == (inside[0].start, inside[0].end)
        assert got[label]._.score == pytest.approx(inside[0].score)
    assert ents_of(doc) == [(word.idx, word.idx + len(word), "疾病和诊断")]  # one entity: the first span
    assert ents_of(second) == [(exact.start, exact.end, "手术")]
    stats = component.stats
    assert (stats["spans"], stats["expanded"], stats["unaligned"], stats["aligned"]) == (4, 2, 1, 1)
    assert stats["ents_added"] == 2 and stats["ents_skipped"] == 1 and stats["shared_boundaries"] == 1
    summary = [r for r in caplog.records if "expanded to token boundaries" in r.getMessage() and "of" in r.getMessage()]
    assert summary and summary[0].levelno == logging.WARNING
    for record in caplog.records:  # offsets and labels only, never record text
        message = record.getMessage()
        assert word.text not in message and "阿司匹林" not in message and "患者" not in message


def test_word_segmenter_with_the_model_accounts_for_every_span(tiny_run, texts, bare):
    pytest.importorskip("jieba")
    nlp, component = pipeline(tiny_run, segmenter="jieba")
    docs = list(nlp.pipe(texts))
    expected = bare.predict(texts)
    for doc, pred in zip(docs, expected):
        written = {s._.char_offsets for s in doc.spans["medner"]}
        assert written <= {(s.start, s.end) for s in pred}
        for s in doc.spans["medner"]:
            assert s.start_char <= s._.char_offsets[0] and s._.char_offsets[1] <= s.end_char
    stats = component.stats
    assert stats["spans"] == sum(len(p) for p in expected)
    assert stats["aligned"] + stats["expanded"] + stats["unaligned"] == stats["spans"]
    assert stats["ents_added"] + stats["ents_skipped"] == stats["aligned"] + stats["expanded"]


@pytest.mark.parametrize("policy, expected", [
    ("keep", [(1, 3, "OLD")]),
    ("merge", [(1, 3, "OLD"), (8, 10, "药物")]),
    ("overwrite", [(1, 4, "疾病和诊断"), (8, 10, "药物")]),
])
def test_existing_entities_policy(tmp_path, policy, expected, tiny_run):
    text = "因直肠癌入院，予头孢治疗"
    nlp, component = pipeline(tiny_run, ents_policy=policy)
    predictions = [Span(1, 4, "疾病和诊断", score=0.8), Span(8, 10, "药物", score=0.6)]
    component.annotator = FakeAnnotator({text: predictions})
    doc = nlp.make_doc(text)
    doc.ents = [doc.char_span(1, 3, label="OLD")]
    doc = component(doc)
    assert ents_of(doc) == expected
    assert [(s.start_char, s.end_char, s.label_) for s in doc.spans["medner"]] == triples(predictions)


def test_lexicon_entities_survive_a_merging_model(tmp_path, tiny_run):
    text = "因直肠癌入院，予头孢治疗"
    nlp = spacy.blank("zh")
    nlp.add_pipe("medner_lexicon", config={"lexicon": str(LEXICON), "ents_policy": "merge"})
    component = nlp.add_pipe("medner", config={"model": str(tiny_run)})
    component.annotator = FakeAnnotator({text: [Span(1, 3, "解剖部位", score=0.8), Span(8, 10, "药物", score=0.6)]})
    doc = nlp(text)
    assert ents_of(doc) == [(1, 4, "疾病和诊断"), (8, 10, "药物")]
    assert doc.ents[0].kb_id_ == "C20.x00" and doc.ents[0]._.icd_name == "直肠恶性肿瘤"


def test_bad_config_is_one_clear_line(tmp_path, tiny_run):
    nlp = spacy.blank("zh")
    with pytest.raises(ConfigError, match="ents_policy") as err:
        nlp.add_pipe("medner", config={"model": str(tmp_path), "ents_policy": "replace"})
    assert "keep, merge, overwrite" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="needs a model"):
        nlp.add_pipe("medner", name="no_model")
    for config, message in (({"window_chars": 4}, "window.max_chars` must be >= 8"),
                            ({"window_overlap": 10_000}, "window.overlap` must be in"),
                            ({"device": "gpu"}, "`device` is 'gpu'")):  # at add_pipe, not on the first document
        with pytest.raises(ConfigError, match=message):
            nlp.add_pipe("medner", name="bad_window", config={"model": str(tiny_run), **config})
    assert "bad_window" not in nlp.pipe_names
    for bad in (0, "8"):  # a string was a TypeError (spaCy refuses 1.5 itself)
        with pytest.raises(ConfigError, match="'bad_batch': batch_size must be a whole number >= 1"):
            nlp.add_pipe("medner", name="bad_batch", config={"model": str(tmp_path), "batch_size": bad})
    with pytest.raises(ModelError) as err:  # at add_pipe, not on the first document
        nlp.add_pipe("medner", name="missing", config={"model": str(tmp_path / "nope")})
    message = str(err.value)
    assert str(tmp_path / "nope") in message and "`model`" in message and "Fix:" in message
    assert "\n" not in message and "missing" not in nlp.pipe_names


def test_codes_and_icd_names_from_a_linker(tiny_run, texts, caplog):
    nlp, component = pipeline(tiny_run, lexicon=str(LEXICON))
    loaded = component.annotator
    assert component.icd_names["C20.x00"] == "直肠恶性肿瘤" and "右肺" not in component.icd_names.values()
    # stub linker: every disease gets the code of 直肠恶性肿瘤 (the real IcdLinker is tested with the lexicon)
    component.annotator = Annotator(
        loaded.tagger, loaded.tokenizer, loaded.config, device="cpu",
        linker=lambda text, span: replace(span, code="C20.x00") if span.label == "疾病和诊断" else span)
    docs = list(nlp.pipe(texts))
    diseases = [e for d in docs for e in d.ents if e.label_ == "疾病和诊断"]
    others = [e for d in docs for e in d.ents if e.label_ != "疾病和诊断"]
    assert diseases and others
    assert all(e.kb_id_ == "C20.x00" and e._.icd_name == "直肠恶性肿瘤" for e in diseases)
    assert all(e.kb_id_ == "" and e._.icd_name is None for e in others)
    assert [e.kb_id_ for e in docs[0].spans["medner"]] == [e.kb_id_ for e in docs[0].ents]


def test_a_batch_size_below_one_is_refused_not_an_empty_prediction(tiny_run):
    annotator = medner.load(tiny_run)
    assert annotator.predict(["因直肠癌入院"], batch_size=1) == annotator.predict(["因直肠癌入院"])
    for bad in (0, -1):  # -1 predicted nothing at all (range(0, n, -1)), 0 crashed
        with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
            annotator.predict(["因直肠癌入院"], batch_size=bad)
        with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1"):
            medner.load(tiny_run, batch_size=bad)


def test_the_icd_lexicon_is_read_once(tiny_run, monkeypatch):
    """Checked at add_pipe, that same reading links: the file is parsed once, not again when the model loads."""
    import medner.lexicon.store as store

    reads = []
    real = store.load_lexicon
    monkeypatch.setattr(store, "load_lexicon", lambda path: reads.append(path) or real(path))
    monkeypatch.setattr("medner.spacy.model_component.load_lexicon", store.load_lexicon)
    monkeypatch.setattr("medner.lexicon.link.load_lexicon", store.load_lexicon)
    nlp, component = pipeline(tiny_run, lexicon=str(LEXICON))
    assert component.annotator.linker.names["C20.x00"] == "直肠恶性肿瘤"
    assert reads == [LEXICON] and component._checked_lexicon is None  # not held once the linker has it


def test_lexicon_linker_hook(tiny_run):
    nlp, component = pipeline(tiny_run, lexicon=str(LEXICON))
    linker = component.annotator.linker
    text = "因直肠癌入院，右肺"
    linked = linker(text, Span(1, 4, "疾病和诊断", score=0.5))
    assert (linked.start, linked.end, linked.code, linked.score) == (1, 4, "C20.x00", 0.5)
    assert linker(text, Span(7, 9, "解剖部位")).code is None  # only diseases and procedures are linked
    assert component.icd_names["C20.x00"] == "直肠恶性肿瘤"
    component.annotator = FakeAnnotator({text: [Span(1, 4, "疾病和诊断", score=0.5)]})
    component.annotator.linker = linker
    (ent,) = nlp(text).ents
    assert (ent.kb_id_, ent._.icd_name) == ("C20.x00", "直肠恶性肿瘤")


@pytest.mark.parametrize("store", [True, False])
def test_to_disk_and_spacy_load_round_trip(tiny_run, texts, tmp_path, store):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "checkpoint").mkdir(exist_ok=True)
    (run / "checkpoint" / "optimizer.safetensors").write_bytes(b"not needed for inference")
    nlp, component = pipeline(run, store_model=store, window_chars=30, window_overlap=5)
    before = list(nlp.pipe(texts))
    assert sum(len(d.ents) for d in before) > 0
    nlp.to_disk(tmp_path / "pipe")
    saved = tmp_path / "pipe" / "medner"
    meta = json.loads((saved / "medner_component.json").read_text(encoding="utf-8"))
    assert meta["stored"] is store and meta["fingerprint"] == component.annotator.fingerprint
    if store:
        assert (saved / "model" / "medner_model.json").is_file() and not (saved / "model" / "checkpoint").exists()
        shutil.rmtree(run)  # the saved pipeline must not need the original run
    else:
        assert not (saved / "model").exists() and meta["model"] == str(run.resolve())
    loaded = spacy.load(tmp_path / "pipe")
    restored = loaded.get_pipe("medner")
    assert restored.annotator.window.max_chars == 30 and restored.annotator.window.overlap == 5
    after = list(loaded.pipe(texts))
    for a, b in zip(before, after):
        assert ents_of(a) == ents_of(b)
        assert scores_of(a) == scores_of(b)
    if store:  # saving again into the folder it was loaded from keeps the model
        loaded.to_disk(tmp_path / "pipe")
        again = list(spacy.load(tmp_path / "pipe").pipe(texts[:3]))
        assert [ents_of(d) for d in again] == [ents_of(d) for d in before[:3]]


@pytest.mark.parametrize("store", [True, False])
def test_saving_the_pipeline_inside_its_run_is_refused_and_changes_no_run_file(tiny_run, tmp_path, store):
    """nlp.to_disk(RUN) would copy the run into itself (without end, with store_model) and leave spaCy's files in
    it: the component refuses, naming what spaCy added before it was called; the run's own files are as they were."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    files = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    nlp, _ = pipeline(run, store_model=store)
    with pytest.raises(MednerError) as info:
        nlp.to_disk(run)
    message = str(info.value)
    assert "saved inside the run it uses" in message and "nlp.to_disk" in message and "\n" not in message
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert {k: after[k] for k in files} == files and not (run / "medner").exists()
    added = {str(k) for k in set(after) - set(files)}
    assert all(a in message or a.split("/")[0] + "/" in message for a in added), added
    for name in added:  # removing what spaCy added leaves a run that loads and scores as before
        (run / name).unlink()
    shutil.rmtree(run / "vocab", ignore_errors=True)
    assert medner.load(run).fingerprint == medner.load(tiny_run).fingerprint


def test_from_disk_without_metadata_is_a_clear_error(tmp_path, tiny_run):
    nlp, component = pipeline(tiny_run)
    with pytest.raises(MednerError, match="medner_component.json"):
        component.from_disk(tmp_path)


def test_extension_values_survive_doc_serialisation(tmp_path, tiny_run):
    from spacy.tokens import Doc

    text = "因直肠癌入院"
    nlp, component = pipeline(tiny_run)
    component.annotator = FakeAnnotator({text: [Span(1, 4, "疾病和诊断", code="C20.x00", score=0.25)]})
    component.icd_names["C20.x00"] = "直肠恶性肿瘤"
    doc = Doc(nlp.vocab).from_bytes(nlp(text).to_bytes())
    (ent,) = doc.ents
    assert (ent.kb_id_, ent._.icd_name, ent._.score, tuple(ent._.char_offsets)) == ("C20.x00", "直肠恶性肿瘤", 0.25, (1, 4))


def test_two_processes_give_the_same_docs(tiny_run, texts):
    nlp, _ = pipeline(tiny_run)
    single = list(nlp.pipe(texts, batch_size=4))
    multi = list(nlp.pipe(texts, batch_size=4, n_process=2))
    assert [d.text for d in multi] == texts
    for a, b in zip(single, multi):
        assert ents_of(a) == ents_of(b)
        assert scores_of(a) == pytest.approx(scores_of(b), abs=1e-6)
        assert [tuple(s._.char_offsets) for s in b.spans["medner"]] == [s._.char_offsets for s in a.spans["medner"]]


def test_factories_are_found_through_the_entry_point(tiny_run, texts, bare):
    code = (
        "import json, sys, spacy\n"
        "assert 'medner' not in sys.modules, 'medner imported by spacy itself'\n"
        "nlp = spacy.blank('zh')\n"
        "nlp.add_pipe('medner', config={'model': sys.argv[1]})\n"
        "nlp.add_pipe('medner_lexicon', config={'lexicon': sys.argv[2]})\n"
        "doc = nlp(sys.argv[3])\n"
        "assert 'medner.spacy.model_component' in sys.modules\n"
        "print(json.dumps([[e.start_char, e.end_char, e.label_] for e in doc.ents]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tiny_run), str(LEXICON), texts[0]],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert [tuple(x) for x in got] == triples(bare.predict(texts[0]))


def test_nlp_evaluate_reports_entity_scores(tiny_run, tiny_corpus):
    from spacy.training import Example

    nlp, _ = pipeline(tiny_run)
    records = list(read_corpus(tiny_corpus / "dev.jsonl"))
    examples = []
    for r in records:
        reference = nlp.make_doc(r.text)
        reference.ents = [reference.char_span(s.start, s.end, label=s.label) for s in r.spans]
        examples.append(Example(nlp.make_doc(r.text), reference))
    scores = nlp.evaluate(examples)
    assert {"ents_p", "ents_r", "ents_f", "ents_per_type"} <= set(scores)
    # the same numbers as the project's exact character-span scoring of the bare annotator
    bare = medner.load(tiny_run, device="cpu")
    pred = bare.predict([r.text for r in records])
    tp = sum(len(set(triples(p)) & set(triples(r.spans))) for p, r in zip(pred, records))
    n_pred, n_gold = sum(len(p) for p in pred), sum(len(r.spans) for r in records)
    assert scores["ents_p"] == pytest.approx(tp / n_pred) and scores["ents_r"] == pytest.approx(tp / n_gold)
    assert set(scores["ents_per_type"]) <= set(nlp.get_pipe("medner").labels)


def test_factory_meta_declares_assigns_and_labels(tiny_run):
    nlp, component = pipeline(tiny_run)
    meta = nlp.get_pipe_meta("medner")
    assert "doc.ents" in meta.assigns and "span._.icd_name" in meta.assigns and "span._.link_score" in meta.assigns
    assert meta.default_score_weights["ents_f"] == 1.0
    labels = json.loads((Path(tiny_run) / "medner_model.json").read_text(encoding="utf-8"))["labels"]
    assert list(component.labels) == labels and nlp.meta["labels"]["medner"] == labels
    assert component._annotator is None  # reading the labels does not load the model


def test_linked_spans_carry_name_match_and_link_score(tiny_run):
    text = "因直肠癌入院"
    nlp, component = pipeline(tiny_run)
    linked = Span(1, 4, "疾病和诊断", code="C20.x00", score=0.1234567891, name="直肠恶性肿瘤", match="alias",
                  link_score=0.95)
    component.annotator = FakeAnnotator({text: [linked]})
    (ent,) = nlp(text).ents
    assert (ent.kb_id_, ent._.icd_name, ent._.match, ent._.link_score) == ("C20.x00", "直肠恶性肿瘤", "alias", 0.95)
    assert ent._.score == 0.123457  # rounded as in every output


@pytest.mark.slow
def test_spacy_package_of_a_saved_pipeline(tiny_run, texts, bare, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    nlp, _ = pipeline(run)
    nlp.meta.update(name="medner_demo", version="0.0.1")
    nlp.to_disk(tmp_path / "pipe")
    shutil.rmtree(run)  # an installed package must not need the run it was made from
    (tmp_path / "pkg").mkdir()
    done = subprocess.run([sys.executable, "-m", "spacy", "package", str(tmp_path / "pipe"), str(tmp_path / "pkg"),
                           "--build", "sdist"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    package = tmp_path / "pkg" / "zh_medner_demo-0.0.1"
    meta = json.loads((package / "meta.json").read_text(encoding="utf-8"))
    assert any(r.startswith("medner") for r in meta["requirements"])  # found through the entry point
    code = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nimport zh_medner_demo\n"
            "doc = zh_medner_demo.load()(sys.argv[2])\n"
            "print(json.dumps([[e.start_char, e.end_char, e.label_] for e in doc.ents]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(package), texts[0]], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [tuple(x) for x in json.loads(done.stdout.strip().splitlines()[-1])] == triples(bare.predict(texts[0]))


def test_a_file_that_is_no_lexicon_is_refused_at_add_pipe(tmp_path, tiny_run):
    from medner.errors import LexiconError

    nlp = spacy.blank("zh")
    not_utf8 = tmp_path / "gbk.tsv"
    not_utf8.write_bytes("term\tlabel\n霍乱\t疾病和诊断\n".encode("gb18030"))
    with pytest.raises(LexiconError, match="gbk.tsv:2: cannot decode"):  # not on the first document
        nlp.add_pipe("medner", config={"model": str(tiny_run), "lexicon": str(not_utf8)})
    assert "medner" not in nlp.pipe_names
