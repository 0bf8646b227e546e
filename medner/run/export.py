"""Export a run directory for a CPU runtime: ONNX Runtime or OpenVINO, fp32 or static int8, behind a gate (KL and
span agreement against the source run).

    export_run("runs/ccks2019", "runs/ccks2019-ov-int8", fmt="openvino", quantize="int8",
               calibrate="corpus.jsonl")

The result is a run directory (format 3, see :mod:`medner.run.directory`) that every entry point loads as it
loads the source run; only encoder + head run in the exported graph, the CRF decodes as before.

Steps. (1) Load the source run (verified; LoRA merged, or a full encoder). (2) Cut the check corpus into the
run's own token windows: with ``quantize`` every 4th record is held aside for the check and the others
calibrate; without it every window is a check window. Without ``calibrate`` the run's own corpus is used.
(3) Trace encoder + head with the TorchScript exporter (eager attention, so that runtimes recognise it) to
ONNX: ``input_ids``, ``attention_mask`` (+ ``lex``) ``(1, seq)`` -> ``emissions`` ``(1, seq, n_tags)``.
(4) Build the runtime's model. ONNX fp32: ONNX Runtime's transformer fusions (attention, layer norm, GELU).
ONNX int8: ONNX Runtime static quantisation (QOperator, per-channel symmetric int8 weights, uint8 activations
with MinMax scales fixed by calibration). OpenVINO fp32: its ONNX frontend, weights kept fp32 (not fp16).
OpenVINO int8: NNCF post-training quantisation (transformer mode, mixed preset: per-channel symmetric weights,
static activation scales). In both int8 paths the head (and anything ``keep_fp32`` names) stays fp32; embedding
lookups are never quantised. Scales are fixed at export, so they cannot depend on a batch. (5) The gate:
each check window goes through the source run (torch fp32) and the candidate, window by window; per token,
KL(p_fp32 || p_export) of the tag marginals (CRF forward-backward; softmax without a CRF), arg-max agreement
and, per window, agreement of the decoded spans (F1 of one against the other). A candidate passes when its mean
KL is at most ``max_kl`` *and* its span agreement at least ``min_span_agreement`` (a low mean KL can hide
disagreements concentrated on the few tokens that start or end spans). If it fails after int8, encoder layers
are ranked by sensitivity (the KL, or the span agreement when only that fails, with each one alone kept fp32,
quantised and checked on 32 windows each: a ranking, not the final scales) and the most sensitive are kept fp32,
one more at a time, up to ``max_fp32_layers``. A candidate still failing is refused. (6) Write the directory
beside ``out_dir`` under a temporary name and rename it into place only when complete; on any error nothing is
left at ``out_dir``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from medner.corpus import ReadReport, read_corpus
from medner.errors import ConfigError, CorpusError, MednerError, ModelError
from medner.files import is_inside, publish_folder
from medner.model.alignment import token_tags_to_spans
from medner.model.tagger import Tagger, decode_emissions, tag_probabilities
from medner.model.windows import collate, token_windows
from medner.run.directory import EXPORT_DIR, LoadedRun, is_exported, load_run, read_meta, save_exported
from medner.run.output_dir import check_output, refuse_inputs_inside
from medner.run.runtime import EXTRAS, FORMATS, MODEL_FILES, ExportedTagger, require_runtime, runtime_version
from medner.types import Record

log = logging.getLogger(__name__)

DEFAULT_MAX_KL = 0.05
#: the OpenVINO int8 exports measured agree on 0.98-0.99 of spans; an ONNX Runtime int8 export that passed the
#: KL gate just (0.0496) agreed on 0.872 of them, which this floor refuses
DEFAULT_MIN_SPAN_AGREEMENT = 0.95
#: measured on an AVX-512 VNNI server CPU, one thread, e5-small: OpenVINO int8 3.9x the HF pipeline's chars/s,
#: ONNX Runtime int8 (QOperator) about 25% slower per window than OpenVINO; fp32 both about 1.3x torch
DEFAULT_FORMAT = "openvino"
MIN_CALIBRATION_WINDOWS = 32
MIN_CHECK_WINDOWS = 16
HOLD_ASIDE_EVERY = 4  # with calibration, records 3, 7, 11, ... are the check set
RANKING_WINDOWS = 32  # calibration and check windows used to rank layer sensitivity (a ranking, not the scales)
OPSET = 17
HEAD_PATTERN = "/head/"
_LAYER = re.compile(r"layer\.(\d+)[./]")


@dataclass(frozen=True)
class Window:
    """One token window: ids ``(seq,)``, label-bearing positions and their lexicon ids ``(n_labels,)``, and the
    window-relative character offsets of those tokens."""

    input_ids: list[int]
    label_index: list[int]
    lex: list[int]
    offsets: list[tuple[int, int]]

    def feeds(self) -> dict[str, np.ndarray]:
        """Graph inputs ``(1, seq)`` int64; ``lex`` moved from label positions to token positions."""
        ids = np.asarray([self.input_ids], dtype=np.int64)
        lex = np.zeros_like(ids)
        if self.lex:
            lex[0, self.label_index] = self.lex
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "lex": lex}

    def batch(self, pad_id: int) -> dict[str, torch.Tensor]:
        return collate([{"input_ids": self.input_ids, "label_index": self.label_index, "lex": self.lex}], pad_id)


@dataclass
class Reference:
    """The source run's view of the check windows: tag distributions ``(n_labels, n_tags)`` per window, arg-max
    tags, and the decoded spans ``{(window, start, end, label)}``."""

    probs: list[torch.Tensor]
    emissions: list[torch.Tensor]
    spans: set[tuple[int, int, int, str]]


class _Graph(nn.Module):
    """encoder -> (+ lexicon embedding) -> head at every token: ``(1, seq)`` -> ``(1, seq, n_tags)`` fp32."""

    def __init__(self, tagger: Tagger) -> None:
        super().__init__()
        self.encoder, self.head, self.lexicon = tagger.encoder, tagger.head, tagger.lexicon

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lex: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.lexicon is not None:
            hidden = hidden + self.lexicon(lex).to(hidden.dtype)
        return self.head(hidden).float()


# --------------------------------------------------------------------------------------------- entry point

def export_run(run_dir: str | Path, out_dir: str | Path, *, fmt: str = DEFAULT_FORMAT, quantize: str | None = None,
               calibrate: str | Path | None = None, corpus_format: str = "jsonl", encoding: str | None = None,
               max_kl: float = DEFAULT_MAX_KL, min_span_agreement: float = DEFAULT_MIN_SPAN_AGREEMENT,
               keep_fp32: Sequence[str] = (), max_fp32_layers: int = 4, calibration_windows: int = 128,
               check_windows: int = 128, overwrite: bool = False) -> dict:
    """Export ``run_dir`` to ``out_dir`` (module docstring); returns the exported run's metadata.

    ``calibrate``: corpus (``corpus_format``) to calibrate int8 scales and check the export on;
    ``keep_fp32``: substrings of graph node names to keep fp32 besides the head (``layer.11/``);
    ``calibration_windows``/``check_windows``: at most this many windows (evenly spread) for each part."""
    started = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_arguments(run_dir, out_dir, fmt, quantize, calibrate, max_kl, min_span_agreement, overwrite)
    _check_window_counts(quantize is not None, calibration_windows, check_windows)
    _require_tools(fmt, quantize is not None)
    run = load_run(run_dir)
    records, source = _check_records(run, calibrate, corpus_format, encoding)
    calibration, check = _split_windows(run, records, quantize is not None, calibration_windows, check_windows)
    log.info("export %s -> %s (%s%s): %d check windows%s from %s", run_dir, out_dir, fmt,
             " int8" if quantize else "", len(check),
             f", {len(calibration)} calibration windows" if quantize else "", source)
    reference = _reference(run, check)
    figures = {}

    def write(staging: Path) -> None:  # everything happens in the folder publish_folder renames into place: a
        work = staging / "work"        # refusal or a kill leaves nothing that the next export does not remove
        onnx_path = _trace(run.tagger, check[0], work / "traced" / "model.onnx")
        builder = _Builder(fmt, run, onnx_path, calibration, work)
        gate = Gate(max_kl, min_span_agreement)
        folder, checked, quant = _build_with_gate(builder, run, check, reference, quantize, gate,
                                                  list(keep_fp32), max_fp32_layers, str(run_dir))
        figures.update(checked)
        shutil.move(str(folder), str(staging / EXPORT_DIR))
        shutil.rmtree(work)
        save_exported(run_dir, staging, {
            "format": fmt, "runtime": runtime_version(fmt), "precision": "int8" if quantize else "fp32",
            "export": {"source_fingerprint": run.fingerprint, "source_encoder": run.meta.get("encoder"),
                       "exporter": f"torch {torch.__version__} TorchScript exporter, opset {OPSET}",
                       "quantization": quant, "check_corpus": source, "max_kl": max_kl,
                       "min_span_agreement": min_span_agreement, "check": checked,
                       "export_threads": torch.get_num_threads(),
                       "seconds": round(time.perf_counter() - started, 1)}})

    publish_folder(out_dir, write, replace=lambda _: True)  # an existing out_dir (--overwrite) goes only now
    log.info("exported %s: mean KL %.4g, max KL %.4g, token agreement %.4f, span agreement %.4f", out_dir,
             figures["mean_kl"], figures["max_kl"], figures["token_agreement"], figures["span_agreement"])
    return read_meta(out_dir)


def _check_arguments(run_dir: Path, out_dir: Path, fmt: str, quantize: str | None, calibrate, max_kl: float,
                     min_span_agreement: float, overwrite: bool) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", field="--format", fix=f"use one of {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"unknown quantisation {quantize!r}", field="--quantize", fix="use int8, or leave it out")
    if quantize and calibrate is None:
        raise ConfigError("int8 quantisation needs a calibration corpus", field="--calibrate",
                          fix="add --calibrate CORPUS: records like those the model will annotate")
    if not max_kl > 0:
        raise ConfigError(f"--max-kl must be > 0, got {max_kl}", field="--max-kl", fix="use e.g. 0.05")
    if not 0.0 <= min_span_agreement <= 1.0:  # NaN too
        raise ConfigError(f"--min-span-agreement must be in [0, 1], got {min_span_agreement}",
                          field="--min-span-agreement", fix=f"use e.g. {DEFAULT_MIN_SPAN_AGREEMENT}; 0 turns it off")
    if is_exported(read_meta(run_dir)):  # a finished run (else what the folder is and the fix)
        raise ModelError("the run is itself exported", where=str(run_dir),
                         fix="export the torch run it came from (its fingerprint is in medner_model.json)")
    if out_dir.resolve() == run_dir.resolve():
        raise ConfigError("the export would overwrite its source run", field="-o", fix="write it to a new directory")
    if is_inside(out_dir, run_dir):
        raise ConfigError(f"{out_dir} lies inside the source run {run_dir}", field="-o",
                          fix="write the export to a directory outside the run")
    refuse_inputs_inside(out_dir, [("RUN", run_dir)])  # -o a folder holding the run: --overwrite would delete it
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder", field="-o",
                          fix="name a new directory for the export")
    if out_dir.exists() and not overwrite and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not empty", field="-o",
                          fix="choose a new directory, or add --overwrite to replace it once the export succeeds")
    # --overwrite replaces an earlier export's folder, never a training run, an encoder or anything else
    if overwrite and check_output(out_dir, overwrite=True) and not _is_earlier_export(out_dir):
        raise ConfigError(f"-o holds a training run / encoder, not an export ({out_dir}): --overwrite replaces only "
                          "an earlier export's folder", field="-o", fix="choose a new directory for the export")


def _is_earlier_export(folder: Path) -> bool:
    """Whether ``folder`` holds an exported run (its metadata says so; a training run or encoder has none such)."""
    try:
        return is_exported(read_meta(folder))
    except MednerError:
        return False


def _check_window_counts(quantize: bool, calibration_windows: int, check_windows: int) -> None:
    """Refuse fewer windows than the gate (and int8 calibration) needs: the corpus check comes after them."""
    limits = [("--check-windows", check_windows, MIN_CHECK_WINDOWS)]
    if quantize:
        limits.append(("--calibration-windows", calibration_windows, MIN_CALIBRATION_WINDOWS))
    for option, value, minimum in limits:
        if value < minimum:
            raise ConfigError(f"{option} must be at least {minimum}, got {value}", field=option,
                              fix=f"leave it out (128) or give at least {minimum}")


def _require_tools(fmt: str, quantize: bool) -> None:
    """The runtime (and quantiser) of ``fmt``, and the onnx package, which the TorchScript exporter writes with."""
    require_runtime(fmt, quantize=quantize)
    try:
        import onnx  # noqa: F401  optional dependency: medner[export] and medner[openvino]
    except ImportError:
        raise ModelError("exporting needs the onnx package, which is not installed",
                         fix=f"pip install 'medner[{EXTRAS[fmt]}]'") from None


def _check_records(run: LoadedRun, calibrate, corpus_format: str, encoding: str | None) -> tuple[list[Record], str]:
    """The records to calibrate and check on, and a description (file name only: paths may say too much).

    Without ``calibrate`` (fp32 only): the run's own corpus, its dev files or else its training files, as its
    config names them (an fp32 export is checked for numerical agreement, which any typical text shows)."""
    if calibrate is not None:
        records = _calibration_records(calibrate, corpus_format, encoding)
        return records, f"{Path(calibrate).name} ({corpus_format}, {len(records)} records)"
    data = run.config.data
    paths = data.dev or data.train
    try:
        records = [r for path in paths for r in read_corpus(path, format=data.format, encoding=data.encoding,
                                                             on_error="skip") if r.text.strip()]
    except MednerError as exc:
        raise ConfigError(f"no corpus to check the export on: the run's own corpus cannot be read ({exc.message})",
                          field="--calibrate", fix="add --calibrate CORPUS (records like those the model will "
                                                    "annotate)") from None
    which = "dev" if data.dev else "training"
    return records, f"the run's {which} files ({', '.join(Path(p).name for p in paths)}, {len(records)} records)"


def _calibration_records(calibrate, corpus_format: str, encoding: str | None) -> list[Record]:
    """The records of ``--calibrate`` with text: only texts are used, so a bad gold span or record is skipped (and
    counted in the log); a file mostly unreadable as ``corpus_format`` is refused."""
    fix = f"correct the file, or name its corpus format with --calibrate-format (now {corpus_format})"
    report = ReadReport()
    try:
        records = [r for r in read_corpus(calibrate, format=corpus_format, encoding=encoding, on_error="skip",
                                          report=report) if r.text.strip()]
    except CorpusError as exc:  # the reader's fix names options of other commands
        raise CorpusError(exc.message, where=exc.where, field="--calibrate", fix=fix) from None
    if report.skipped_records and report.skipped_records >= report.records:
        first = report.examples[0] if report.examples else str(calibrate)
        raise CorpusError(f"{report.skipped_records} of {report.skipped_records + report.records} records cannot "
                          f"be read as {corpus_format} (first: {first})", where=str(calibrate), field="--calibrate",
                          fix=fix)
    if report.skipped:
        log.info("--calibrate %s: %d records and %d spans skipped (only the texts are used)", Path(calibrate).name,
                 report.skipped_records, report.skipped_spans)
    return records


def _split_windows(run: LoadedRun, records: list[Record], calibrating: bool, max_calibration: int,
                   max_check: int) -> tuple[list[Window], list[Window]]:
    calibration: list[Window] = []
    check: list[Window] = []
    for i, record in enumerate(records):
        held_aside = not calibrating or i % HOLD_ASIDE_EVERY == HOLD_ASIDE_EVERY - 1
        (check if held_aside else calibration).extend(record_windows(run, record.text))
    need = f"at least {MIN_CHECK_WINDOWS} check windows"
    if calibrating:
        need += f" and {MIN_CALIBRATION_WINDOWS} calibration windows (every {HOLD_ASIDE_EVERY}th record is held " \
                f"aside for the check)"
    if len(check) < MIN_CHECK_WINDOWS or (calibrating and len(calibration) < MIN_CALIBRATION_WINDOWS):
        raise CorpusError(f"corpus too small: {len(records)} records gave {len(check)} check"
                          + (f" and {len(calibration)} calibration" if calibrating else "")
                          + f" windows; {need} are needed", field="--calibrate",
                          fix="give more records (a few hundred typical ones)")
    return _spread(calibration, max_calibration), _spread(check, max_check)


def record_windows(run: LoadedRun, text: str) -> list[Window]:
    """The run's token windows of ``text`` (those with label-bearing tokens), as prediction cuts them."""
    out = []
    for window, encoded in token_windows(run.tokenizer, text, run.config.window):
        if encoded.label_positions:
            lex = run.lexicon.token_ids(window.slice(text), encoded.offsets) if run.lexicon else []
            out.append(Window(list(encoded.input_ids), list(encoded.label_positions), list(lex), list(encoded.offsets)))
    return out


