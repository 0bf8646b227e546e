"""The bundled synthetic sample corpus (data/sample) and its generator (scripts/make_sample.py).

The jsonl files are parsed with ``json`` directly, so these tests do not depend on the project reader.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from shared_data import shared_data_path as shared_data

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
GENERATOR = ROOT / "scripts" / "make_sample.py"
LABELS = ("疾病和诊断", "影像检查", "实验室检验", "手术", "药物", "解剖部位")
SECTIONS = {"现病史", "出院小结", "手术记录", "病理报告", "检查所见", "实验室检查", "既往史", "体格检查"}
SPLITS = ("train", "dev")


def load(split: str) -> list[dict]:
    path = SAMPLE / f"{split}.jsonl"
    records = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            assert line.strip(), f"{path.name}:{n}: blank line"
            records.append(json.loads(line))
    return records


def run_generator(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def label_counts(records: list[dict]) -> Counter:
    return Counter(s["label"] for r in records for s in r["spans"])


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    return {split: load(split) for split in SPLITS}


@pytest.mark.parametrize("split", SPLITS)
def test_record_schema_and_ids(corpus, split):
    records = corpus[split]
    for n, rec in enumerate(records, 1):
        where = f"{split}.jsonl:{n}"
        assert set(rec) == {"id", "text", "spans", "meta"}, where
        assert rec["id"] == f"sample-{split}-{n:04d}", where
        assert isinstance(rec["text"], str) and rec["text"], where
        assert rec["meta"]["section"] in SECTIONS, where
        for span in rec["spans"]:
            assert set(span) == {"start", "end", "label", "text"}, where
            assert isinstance(span["start"], int) and isinstance(span["end"], int), where


@pytest.mark.parametrize("split", SPLITS)
def test_every_span_matches_its_mention(corpus, split):
    for rec in corpus[split]:
        text = rec["text"]
        for span in rec["spans"]:
            where = f"{rec['id']} {span['start']}:{span['end']}"
            assert 0 <= span["start"] < span["end"] <= len(text), where
            assert text[span["start"] : span["end"]] == span["text"], where
            assert span["label"] in LABELS, where
            assert span["text"] == span["text"].strip(), where  # no padding whitespace in a mention


@pytest.mark.parametrize("split", SPLITS)
def test_spans_sorted_and_not_overlapping(corpus, split):
    for rec in corpus[split]:
        spans = rec["spans"]
        assert spans == sorted(spans, key=lambda s: (s["start"], s["end"])), rec["id"]
        for left, right in zip(spans, spans[1:]):
            assert left["end"] <= right["start"], f"{rec['id']}: {left['start']} overlaps {right['start']}"


def test_all_labels_present(corpus):
    train, dev = label_counts(corpus["train"]), label_counts(corpus["dev"])
    for label in LABELS:
        assert train[label] >= 20, f"train has {train[label]} {label} mentions, need >= 20"
        assert dev[label] >= 1, f"dev has no {label} mention"


def test_a_mention_string_keeps_one_label(corpus):
    labels: dict[str, set[str]] = {}
    for split in SPLITS:
        for rec in corpus[split]:
            for span in rec["spans"]:
                labels.setdefault(span["text"], set()).add(span["label"])
    mixed = sorted(m for m, ls in labels.items() if len(ls) > 1)
    assert not mixed, f"{len(mixed)} mention strings carry two labels, first: {mixed[:3]}"


def test_texts_are_unique_within_and_across_splits(corpus):
    train = [r["text"] for r in corpus["train"]]
    dev = [r["text"] for r in corpus["dev"]]
    assert len(set(train)) == len(train)
    assert len(set(dev)) == len(dev)
    assert not set(train) & set(dev)


def test_split_sizes_and_lengths(corpus):
    train, dev = corpus["train"], corpus["dev"]
    assert len(train) >= 100 and len(dev) >= 20
    assert 0.7 <= len(train) / (len(train) + len(dev)) <= 0.85
    for split in SPLITS:
        lengths = [len(r["text"]) for r in corpus[split]]
        assert min(lengths) >= 80, split
        assert max(lengths) <= 720, split
    assert sum(len(r["text"]) > 512 for r in train) >= 10  # windowing is exercised
    assert sum(len(r["text"]) > 512 for r in dev) >= 2
    assert {r["meta"]["section"] for r in dev} == SECTIONS


def test_text_has_the_character_variety_of_real_records(corpus):
    text = "".join(r["text"] for split in SPLITS for r in corpus[split])
    assert re.search(r"\d", text) and re.search(r"[A-Za-z]", text)
    for mark in ("，", ",", "：", ":", "（", "(", "；", ";", "。", "“"):
        assert mark in text, f"punctuation {mark!r} never occurs"
    assert re.search(r"\d+(\.\d+)?[*×x]\d+(\.\d+)?(cm|CM)", text), "no measurement like 3.5*2CM"
    assert re.search(r"\d+(mg|MG) ", text), "no dose like 150mg"
    assert re.search(r"20\d\d-\d{1,2}-\d{1,2}", text) and re.search(r"20\d\d年\d{1,2}月", text), "no dates"


def test_dev_has_mentions_unseen_in_train(corpus):
    seen = {(s["text"], s["label"]) for r in corpus["train"] for s in r["spans"]}
    dev = {(s["text"], s["label"]) for r in corpus["dev"] for s in r["spans"]}
    unseen = len(dev - seen) / len(dev)
    assert 0.2 <= unseen <= 0.5, f"{unseen:.0%} of distinct dev mentions are unseen in train (want about 30%)"
    by_label = Counter(label for _, label in dev - seen)
    assert all(by_label[label] for label in LABELS), f"a label has no unseen dev mention: {by_label}"


def test_files_are_small_utf8_lines():
    total = 0
    for split in SPLITS:
        data = (SAMPLE / f"{split}.jsonl").read_bytes()
        total += len(data)
        assert not data.startswith(b"\xef\xbb\xbf"), f"{split}.jsonl starts with a BOM"
        assert data.endswith(b"\n") and b"\r" not in data, split
        data.decode("utf-8")
    assert total < 400_000, f"sample files total {total} bytes, keep them under 400 KB"


def test_readme_counts_match_the_files(corpus):
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "python scripts/make_sample.py" in readme
    rows = dict(re.findall(r"^\| (\S[^|]*?) \| (\d+ \| \d+) \|$", readme, flags=re.M))
    train, dev = label_counts(corpus["train"]), label_counts(corpus["dev"])
    for label in LABELS:
        assert rows.get(label) == f"{train[label]} | {dev[label]}", f"README count for {label} is stale"
    assert rows.get("records") == f"{len(corpus['train'])} | {len(corpus['dev'])}"


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_generator_reproduces_the_committed_files(tmp_path, hash_seed):
    result = run_generator("--out-dir", str(tmp_path), hash_seed=hash_seed)
    assert result.returncode == 0, result.stderr
    for split in SPLITS:
        fresh = (tmp_path / f"{split}.jsonl").read_bytes()
        committed = (SAMPLE / f"{split}.jsonl").read_bytes()
        assert fresh == committed, f"{split}.jsonl differs from the generator output: rerun scripts/make_sample.py"


def test_generator_seed_changes_the_output(tmp_path):
    result = run_generator("--out-dir", str(tmp_path), "--seed", "7", "--train", "12", "--dev", "4")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 12
    committed = set((SAMPLE / "train.jsonl").read_text(encoding="utf-8").splitlines())
    assert not set(lines) & committed


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--train", "0"], "--train and --dev must be >= 1"),
        (["--out-dir", "FILE"], "is a file"),
    ],
)
def test_generator_rejects_bad_arguments_in_one_line(tmp_path, args, needle):
    afile = tmp_path / "not_a_folder.txt"
    afile.write_text("x", encoding="utf-8")
    args = [str(afile) if a == "FILE" else a for a in args]
    if "--out-dir" not in args:
        args += ["--out-dir", str(tmp_path / "out")]
    result = run_generator(*args)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert needle in message and "fix:" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.realdata
def test_no_passage_copies_ccks2019_text(corpus):
    """No 20-character stretch of a sample passage occurs in the CCKS 2019 training records."""
    folder = shared_data() / "corpora" / "ccks2019_yidu"
    width = 20
    grams: set[str] = set()
    for name in ("subtask1_training_part1.txt", "subtask1_training_part2.txt"):
        with (folder / name).open(encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    text = json.loads(line)["originalText"]
                    grams.update(text[i : i + width] for i in range(len(text) - width + 1))
    assert len(grams) > 100_000  # the real corpus was actually read
    copied = [
        (rec["id"], i)
        for split in SPLITS
        for rec in corpus[split]
        for i in range(len(rec["text"]) - width + 1)
        if rec["text"][i : i + width] in grams
    ]
    assert not copied, f"{len(copied)} windows match CCKS 2019 text, first at {copied[:3]} (record id, offset)"
