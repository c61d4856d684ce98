"""``llamaforge convert SRC DST``: move a model between native, Hugging Face and Meta folders.

``--to gguf`` exports one llama.cpp file (``DST`` if it ends in ``.gguf``,
else ``DST/model.gguf``); it needs ``pip install llamaforge[gguf]``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from llamaforge.formats import FORMATS, OUTPUT_FORMATS, convert, detect_format

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="folder to read")
    parser.add_argument(
        "dst",
        help="folder to write: new or empty, unless --overwrite (gguf: a FILE.gguf, "
        "or a folder that gets model.gguf)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty DST: replaces only the files this format writes there "
        "(and stale shards of the same weight files); every other file is kept",
    )
    parser.add_argument(
        "--from",
        dest="src_format",
        choices=(*FORMATS, "auto"),
        default="auto",
        help="source format (default: detected from the files present)",
    )
    parser.add_argument(
        "--to",
        dest="dst_format",
        choices=OUTPUT_FORMATS,
        default="native",
        help="output format; gguf is for llama.cpp, export only (default: native)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="meta: model-parallel shards (1/2/4/8 for 7B/13B/33B/65B); hf: safetensors files",
    )
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="weights dtype of the output (default: keep the source dtype)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dst_format == "gguf":  # before the source is read: a missing package fails at once
        from llamaforge.formats.gguf import require_gguf

        require_gguf()
    src_format = detect_format(args.src) if args.src_format == "auto" else args.src_format
    dtype = DTYPES[args.dtype] if args.dtype else None
    out = convert(
        args.src,
        args.dst,
        src_format,
        args.dst_format,
        dtype=dtype,
        shards=args.shards,
        overwrite=args.overwrite,
    )
    if args.dst_format != "gguf" and not (out / "tokenizer.model").is_file():
        print(f"note: {args.src} has no tokenizer.model, so {out} has none", file=sys.stderr)
    print(f"converted {args.src} ({src_format}) -> {out} ({args.dst_format})", file=sys.stderr)
    return 0