def _spread(items: list, limit: int) -> list:
    """At most ``limit`` items, evenly spread over ``items`` (deterministic)."""
    if len(items) <= limit:
        return items
    return [items[int(i * len(items) / limit)] for i in range(limit)]


# --------------------------------------------------------------------------------------------- tracing

def _trace(tagger: Tagger, example: Window, path: Path) -> Path:
    """encoder + head as ONNX (TorchScript exporter; dynamic batch and sequence axes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = _Graph(tagger).eval()
    encoder = tagger.encoder
    before = getattr(encoder.config, "_attn_implementation", None)
    try:
        encoder.set_attn_implementation("eager")  # the plain attention pattern, which runtimes fuse
    except (AttributeError, ValueError) as exc:
        log.debug("eager attention not available (%s); exporting the default attention", exc)
    feeds = {k: torch.from_numpy(v) for k, v in example.feeds().items()}
    names = ["input_ids", "attention_mask"] + (["lex"] if tagger.lexicon is not None else [])
    axes = {name: {0: "batch", 1: "seq"} for name in names}
    axes["emissions"] = {0: "batch", 1: "seq"}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes that never change here
            torch.onnx.export(graph, tuple(feeds[n] for n in names), str(path), input_names=names,
                              output_names=["emissions"], dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
    finally:
        if before is not None:
            try:
                encoder.set_attn_implementation(before)
            except (AttributeError, ValueError):
                pass
    return path


# --------------------------------------------------------------------------------------------- building

class _Builder:
    """Builds candidate models of one format from the traced graph: ``build(quantize, keep) -> folder``."""

    def __init__(self, fmt: str, run: LoadedRun, onnx_path: Path, calibration: list[Window], work: Path) -> None:
        self.fmt, self.run, self.onnx_path, self.calibration, self.work = fmt, run, onnx_path, calibration, work
        self.count = 0
        self.matmuls = _matmul_names(onnx_path, fmt)

    def layers(self) -> dict[int, list[str]]:
        """Encoder layer -> names of its matrix products."""
        groups: dict[int, list[str]] = {}
        for name in self.matmuls:
            match = _LAYER.search(name)
            if match:
                groups.setdefault(int(match.group(1)), []).append(name)
        return dict(sorted(groups.items()))

    def excluded(self, keep: Sequence[str]) -> list[str]:
        """Names of the matrix products kept fp32: the head's and every one matching a ``keep`` substring."""
        patterns = [HEAD_PATTERN, *keep]
        return [n for n in self.matmuls if any(p in n for p in patterns)]

    def build(self, quantize: str | None, keep: Sequence[str] = (), calibration: int | None = None) -> Path:
        """A candidate in a new folder; ``calibration``: calibrate on the first this many windows only."""
        windows = self.calibration[:calibration] if calibration else self.calibration
        self.count += 1
        folder = self.work / f"candidate-{self.count}"
        folder.mkdir(parents=True)
        target = folder / MODEL_FILES[self.fmt]
        if self.fmt == "onnx" and quantize:
            _quantize_onnx(self.onnx_path, target, windows, self.excluded(keep))
        elif self.fmt == "onnx":
            _optimize_onnx(self.onnx_path, target, self.run.tagger.encoder.config)
        elif quantize:
            _quantize_openvino(self.onnx_path, target, windows, self.excluded(keep))
        else:
            _to_openvino(self.onnx_path, target)
        return folder


