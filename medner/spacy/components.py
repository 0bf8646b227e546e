"""spaCy pipeline components: ``medner`` (a trained run) and ``medner_lexicon`` (ICD lexicon matcher).

    import spacy
    nlp = spacy.blank("zh")                                   # char segmenter; jieba/pkuseg work too
    nlp.add_pipe("medner", config={"model": "runs/emr_zh"})  # no `import medner` needed (entry point)
    doc = nlp(text)
    [(e.text, e.label_, e.kb_id_, e._.score, e._.icd_name) for e in doc.ents]

Both factories are registered through the ``spacy_factories`` entry point of the package, take keyword-only
config with defaults, always return the Doc, and have ``to_disk``/``from_disk``. This module is a thin
adapter: the model never imports spaCy, and the component only turns :class:`medner.types.Span` character
spans into spaCy spans.

What a component writes on each Doc
  ``doc.spans[spans_key]``  every prediction (overlaps allowed), sorted by position.
  ``doc.ents``              by ``ents_policy``:
                            ``"merge"`` (default of ``medner``): existing entities are kept and predictions
                            that overlap none of them are added (spaCy's EntityRuler behaviour);
                            ``"overwrite"``: predictions replace all existing entities;
                            ``"keep"`` (default of ``medner_lexicon``): ``doc.ents`` is left untouched.
                            Predictions that overlap each other once aligned to tokens cannot all be
                            entities: the longest is kept (``spacy.util.filter_spans``).
  on every span             ``label_``; ``kb_id_`` = ICD code ("" when not linked); ``._.score`` (float in
                            [0, 1], None for lexicon matches); ``._.icd_name`` (canonical ICD name, None when
                            unknown); ``._.char_offsets`` = ``(start, end)`` of the predicted character span
                            on ``doc.text`` (differs from the span's own boundaries when it was expanded).

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
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.tokens import Span as SpacySpan
from spacy.util import filter_spans, minibatch

from medner.errors import ConfigError, ModelError
from medner.types import Span

__all__ = ["ENTS_POLICIES", "MednerComponent", "LexiconComponent", "make_medner", "make_medner_lexicon"]

log = logging.getLogger(__name__)

ENTS_POLICIES = ("keep", "merge", "overwrite")
EXTENSIONS = ("score", "icd_name", "char_offsets")
META_FILE = "medner_component.json"
META_FORMAT = 1

for _name in EXTENSIONS:
    if not SpacySpan.has_extension(_name):
        SpacySpan.set_extension(_name, default=None)


def _check_policy(policy: str, name: str) -> None:
    if policy not in ENTS_POLICIES:
        raise ConfigError(f"component {name!r}: unknown ents_policy {policy!r}", field="ents_policy",
                          fix=f"use one of {', '.join(ENTS_POLICIES)}")


class _SpanWriter:
    """Writes medner spans onto Docs (alignment, ``doc.spans``, ``doc.ents``) and keeps ``stats``."""

    name: str
    spans_key: str
    ents_policy: str

    def __init__(self, name: str, spans_key: str, ents_policy: str) -> None:
        _check_policy(ents_policy, name)
        self.name = name
        self.spans_key = spans_key
        self.ents_policy = ents_policy
        self.stats: Counter = Counter()
        self._warned = False

    def _write(self, doc: Doc, items: Sequence[Tuple[Span, Optional[str]]], counts: Counter) -> None:
        """Set ``doc.spans[self.spans_key]`` and ``doc.ents`` from ``(span, icd_name)`` pairs."""
        counts["docs"] += 1
        group: List[SpacySpan] = []
        seen = set()
        for span, icd_name in items:
            counts["spans"] += 1
            sp = doc.char_span(span.start, span.end, label=span.label, kb_id=span.code or "",
                               alignment_mode="expand")
            if sp is None or len(sp) == 0:
                counts["unaligned"] += 1
                log.debug("%s: span [%d, %d) %s covers no token; not written", self.name, span.start, span.end,
                          span.label)
                continue
            if (sp.start_char, sp.end_char) != (span.start, span.end):
                counts["expanded"] += 1
                log.debug("%s: span [%d, %d) %s expanded to token boundaries [%d, %d)", self.name, span.start,
                          span.end, span.label, sp.start_char, sp.end_char)
            else:
                counts["aligned"] += 1
            edges = (sp.start_char, sp.end_char)
            if edges in seen:  # spaCy keys `._` values by boundaries: the first span keeps them
                counts["shared_boundaries"] += 1
                log.debug("%s: span [%d, %d) %s shares token boundaries [%d, %d) with an earlier span and its "
                          "._ values", self.name, span.start, span.end, span.label, *edges)
            else:
                seen.add(edges)
                sp._.score = span.score
                sp._.icd_name = icd_name
                sp._.char_offsets = (span.start, span.end)
            group.append(sp)
        doc.spans[self.spans_key] = group
        if self.ents_policy == "keep":
            counts["ents_skipped"] += len(group)
            return
        chosen = filter_spans(group)
        if self.ents_policy == "overwrite":
            doc.ents = chosen
            added = chosen
        else:  # merge
            taken = set()
            for ent in doc.ents:
                taken.update(range(ent.start, ent.end))
            added = [sp for sp in chosen if not taken.intersection(range(sp.start, sp.end))]
            doc.set_ents(added, default="unmodified")
        counts["ents_added"] += len(added)
        counts["ents_skipped"] += len(group) - len(added)

    def _report(self, counts: Counter) -> None:
        """Add one call's counts to ``stats`` and log a summary when spans were expanded or dropped."""
        self.stats.update(counts)
        moved, lost = counts["expanded"], counts["unaligned"]
        if moved or lost:
            level = logging.INFO if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "%s: %d of %d spans expanded to token boundaries, %d covered no token (in %d docs; "
                    "totals in component.stats)", self.name, moved, counts["spans"], lost, counts["docs"])


