"""`medner export`: a run directory as an ONNX Runtime or OpenVINO model directory (fp32 or static int8),
refused when its tag marginals drift from the source run's by more than --max-kl (mean KL per token) or its
spans agree with the source run's less than --min-span-agreement.

    medner export runs/ccks2019 -o runs/ccks2019-ov-int8 --quantize int8 --calibrate notes.jsonl
    medner export runs/ccks2019 -o runs/ccks2019-onnx --format onnx

The result loads wherever a run directory does (`medner predict/annotate/render --model`, `medner.load`, the
spaCy component); see medner/run/export.py for what is exported and how it is checked.
"""
from __future__ import annotations

import argparse
import json

from medner.errors import ConfigError

# the parser is built for every `medner` command: torch and the exporter are imported only when exporting;
# the same values as medner.run.runtime.FORMATS and medner.run.export.DEFAULT_FORMAT/DEFAULT_MAX_KL/
# DEFAULT_MIN_SPAN_AGREEMENT (a test checks)
FORMATS = ("onnx", "openvino")
DEFAULT_FORMAT = "openvino"
DEFAULT_MAX_KL = 0.05
DEFAULT_MIN_SPAN_AGREEMENT = 0.95


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run for ONNX Runtime or OpenVINO (fp32 or int8), with a KL check",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN", help="run directory written by `medner finetune` (LoRA or full encoder)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="exported run directory to write")
    p.add_argument("--format", default=DEFAULT_FORMAT, choices=FORMATS,
                   help="runtime: openvino (default; the faster int8 on the CPUs measured) or onnx (ONNX Runtime)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="static int8 with calibrated scales (needs --calibrate); default: fp32")
    p.add_argument("--calibrate", metavar="CORPUS", default=None,
                   help="records to calibrate int8 on and check the export against (every 4th held aside for the "
                        "check); default for fp32: the run's own dev (else training) files")
    p.add_argument("--calibrate-format", default="jsonl", metavar="FORMAT",
                   help="corpus format of --calibrate (default: jsonl)")
    p.add_argument("--encoding", default=None, help="text encoding of --calibrate, e.g. gb18030")
    p.add_argument("--max-kl", type=float, default=DEFAULT_MAX_KL,
                   help=f"refuse the export when the mean per-token KL(fp32 || export) of the tag marginals exceeds "
                        f"this (default: {DEFAULT_MAX_KL})")
    p.add_argument("--min-span-agreement", type=float, default=DEFAULT_MIN_SPAN_AGREEMENT,
                   help=f"refuse the export when its decoded spans on the check windows agree with the source run's "
                        f"(F1 of one against the other) less than this (default: {DEFAULT_MIN_SPAN_AGREEMENT}; 0: off)")
    p.add_argument("--keep-fp32", action="append", default=[], metavar="NAME_PART",
                   help="int8: also keep fp32 the matrix products whose graph name contains this, e.g. layer.11/ "
                        "(repeatable; the head always stays fp32)")
    p.add_argument("--max-fp32-layers", type=int, default=4,
                   help="int8 over --max-kl or under --min-span-agreement: keep up to this many of the most "
                        "sensitive encoder layers fp32 (default: 4; 0 = refuse at once)")
    p.add_argument("--calibration-windows", type=int, default=128,
                   help="at most this many calibration windows (at least 32)")
    p.add_argument("--check-windows", type=int, default=128, help="at most this many check windows (at least 16)")
    p.add_argument("--threads", type=int, default=None, help="torch and runtime threads while exporting")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export at OUT (only once the new export is complete; never a training run "
                        "or an encoder)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    import torch  # start-up time: `medner --help` must not import torch

    from medner.run.export import export_run  # start-up time: imports torch, transformers and the runtimes

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}", field="threads",
                              fix="leave it out (torch's default) or give a number of threads")
        torch.set_num_threads(args.threads)
    meta = export_run(args.run, args.output, fmt=args.format, quantize=args.quantize, calibrate=args.calibrate,
                      corpus_format=args.calibrate_format, encoding=args.encoding, max_kl=args.max_kl,
                      min_span_agreement=args.min_span_agreement,
                      keep_fp32=args.keep_fp32, max_fp32_layers=args.max_fp32_layers,
                      calibration_windows=args.calibration_windows, check_windows=args.check_windows,
                      overwrite=args.overwrite)
    check = meta["export"]["check"]
    print(json.dumps({"output": args.output, "format": meta["format"], "precision": meta["precision"],
                      "runtime": meta["runtime"], "fingerprint": meta["fingerprint"], **check}, ensure_ascii=False))
    return 0