def _matmul_names(onnx_path: Path, fmt: str) -> list[str]:
    """Names of the MatMul nodes of the traced graph (OpenVINO keeps them as its operations' names)."""
    if fmt == "onnx":
        import onnx  # optional dependency: medner[export]

        return [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.op_type == "MatMul"]
    ov = require_runtime("openvino")
    model = ov.Core().read_model(str(onnx_path))
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]


def _optimize_onnx(source: Path, target: Path, encoder_config) -> None:
    """ONNX Runtime's transformer fusions (opt_level 0: portable graph rewrites only; the session applies the
    machine-specific ones when it opens)."""
    from onnxruntime.transformers.optimizer import optimize_model  # optional dependency: medner[export]

    model_type = getattr(encoder_config, "model_type", "bert")
    if model_type not in ("bert", "roberta", "xlm-roberta", "distilbert", "electra"):
        shutil.copyfile(source, target)
        return
    with _quiet():
        model = optimize_model(str(source), model_type="bert", num_heads=encoder_config.num_attention_heads,
                               hidden_size=encoder_config.hidden_size, opt_level=0)
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    log.info("ONNX Runtime fusions: %s", ", ".join(f"{k} {v}" for k, v in fused.items()) or "none")
    model.save_model_to_file(str(target))


def _quantize_onnx(source: Path, target: Path, calibration: list[Window], exclude: list[str]) -> None:
    """Static int8: QOperator format (QLinearMatMul), per-channel symmetric int8 weights, uint8 activations with
    MinMax scales from ``calibration``; MatMul only (embedding lookups stay fp32), ``exclude`` kept fp32."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,  # optional
                                          QuantType, quantize_static)  # dependency: medner[export]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(w.feeds() for w in calibration)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    inputs = _graph_inputs(source)

    class Filtered(Reader):
        def get_next(self) -> dict | None:
            item = super().get_next()
            return None if item is None else {k: v for k, v in item.items() if k in inputs}

    # its symbolic shape pre-processing fails on transformer graphs with dynamic axes (and only matters for
    # per-tensor quantisation of convolutions), so quantize_static's advice to run it is hidden with its INFO lines
    with _quiet():
        quantize_static(str(source), str(target), Filtered(), quant_format=QuantFormat.QOperator, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def _graph_inputs(path: Path) -> set[str]:
    import onnx  # optional dependency: medner[export]

    return {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}


def _to_openvino(source: Path, target: Path) -> None:
    """OpenVINO IR through its ONNX frontend; weights kept fp32 (``save_model`` would halve them to fp16)."""
    ov = require_runtime("openvino")
    ov.save_model(ov.Core().read_model(str(source)), str(target), compress_to_fp16=False)


def _quantize_openvino(source: Path, target: Path, calibration: list[Window], exclude: list[str]) -> None:
    """NNCF static int8 (transformer mode, mixed preset: per-channel symmetric weights, asymmetric activations
    with scales from ``calibration``); ``exclude`` kept fp32."""
    ov = require_runtime("openvino", quantize=True)
    os.environ.setdefault("NNCF_CI", "1")  # nncf sends usage telemetry unless this is set; medner runs air-gapped
    import nncf  # optional dependency: medner[openvino]

    model = ov.Core().read_model(str(source))
    inputs = {port.get_any_name() for port in model.inputs}
    data = nncf.Dataset([{k: v for k, v in w.feeds().items() if k in inputs} for w in calibration])
    with _quiet(), contextlib.redirect_stdout(io.StringIO()):  # its progress bars (rich) write to stdout
        quantized = nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER,
                                  preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration),
                                  fast_bias_correction=True,
                                  ignored_scope=nncf.IgnoredScope(names=exclude, validate=False))
    ov.save_model(quantized, str(target), compress_to_fp16=False)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide log records below ERROR while a library works: ONNX Runtime's graph tools and NNCF log every step
    at INFO/WARNING under their own logger names; medner logs what matters around them."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


# --------------------------------------------------------------------------------------------- the KL gate

def _reference(run: LoadedRun, check: list[Window]) -> Reference:
    """The source run on every check window, alone (fp32, no autocast)."""
    pad = run.tokenizer.pad_token_id or 0
    return distributions(run.tagger.emissions, run.tagger.crf, run.tagger.scheme, check, pad)


def distributions(emissions_fn: Callable, crf, scheme, check: list[Window], pad: int) -> Reference:
    """Tag distributions, emissions and decoded spans of ``check`` windows, each window alone through
    ``emissions_fn`` (``Tagger.emissions``'s signature)."""
    probs, emissions, spans = [], [], set()
    for w, window in enumerate(check):
        batch = window.batch(pad)
        with torch.inference_mode():
            em = emissions_fn(batch["input_ids"], batch["attention_mask"], batch["label_index"], batch["lex"]).float()
        mask = batch["label_mask"]
        probs.append(tag_probabilities(crf, em, mask)[0])
        emissions.append(em[0])
        decoded = decode_emissions(crf, em, mask)[0]
        for span in token_tags_to_spans(scheme.decode(decoded.tags), window.offsets, scheme):
            spans.add((w, span.start, span.end, span.label))
    return Reference(probs, emissions, spans)


def measure(reference: Reference, candidate: Reference) -> dict:
    """KL(p_ref || p_candidate) per token (mean, max), arg-max agreement per token, span agreement (F1 of the
    candidate's spans against the reference's; 1.0 when neither has any) and the largest emission difference."""
    kls, agree = [], []
    for p, q in zip(reference.probs, candidate.probs):
        # shape: (n_labels,) — KL per token; 0 log 0 = 0, and tags the CRF forbids have p = q = 0
        kls.append((torch.xlogy(p, p) - torch.xlogy(p, q.clamp_min(1e-30))).sum(-1).clamp_min(0.0))
        agree.append(p.argmax(-1) == q.argmax(-1))
    kl, agreement = torch.cat(kls), torch.cat(agree).float()
    a, b = reference.spans, candidate.spans
    span_agreement = 1.0 if not a and not b else 2 * len(a & b) / (len(a) + len(b))
    diff = max(float((x - y).abs().max()) for x, y in zip(reference.emissions, candidate.emissions))
    return {"windows": len(reference.probs), "tokens": int(kl.numel()), "mean_kl": _round(kl.mean()),
            "max_kl": _round(kl.max()), "token_agreement": _round(agreement.mean()),
            "span_agreement": _round(span_agreement), "spans_reference": len(a), "spans_export": len(b),
            "max_abs_emission_diff": _round(diff)}


def _round(value) -> float:
    return float(f"{float(value):.6g}")


def _candidate_figures(builder: _Builder, folder: Path, run: LoadedRun, check: list[Window],
                       reference: Reference) -> dict:
    tagger = ExportedTagger(builder.fmt, folder / MODEL_FILES[builder.fmt], run.tagger.scheme, run.tagger.crf,
                            pad_id=run.tokenizer.pad_token_id or 0, max_tokens=run.config.window.max_tokens).open()
    side = distributions(tagger.emissions, run.tagger.crf, run.tagger.scheme, check, run.tokenizer.pad_token_id or 0)
    return measure(_subset(reference, len(check)), side)


def _subset(reference: Reference, n: int) -> Reference:
    if n == len(reference.probs):
        return reference
    return Reference(reference.probs[:n], reference.emissions[:n], {s for s in reference.spans if s[0] < n})


@dataclass(frozen=True)
class Gate:
    """What an export must reach on the check windows: mean KL per token at most ``max_kl`` and span agreement
    (F1 of its spans against the source run's) at least ``min_span_agreement``."""

    max_kl: float
    min_span_agreement: float

    def missed(self, figures: dict) -> dict[str, str]:
        """The limits ``figures`` (from :func:`measure`) miss: ``{"kl" | "spans": what, as the options name it}``."""
        missed = {}
        if not figures["mean_kl"] <= self.max_kl:  # NaN fails too
            missed["kl"] = f"mean KL {figures['mean_kl']:.6g} exceeds --max-kl {self.max_kl:.6g}"
        if not figures["span_agreement"] >= self.min_span_agreement:
            missed["spans"] = (f"span agreement {figures['span_agreement']:.6g} ({figures['spans_export']} spans "
                               f"against {figures['spans_reference']}) is below --min-span-agreement "
                               f"{self.min_span_agreement:.6g}")
        return missed

    def failures(self, figures: dict) -> list[str]:
        """The limits ``figures`` miss, as messages; [] passes."""
        return list(self.missed(figures).values())

    def spans_fail(self, figures: dict) -> bool:
        """Whether the span agreement is what fails while the KL passes (layers are then ranked by it)."""
        return self.missed(figures).keys() == {"spans"}


def _build_with_gate(builder: _Builder, run: LoadedRun, check: list[Window], reference: Reference,
                     quantize: str | None, gate: Gate, keep: list[str],
                     max_fp32_layers: int, where: str) -> tuple[Path, dict, dict | None]:
    """The candidate that passes the gate (module docstring, step 5): ``(folder, figures, quantization)``."""
    folder = builder.build(quantize, keep)
    figures = _candidate_figures(builder, folder, run, check, reference)
    log.info("candidate (%s%s): mean KL %.4g, span agreement %.4f", builder.fmt, " int8" if quantize else "",
             figures["mean_kl"], figures["span_agreement"])
    kept_layers: list[int] = []
    failures = gate.failures(figures)
    if quantize and failures and max_fp32_layers > 0 and builder.layers():
        layers = builder.layers()
        log.info("%s: measuring the sensitivity of %d encoder layers", "; ".join(failures), len(layers))
        ranking_set = check[:RANKING_WINDOWS]
        by_spans = gate.spans_fail(figures)  # else by KL: the measure the gate misses decides which layers help most
        ranked = []
        for layer, names in layers.items():
            trial = builder.build(quantize, keep + names, calibration=RANKING_WINDOWS)
            trial_figures = _candidate_figures(builder, trial, run, ranking_set, reference)
            ranked.append(((-trial_figures["span_agreement"] if by_spans else 0.0, trial_figures["mean_kl"]), layer))
            shutil.rmtree(trial)
        ranked.sort()
        log.info("layer sensitivity (%s with the layer kept fp32): %s",
                 "span agreement, mean KL" if by_spans else "mean KL",
                 ", ".join(f"{layer}: {-key[0]:.4f}, {key[1]:.4g}" if by_spans else f"{layer}: {key[1]:.4g}"
                           for key, layer in ranked))
        for _, layer in ranked[:max_fp32_layers]:
            kept_layers.append(layer)
            shutil.rmtree(folder)
            folder = builder.build(quantize, keep + [n for k in kept_layers for n in layers[k]])
            figures = _candidate_figures(builder, folder, run, check, reference)
            log.info("layers %s kept fp32: mean KL %.4g, span agreement %.4f", kept_layers, figures["mean_kl"],
                     figures["span_agreement"])
            failures = gate.failures(figures)
            if not failures:
                break
    if failures:
        kept = f" with encoder layers {kept_layers} kept fp32" if kept_layers else ""
        raise ModelError(f"export refused ({builder.fmt}{' int8' if quantize else ''}{kept} against fp32 on "
                         f"{figures['windows']} windows): {'; '.join(failures)}",
                         where=where,
                         fix="export fp32, keep more layers fp32 (--keep-fp32, --max-fp32-layers), or calibrate "
                             "on records closer to the ones to annotate")
    quantization = None
    if quantize:
        scheme = ("ONNX Runtime static QOperator: int8 per-channel symmetric weights, uint8 per-tensor activations "
                  "(MinMax)") if builder.fmt == "onnx" else \
            "NNCF static (transformer, mixed): int8 per-channel symmetric weights, int8 per-tensor activations"
        quantization = {"method": scheme, "calibration_windows": len(builder.calibration),
                        "kept_fp32": [HEAD_PATTERN, *keep], "kept_fp32_layers": kept_layers,
                        "matmuls_fp32": len(builder.excluded(keep + [n for k in kept_layers
                                                                      for n in builder.layers()[k]])),
                        "matmuls": len(builder.matmuls)}
    return folder, figures, quantization