class MednerComponent(_SpanWriter):
    """The ``medner`` pipe: a trained run directory applied to each Doc's text.

    The model is loaded on first use (or by :meth:`from_disk`), so ``spacy.load`` of a pipeline saved with
    ``store_model=True`` never needs the original run directory. ``batch_size`` is the number of windows per
    forward pass; ``nlp.pipe(texts, batch_size=N)`` sends N docs at a time through one
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
        if batch_size < 1:
            raise ConfigError(f"component {name!r}: batch_size must be >= 1, got {batch_size}", field="batch_size",
                              fix="use a positive number of windows per forward pass, e.g. 16")
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
        self._pid = os.getpid()

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

    def _load(self):
        from medner.annotate import Annotator

        path = self._model_path
        if not (path / "medner_model.json").is_file():
            raise ModelError(f"component {self.name!r}: {path} is not a medner run directory (no medner_model.json)",
                             field="model", fix="point `model` at the output_dir of a finished run "
                                                "(scripts/finetune.sh configs/emr_zh.yaml writes runs/emr_zh)")
        annotator = Annotator.load(path, device=self.device, batch_size=self.batch_size)
        if self.window_chars is not None or self.window_overlap is not None:
            window = annotator.window
            annotator.window = type(window)(
                max_chars=window.max_chars if self.window_chars is None else self.window_chars,
                overlap=window.overlap if self.window_overlap is None else self.window_overlap,
                max_tokens=window.max_tokens)
        if self._lexicon_path is not None:
            annotator.linker = self._build_linker(self._lexicon_path)
        log.info("%s: loaded run %s (fingerprint %s) on %s", self.name, path, annotator.fingerprint,
                 annotator.device)
        return annotator

    def _build_linker(self, path: Path) -> Optional[Callable[[str, Span], Span]]:
        """An Annotator linker over the lexicon at ``path`` (ICD codes), filling :attr:`icd_names`."""
        from medner.lexicon.store import load_lexicon

        lexicon = load_lexicon(path)
        self.icd_names = _code_names(lexicon.entries)
        return _icd_linker(lexicon)

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
        self._write(doc, [(s, self.icd_names.get(s.code) if s.code else None) for s in spans], counts)

    # -- serialisation ----------------------------------------------------------------------------------
    def to_disk(self, path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write ``medner_component.json`` and, with ``store_model``, a copy of the run directory
        (``model/``, without ``checkpoint/``) and of the lexicon (``lexicon.tsv``); else absolute references."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        source = self._model_path.resolve()
        meta = {"format": META_FORMAT, "stored": bool(self.store_model), "fingerprint": _fingerprint(source),
                "model": str(source), "lexicon": str(self._lexicon_path.resolve()) if self._lexicon_path else None}
        if self.store_model:
            _copy_tree(source, path / "model")
            meta["model"] = "model"
            if self._lexicon_path is not None:
                _copy_file(self._lexicon_path, path / "lexicon.tsv")
                meta["lexicon"] = "lexicon.tsv"
        (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    def from_disk(self, path, *, exclude: Iterable[str] = tuple()) -> "MednerComponent":
        """Restore from :meth:`to_disk` output and load the model now."""
        path = Path(path)
        meta = _read_meta(path, self.name)
        stored = bool(meta.get("stored"))
        self._model_path = path / meta["model"] if stored else Path(meta["model"])
        lexicon = meta.get("lexicon")
        self._lexicon_path = None if not lexicon else (path / lexicon if stored else Path(lexicon))
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
        state["_annotator"] = None
        return state


class LexiconComponent(_SpanWriter):
    """The ``medner_lexicon`` pipe: leftmost-longest ICD lexicon matches (a weak labeller), no model.

    ``lexicon`` is a lexicon TSV (``medner lexicon build ... -o FILE``); ``labels`` keeps only those labels,
    ``label_priority`` and ``min_length`` are passed to :class:`~medner.lexicon.matcher.LexiconMatcher`.
    Matches carry the entry's code (``kb_id_``) and canonical name (``._.icd_name``); ``._.score`` is None.
    """

    def __init__(self, nlp: Optional[Language], name: str = "medner_lexicon", *, lexicon: Optional[str] = None,
                 labels: Optional[List[str]] = None, label_priority: Sequence[str] = (), min_length: int = 2,
                 ents_policy: str = "keep", spans_key: str = "medner_lexicon", store_lexicon: bool = True) -> None:
        super().__init__(name, spans_key, ents_policy)
        if not lexicon:
            raise ConfigError(f"component {name!r} needs a lexicon file", field="lexicon",
                              fix='nlp.add_pipe("medner_lexicon", config={"lexicon": "lexicons/build/lexicon_zh.tsv"})'
                                  " (build it with `medner lexicon build configs/lexicon_zh.yaml -o FILE`)")
        self.lexicon = str(lexicon)
        self.label_filter = list(labels) if labels is not None else None
        self.label_priority = list(label_priority)
        self.min_length = min_length
        self.store_lexicon = store_lexicon
        self._lexicon_path = Path(lexicon)
        self._matcher = None

    @property
    def matcher(self):
        """The :class:`~medner.lexicon.matcher.LexiconMatcher` (built on first access)."""
        if self._matcher is None:
            from medner.lexicon.store import load_lexicon

            lex = load_lexicon(self._lexicon_path)
            self._matcher = lex.matcher(min_length=self.min_length, label_priority=self.label_priority,
                                        labels=self.label_filter)
            log.info("%s: %d lexicon keys from %s", self.name, len(self._matcher), self._lexicon_path)
        return self._matcher

    def __call__(self, doc: Doc) -> Doc:
        counts: Counter = Counter()
        self._set(doc, counts)
        self._report(counts)
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        for docs in minibatch(stream, size=batch_size):
            counts: Counter = Counter()
            for doc in docs:
                self._set(doc, counts)
            self._report(counts)
            yield from docs

    def _set(self, doc: Doc, counts: Counter) -> None:
        matches = self.matcher.matches(doc.text)
        self._write(doc, [(m.to_span(), m.entry.canonical if m.entry.code else None) for m in matches], counts)

    def to_disk(self, path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write ``medner_component.json`` and, with ``store_lexicon``, a copy of the lexicon file."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        source = self._lexicon_path.resolve()
        meta = {"format": META_FORMAT, "stored": bool(self.store_lexicon), "lexicon": str(source)}
        if self.store_lexicon:
            _copy_file(source, path / "lexicon.tsv")
            meta["lexicon"] = "lexicon.tsv"
        (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    def from_disk(self, path, *, exclude: Iterable[str] = tuple()) -> "LexiconComponent":
        path = Path(path)
        meta = _read_meta(path, self.name)
        self._lexicon_path = path / meta["lexicon"] if meta.get("stored") else Path(meta["lexicon"])
        self._matcher = None
        _ = self.matcher
        return self

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_matcher"] = None
        return state


# -- factories (registered in pyproject under [project.entry-points.spacy_factories]) ---------------------
@Language.factory(
    "medner",
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


@Language.factory(
    "medner_lexicon",
    default_config={"lexicon": None, "labels": None, "label_priority": [], "min_length": 2, "ents_policy": "keep",
                    "spans_key": "medner_lexicon", "store_lexicon": True},
)
def make_medner_lexicon(nlp: Language, name: str, *, lexicon: Optional[str], labels: Optional[List[str]],
                        label_priority: List[str], min_length: int, ents_policy: str, spans_key: str,
                        store_lexicon: bool) -> LexiconComponent:
    """``lexicon``: lexicon TSV; ``labels``: keep only these (None = all); ``label_priority``: labels, highest
    first, for terms with several labels; ``min_length``: shortest term; others as for ``medner``."""
    return LexiconComponent(nlp, name, lexicon=lexicon, labels=labels, label_priority=label_priority,
                            min_length=min_length, ents_policy=ents_policy, spans_key=spans_key,
                            store_lexicon=store_lexicon)


# -- helpers ------------------------------------------------------------------------------------------------
def _icd_linker(lexicon) -> Optional[Callable[[str, Span], Span]]:
    """:class:`medner.lexicon.link.IcdLinker` over ``lexicon`` (an Annotator linker: ``(text, span) -> span``
    with ``code`` set for 疾病和诊断 and 手术 spans), or None when this medner has no linker module."""
    try:
        from medner.lexicon.link import IcdLinker
    except ModuleNotFoundError as exc:
        if exc.name != "medner.lexicon.link":
            raise
        log.warning("ICD linking is not available in this medner version (no medner.lexicon.link); "
                    "entities get no codes")
        return None
    return IcdLinker(lexicon)


def _code_names(entries) -> Dict[str, str]:
    """ICD code -> canonical name: official entries first, then by the linker's source priority."""
    try:
        from medner.lexicon.link import DEFAULT_SOURCE_PRIORITY as priority
    except ModuleNotFoundError:
        priority = ()
    rank = {source: i for i, source in enumerate(priority)}
    names: Dict[str, str] = {}
    for entry in sorted((e for e in entries if e.code),
                        key=lambda e: (e.is_alias, rank.get(e.source, len(rank)), e.source, e.term)):
        names.setdefault(entry.code, entry.canonical)
    return names


