"""spaCy pipeline component ``medner``: a trained run directory applied to each Doc (``medner_lexicon``, the
lexicon matcher without a model, is in :mod:`medner.spacy.lexicon_component`).

    import spacy
    nlp = spacy.blank("zh")                                   # char segmenter; jieba/pkuseg work too
    nlp.add_pipe("medner", config={"model": "runs/emr_zh"})  # no `import medner` needed (entry point)
    doc = nlp(text)
    [(e.text, e.label_, e.kb_id_, e._.score, e._.icd_name, e._.match, e._.link_score) for e in doc.ents]
    nlp.evaluate(examples)                                   # ents_p / ents_r / ents_f / ents_per_type

Both factories are registered through the ``spacy_factories`` entry point of the package, take keyword-only
config with defaults, always return the Doc, and have ``to_disk``/``from_disk``. This module is a thin
adapter: the model never imports spaCy, and the component only turns :class:`medner.types.Span` character
spans into spaCy spans.

Batching. ``nlp.pipe(texts, batch_size=N)`` gives the component N docs at a time and sends their texts
through one :meth:`~medner.annotate.Annotator.predict` call (``batch_size`` in the config is the number of
windows per forward pass). With ``n_process > 1`` each worker runs torch on one thread.

Alignment. medner predicts character spans on ``doc.text``; each is mapped to tokens with
``doc.char_span(start, end, alignment_mode="expand")``. With the ``char`` segmenter of ``spacy.blank("zh")``
every span aligns exactly; a word segmenter (jieba, pkuseg) may cut inside a predicted span, which then
grows to the enclosing tokens. Nothing is shifted or dropped silently: ``component.stats`` counts
``aligned`` (exact), ``expanded`` (boundaries moved to token edges, original offsets in
``._.char_offsets``), ``unaligned`` (no token to cover, e.g. whitespace only: not written),
``ents_added`` and ``ents_skipped`` (predictions not made entities: policy ``keep``, or an overlap).
spaCy stores ``._`` values by span boundaries, so when two predictions expand to the same tokens the first
one's values are kept for both (counted as ``shared_boundaries``; the entity, if any, is also the first),
and a span of another component with the same boundaries shows the values written last. Each
expanded or unaligned span is logged at DEBUG with its offsets (never its text) and every call that
meets any logs a summary (WARNING the first time, INFO afterwards).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from medner.annotate import check_batch_size
from medner.errors import ConfigError, ModelError
from medner.lexicon.link import IcdLinker
from medner.lexicon.store import load_lexicon
from medner.model.device import resolve_device
from medner.files import is_inside
from medner.run.directory import fingerprint, is_run_dir, load_annotator, read_run_config
from medner.run.directory import read_meta as read_run_meta
from medner.spacy.writer import (ASSIGNS, META_FILE, META_FORMAT, SCORE_WEIGHTS, SpanWriter, copy_file,
                                 loading_saved_pipeline, read_meta)
from medner.types import Span

__all__ = ["MednerComponent", "make_medner"]

log = logging.getLogger(__name__)


class MednerComponent(SpanWriter):
    """The ``medner`` pipe: a trained run directory applied to each Doc's text.

    The run directory is checked when the component is created (``add_pipe`` fails on a missing or
    unreadable run) and the model loaded on first use (or by :meth:`from_disk`), so ``spacy.load`` of a
    pipeline saved with ``store_model=True`` never needs the original run directory. ``batch_size`` is the
    number of windows per forward pass; ``nlp.pipe(texts, batch_size=N)`` sends N docs at a time through one
    :meth:`~medner.annotate.Annotator.predict` call.
    """

    def __init__(self, nlp: Optional[Language], name: str = "medner", *, model: Optional[str] = None,
                 batch_size: int = 16, device: str = "auto", window_chars: Optional[int] = None,
                 window_overlap: Optional[int] = None, ents_policy: str = "merge", spans_key: str = "medner",
                 store_model: bool = True, lexicon: Optional[str] = None) -> None:
        super().__init__(name, spans_key, ents_policy)
        if not model:
            raise ConfigError(f"component {name!r} needs a model", field="model",
                              fix='nlp.add_pipe("medner", config={"model": "runs/emr_zh"}) with a finished run '
                                  "directory (scripts/finetune.sh configs/emr_zh.yaml writes runs/emr_zh)")
        check_batch_size(batch_size, what=f"component {name!r}: ")
        self.model = str(model)
        self.batch_size = batch_size
        self.device = device
        self.window_chars = window_chars
        self.window_overlap = window_overlap
        self.store_model = store_model
        self.lexicon = lexicon
        self.icd_names: Dict[str, str] = {}  # ICD code -> canonical name, filled from `lexicon`
        self._model_path = Path(model)
        self._lexicon_path = Path(lexicon) if lexicon else None
        self._annotator = None
        self._checked_lexicon = None  # the lexicon read at add_pipe, handed to the annotator (read once)
        self._pid = os.getpid()
        if not loading_saved_pipeline():  # fail at add_pipe, not on the first document
            self._check_model()
            resolve_device(device)  # a device absent here or unknown
            if self._window():  # windowing other than the run's: valid for it
                dataclasses.replace(read_run_config(self._model_path).window, **self._window())
            if self._lexicon_path is not None and not self._lexicon_path.is_file():
                raise ModelError(f"component {name!r}: ICD lexicon not found", where=str(self._lexicon_path),
                                 field="lexicon", fix="build it with `medner lexicon build configs/lexicon_zh.yaml "
                                                      "-o lexicons/build/lexicon_zh.tsv`, or leave `lexicon` out")
            if self._lexicon_path is not None:
                self._checked_lexicon = load_lexicon(self._lexicon_path)  # a file that is no lexicon fails here

    # -- model ------------------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """The run directory in use: ``model`` as configured, or the copy restored by :meth:`from_disk`."""
        return self._model_path

    @property
    def annotator(self):
        """The :class:`~medner.annotate.Annotator` (loaded on first access)."""
        if os.getpid() != self._pid:  # a worker of nlp.pipe(n_process > 1)
            self._pid = os.getpid()
            _one_thread_in_worker(self.name)
        if self._annotator is None:
            self._annotator = self._load()
        return self._annotator

    @annotator.setter
    def annotator(self, annotator) -> None:
        self._annotator = annotator

    @property
    def labels(self) -> tuple:
        """Entity types the model predicts (what ``nlp.meta["labels"]`` shows for this component)."""
        if self._annotator is not None:
            return tuple(self._annotator.scheme.types)
        try:
            return tuple(read_run_meta(self._model_path).get("labels") or ())
        except ModelError:
            return ()

    def _check_model(self) -> None:
        path = self._model_path
        if not is_run_dir(path):
            raise ModelError(f"component {self.name!r}: not a medner run directory", where=str(path), field="model",
                             fix="point `model` at the output_dir of a finished run "
                                 "(scripts/finetune.sh configs/emr_zh.yaml writes runs/emr_zh)")
        read_run_meta(path)  # a readable format version, else one clear line now

    def _window(self) -> dict:
        """The windowing fields set in the component's config (the run's own for the others)."""
        return {k: v for k, v in (("max_chars", self.window_chars), ("overlap", self.window_overlap)) if v is not None}

    def _load(self):
        path = self._model_path
        self._check_model()
        annotator = load_annotator(path, device=self.device, batch_size=self.batch_size, window=self._window() or None,
                                   icd_lexicon=self._checked_lexicon or self._lexicon_path)
        self._checked_lexicon = None
        self.icd_names = annotator.linker.names if isinstance(annotator.linker, IcdLinker) else {}
        log.info("%s: loaded run %s (fingerprint %s) on %s", self.name, path, annotator.fingerprint,
                 annotator.device)
        return annotator

    # -- processing -------------------------------------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        counts: Counter = Counter()
        self._set(doc, self.annotator.predict([doc.text])[0], counts)
        self._report(counts)
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Docs in order; ``batch_size`` docs at a time go through one ``Annotator.predict`` call."""
        for docs in minibatch(stream, size=batch_size):
            counts: Counter = Counter()
            predictions = self.annotator.predict([doc.text for doc in docs])
            for doc, spans in zip(docs, predictions):
                self._set(doc, spans, counts)
            self._report(counts)
            yield from docs

    def predict_spans(self, texts: Sequence[str]) -> List[List[Span]]:
        """The model's spans for ``texts`` (what the component writes, before token alignment)."""
        return self.annotator.predict(list(texts))

    def _set(self, doc: Doc, spans: Sequence[Span], counts: Counter) -> None:
        self._write(doc, [(s, s.name or self.icd_names.get(s.code) if s.code else None) for s in spans], counts)

    # -- serialisation ----------------------------------------------------------------------------------
    def to_disk(self, path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write ``medner_component.json`` and, with ``store_model``, a copy of the run directory
        (``model/``, without ``checkpoint/``) and of the lexicon (``lexicon.tsv``); else absolute references."""
        path = Path(path)
        source = self._model_path.resolve()
        if is_inside(path, source):
            pipeline = path.parent
            raise ModelError(f"component {self.name!r}: the pipeline is being saved inside the run it uses "
                             f"({source}); spaCy has already added its own files there (config.cfg, meta.json, "
                             f"vocab/, tokenizer/cfg: remove them, the run's files were not changed)",
                             where=str(pipeline),
                             fix="save the pipeline to a folder of its own: nlp.to_disk(\"nlp_out\")")
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": META_FORMAT, "stored": bool(self.store_model), "fingerprint": _fingerprint(source),
                "model": str(source), "lexicon": str(self._lexicon_path.resolve()) if self._lexicon_path else None}
        if self.store_model:
            _copy_tree(source, path / "model")
            meta["model"] = "model"
            if self._lexicon_path is not None:
                copy_file(self._lexicon_path, path / "lexicon.tsv")
                meta["lexicon"] = "lexicon.tsv"
        (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    def from_disk(self, path, *, exclude: Iterable[str] = tuple()) -> "MednerComponent":
        """Restore from :meth:`to_disk` output and load the model now."""
        path = Path(path)
        meta = read_meta(path, self.name)
        stored = bool(meta.get("stored"))
        self._model_path = path / meta["model"] if stored else Path(meta["model"])
        lexicon = meta.get("lexicon")
        self._lexicon_path = None if not lexicon else (path / lexicon if stored else Path(lexicon))
        self._checked_lexicon = None
        found = _fingerprint(self._model_path)
        if meta.get("fingerprint") and found != meta["fingerprint"]:
            log.warning("%s: run %s has weights %s, the saved pipeline was made with %s; predictions may differ",
                        self.name, self._model_path, found, meta["fingerprint"])
        self._annotator = None
        self._annotator = self._load()
        return self

    def __getstate__(self) -> dict:
        """Pickle without the loaded model (a worker process reloads it from :attr:`model_path`)."""
        state = dict(self.__dict__)
        state["_annotator"] = state["_checked_lexicon"] = None
        return state


@Language.factory(
    "medner",
    assigns=list(ASSIGNS),
    default_score_weights=SCORE_WEIGHTS,
    default_config={"model": None, "batch_size": 16, "device": "auto", "window_chars": None,
                    "window_overlap": None, "ents_policy": "merge", "spans_key": "medner", "store_model": True,
                    "lexicon": None},
)
def make_medner(nlp: Language, name: str, *, model: Optional[str], batch_size: int, device: str,
                window_chars: Optional[int], window_overlap: Optional[int], ents_policy: str, spans_key: str,
                store_model: bool, lexicon: Optional[str]) -> MednerComponent:
    """``model``: run directory; ``batch_size``: windows per forward pass; ``device``: auto/cpu/cuda[:N];
    ``window_chars``/``window_overlap``: override the run's windowing (None = the run's); ``ents_policy``:
    keep/merge/overwrite; ``spans_key``: doc.spans key; ``store_model``: copy the run into the saved
    pipeline (else keep a path); ``lexicon``: lexicon TSV for ICD linking (None = no linking)."""
    return MednerComponent(nlp, name, model=model, batch_size=batch_size, device=device, window_chars=window_chars,
                           window_overlap=window_overlap, ents_policy=ents_policy, spans_key=spans_key,
                           store_model=store_model, lexicon=lexicon)


def _one_thread_in_worker(name: str) -> None:
    """Limit torch to one thread in a worker process of ``nlp.pipe(n_process > 1)``.

    spaCy forks its workers; a forked child that enters an OpenMP parallel region the parent already used
    deadlocks (GNU libgomp is not fork-safe), and with one thread torch runs its loops inline. It also
    keeps ``n_process`` workers from competing for the same cores (as PyTorch's DataLoader workers do).
    """
    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
        log.debug("%s: worker process %d uses one torch thread", name, os.getpid())


def _fingerprint(run_dir: Path) -> Optional[str]:
    try:
        return fingerprint(run_dir)
    except ModelError:
        return None


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a run directory without ``checkpoint/``; nothing to do when ``target`` is ``source``."""
    if target.exists() and target.resolve() == source.resolve():
        return
    if not is_run_dir(source):
        raise ModelError(f"cannot store the model: {source} is not a medner run directory", field="model",
                         fix="point `model` at a finished run, or set store_model=false")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint"))
