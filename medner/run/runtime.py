"""Exported models at prediction time: an ONNX Runtime or OpenVINO session runs encoder + head, the run's own
:class:`~medner.model.crf.ConstrainedCRF` decodes, behind the surface the Annotator uses (``scheme``,
``emissions``, ``decode_emissions``, ``to``, ``eval``).

The exported graph maps one window's tokens to tag scores at every token:
``input_ids``/``attention_mask`` ``(1, seq)`` int64 (+ ``lex`` ``(1, seq)``, lexicon feature ids per token, when
the run uses lexicon features) -> ``emissions`` ``(1, seq, n_tags)`` fp32.

Determinism: :meth:`ExportedTagger.emissions` runs every window of a batch as its own call on its own tokens
(the batch's padding cut off, nothing from the other rows), and picks the label-bearing positions afterwards. A
window's scores therefore cannot depend on which records share its batch: they are the same numbers alone or in
any batch. With static int8 scales (fixed at export) this holds for the quantised models too. (Measured on an
e5-small int8 model: OpenVINO's output for a window moves by up to 0.09 in a padded batch, so this matters.)
For OpenVINO a window is padded to the next multiple of 16 tokens (:data:`SHAPE_STEP`), which depends on
the window alone, so that few input shapes exist and its per-shape compilation is paid once per shape.

Threads: the session uses ``torch.get_num_threads()`` intra-op threads (one inter-op thread) when it opens, so
``--threads``/``torch.set_num_threads`` mean the same for torch and exported models. A process forked after
loading (spaCy ``n_process``) opens its own session on first use, with its own thread setting. OpenVINO runs
with ``INFERENCE_PRECISION_HINT=f32`` (otherwise it silently computes in bf16 on CPUs with bf16 units) and
without pinning threads to cores (workers of one machine would share a core).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from medner.errors import ModelError
from medner.labels import TagScheme
from medner.model.crf import ConstrainedCRF
from medner.model.tagger import Decoded, decode_emissions

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")
#: format -> the runtime package that runs it, the medner extra that installs it, the model file to open
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}
EXTRAS = {"onnx": "export", "openvino": "openvino"}
MODEL_FILES = {"onnx": "model.onnx", "openvino": "model.xml"}
#: windows are padded to a multiple of this many tokens: OpenVINO compiles kernels for every new input shape
#: (about +75% on that call), ONNX Runtime does not (padding would only cost arithmetic there)
SHAPE_STEP = {"onnx": 1, "openvino": 16}


def require_runtime(fmt: str, *, where: str | None = None, quantize: bool = False):
    """Import the runtime of ``fmt`` (and its quantisation tools with ``quantize``); a ModelError naming the
    extra to install when it is missing."""
    if fmt not in FORMATS:
        raise ModelError(f"unknown export format {fmt!r}", where=where, fix=f"use one of {', '.join(FORMATS)}")
    try:
        if fmt == "onnx":
            import onnxruntime as runtime  # optional dependency: medner[export]
            if quantize:
                import onnxruntime.quantization  # noqa: F401  optional dependency: medner[export]
        else:
            import openvino as runtime  # optional dependency: medner[openvino]
            if quantize:
                import nncf  # noqa: F401  optional dependency: medner[openvino]
    except ImportError as exc:
        raise ModelError(f"{fmt} models need {RUNTIMES[fmt]}, which is not installed ({exc.name} missing)",
                         where=where, fix=f"pip install 'medner[{EXTRAS[fmt]}]'") from None
    return runtime


def runtime_version(fmt: str) -> str:
    """``name version`` of the runtime that runs ``fmt`` (recorded in the exported directory)."""
    return f"{RUNTIMES[fmt]} {require_runtime(fmt).__version__}"


class Session:
    """One exported model opened for CPU inference: ``session(feeds) -> (1, seq, n_tags)`` float32 array.

    ``threads``: intra-op threads (inter-op: 1). ``feeds`` may hold inputs the graph does not take (they are
    left out), so callers need not know whether a graph has lexicon features."""

    def __init__(self, fmt: str, path: str | Path, threads: int) -> None:
        self.format = fmt
        self.path = Path(path)
        self.threads = threads
        runtime = require_runtime(fmt, where=str(path))
        try:
            if fmt == "onnx":
                self._run, self.inputs = _open_onnx(runtime, self.path, threads)
            else:
                self._run, self.inputs = _open_openvino(runtime, self.path, threads)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runtimes raise their own types for unreadable models
            raise ModelError(f"{RUNTIMES[fmt]} cannot open the exported model ({type(exc).__name__})",
                             where=str(path), fix="export the run again (`medner export RUN -o OUT`)") from None

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._run({name: feeds[name] for name in self.inputs})


def _open_onnx(ort, path: Path, threads: int) -> tuple[Callable, tuple[str, ...]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.use_deterministic_compute = True
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = tuple(i.name for i in session.get_inputs())
    return (lambda feeds: session.run(None, feeds)[0]), inputs


def _open_openvino(ov, path: Path, threads: int) -> tuple[Callable, tuple[str, ...]]:
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    inputs = tuple(port.get_any_name() for port in compiled.inputs)
    lock = threading.Lock()  # one request, reused: callers on several threads take turns

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with lock:
            request.infer(feeds)
            return request.get_output_tensor(0).data.copy()  # the request reuses its output buffer

    # its first inference sets up far more than any later one (~0.1 s): pay that while loading, not on a record
    ids = np.zeros((1, SHAPE_STEP["openvino"]), dtype=np.int64)
    run({name: ids if name != "attention_mask" else np.ones_like(ids) for name in inputs})
    return run, inputs


class ExportedTagger:
    """Encoder + head in an exported runtime, decoding by the run's CRF (see the module docstring).

    ``recheck``: called before another process (forked, or given a pickled copy) opens its own session from the
    files (the run directory's checksums: they were verified when it was loaded, and must still be the same)."""

    training = False

    def __init__(self, fmt: str, path: str | Path, scheme: TagScheme, crf: ConstrainedCRF | None, *,
                 pad_id: int = 0, max_tokens: int = 512, recheck: Callable[[], None] | None = None) -> None:
        self.format = fmt
        self.pad_id = pad_id
        self.max_tokens = max_tokens  # never padded beyond this (the encoder's positions)
        self.path = Path(path)
        self.scheme = scheme
        self.crf = crf.eval() if crf is not None else None
        self.recheck = recheck
        self._session: Session | None = None
        self._pid: int | None = None
        self._loaded_in = os.getpid()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(format={self.format!r}, path={str(self.path)!r}, tags={len(self.scheme)})"

    @property
    def session(self) -> Session:
        """The runtime session of this process (opened on first use, again in a forked process)."""
        if self._session is None or self._pid != os.getpid():  # in a forked child the parent's runtime threads
            if os.getpid() != self._loaded_in and self.recheck is not None:  # do not exist: it opens its own
                self.recheck()
            self._session = Session(self.format, self.path, torch.get_num_threads())
            self._pid = os.getpid()
            log.debug("opened %s session on %s with %d threads", self.format, self.path, self._session.threads)
        return self._session

    def __getstate__(self) -> dict:
        """Pickled without its session (another process opens its own)."""
        return {**self.__dict__, "_session": None, "_pid": None}

    def open(self) -> "ExportedTagger":
        """Open the session now (loading opens it, so that a broken model fails at load, not at first use)."""
        _ = self.session
        return self

    def to(self, device: torch.device | str) -> "ExportedTagger":
        """Exported models run on the CPU; any other device is an error."""
        if torch.device(device).type != "cpu":
            raise ModelError(f"exported ({self.format}) models run on the CPU, not on {device}", where=str(self.path),
                             fix="use device cpu (or auto), or load the torch run it was exported from")
        return self

    def eval(self) -> "ExportedTagger":
        return self

    def window_emissions(self, input_ids: Sequence[int] | torch.Tensor,
                         lex: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Tag scores at every token of one unpadded window: ``(seq,)`` ids (+ ``(seq,)`` lexicon ids per
        token) -> ``(seq, n_tags)`` fp32."""
        n = len(input_ids)
        step = SHAPE_STEP[self.format]
        size = max(n, min(-(-n // step) * step, self.max_tokens))  # a function of n alone
        # shape: (1, size) each; positions from n on are padding, masked out
        ids = np.full((1, size), self.pad_id, dtype=np.int64)
        ids[0, :n] = torch.as_tensor(input_ids, dtype=torch.long).numpy()
        mask = np.zeros_like(ids)
        mask[0, :n] = 1
        lex_ids = np.zeros_like(ids)
        if lex is not None:
            lex_ids[0, :n] = torch.as_tensor(lex, dtype=torch.long).numpy()
        feeds = {"input_ids": ids, "attention_mask": mask, "lex": lex_ids}
        return torch.from_numpy(np.asarray(self.session(feeds), dtype=np.float32)[0, :n])

    def emissions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, label_index: torch.Tensor,
                  lex: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`medner.model.tagger.Tagger.emissions`: ``(batch, n_labels, n_tags)`` fp32 at the
        label-bearing positions, each row computed alone (rows are right-padded, as ``collate`` makes them)."""
        batch, n_labels = label_index.shape
        out = torch.zeros((batch, n_labels, len(self.scheme)), dtype=torch.float32)
        lengths = attention_mask.sum(1).tolist()
        for row in range(batch):
            n = int(lengths[row])
            lex_tokens = None
            if lex is not None:
                # shape: (n,) lexicon ids moved from label positions to token positions (padding rows carry 0)
                lex_tokens = torch.zeros(n, dtype=torch.long)
                hits = lex[row] != 0
                lex_tokens[label_index[row][hits].cpu()] = lex[row][hits].cpu()
            tokens = self.window_emissions(input_ids[row, :n].cpu(), lex_tokens)
            out[row] = tokens[label_index[row].cpu().clamp(max=n - 1)]
        return out

    def decode_emissions(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[Decoded]:
        """CRF Viterbi + marginals (or softmax arg-max without a CRF), as the torch tagger decodes."""
        return decode_emissions(self.crf, emissions, mask)