def _one_thread_in_worker(name: str) -> None:
    """Limit torch to one thread in a worker process of ``nlp.pipe(n_process > 1)``.

    spaCy forks its workers; a forked child that enters an OpenMP parallel region the parent already used
    deadlocks (GNU libgomp is not fork-safe), and with one thread torch runs its loops inline. It also
    keeps ``n_process`` workers from competing for the same cores (as PyTorch's DataLoader workers do).
    """
    import torch

    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)
        log.debug("%s: worker process %d uses one torch thread", name, os.getpid())


def _fingerprint(run_dir: Path) -> Optional[str]:
    try:
        return json.loads((run_dir / "medner_model.json").read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return None


def _read_meta(path: Path, name: str) -> dict:
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"component {name!r}: no {META_FILE} in the saved pipeline", where=str(path),
                         fix="save the pipeline again with nlp.to_disk") from None
    if meta.get("format") != META_FORMAT:
        raise ModelError(f"component {name!r}: saved format {meta.get('format')} is not {META_FORMAT}",
                         where=str(meta_path), field="format", fix="save the pipeline again with this medner")
    return meta


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a run directory without ``checkpoint/``; nothing to do when ``target`` is ``source``."""
    if target.exists() and target.resolve() == source.resolve():
        return
    if not (source / "medner_model.json").is_file():
        raise ModelError(f"cannot store the model: {source} is not a medner run directory", field="model",
                         fix="point `model` at a finished run, or set store_model=false")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint"))


def _copy_file(source: Path, target: Path) -> None:
    if target.exists() and target.resolve() == source.resolve():
        return
    shutil.copyfile(source, target)
