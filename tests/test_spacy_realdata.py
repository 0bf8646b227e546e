"""The `medner` component on 200 real CCKS 2019 records: entities equal the bare Annotator's exactly
(the tiny test model predicts poorly on real text; equality, not quality, is the point)."""
from __future__ import annotations

import itertools

import pytest
import spacy

import medner
from medner.corpus import read_corpus

N_RECORDS = 200


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ccks_dev(shared_data) -> list[str]:
    """The last 200 of the 600 records of CCKS 2019 part 2 (the dev end of the training data, SOURCES.md)."""
    path = shared_data / "corpora" / "ccks2019_yidu" / "subtask1_training_part2.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found: real-corpus test needs it")
    records = list(read_corpus(path, format="ccks2019"))
    assert len(records) == 600  # SOURCES.md: part 2 holds 600 EMRs
    return [r.text for r in itertools.islice(records, len(records) - N_RECORDS, None)]


@pytest.mark.realdata
def test_component_equals_bare_annotator_on_ccks2019(tiny_run, ccks_dev):
    bare = medner.load(tiny_run, device="cpu")
    expected = bare.predict(ccks_dev)
    assert sum(map(len, expected)) > 0
    nlp = spacy.blank("zh")
    component = nlp.add_pipe("medner", config={"model": str(tiny_run), "device": "cpu"})
    docs = list(nlp.pipe(ccks_dev, batch_size=64))  # other batches than the bare call: entities must not change
    for doc, text, pred in zip(docs, ccks_dev, expected, strict=True):
        assert doc.text == text
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [(s.start, s.end, s.label) for s in pred]
        assert [s._.score for s in doc.spans["medner"]] == pytest.approx([s.score for s in pred], abs=1e-5)
    assert component.stats["expanded"] == component.stats["unaligned"] == 0
