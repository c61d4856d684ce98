"""``llamaforge tokenize``: documents on disk -> a token folder the trainer reads.

Run once per source (one folder per Table 1 row) so each source gets its own
mixture weight in the training config. Running again into a finished folder
reuses it only when the inputs (path, size, mtime), the tokenizer and the
settings are those recorded in its ``index.json``; otherwise it is tokenized
again, atomically (see :mod:`llamaforge.data.tokenize_folder`). Input paths
are checked first, every time: a missing one is an error even when the output
is finished.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llamaforge.data.documents import list_input_files, read_documents
from llamaforge.data.tokenize_folder import describe_inputs, tokenize_to_shards
from llamaforge.errors import ConfigError


def load_tokenizer(path: str | Path) -> Any:
    """The project's SentencePiece wrapper; imported late so ``--help`` stays fast."""
    if not Path(path).is_file():
        raise ConfigError(
            f"--tokenizer {path} does not exist; train one with `llamaforge train-tokenizer`"
        )
    from llamaforge.tokenizer import Tokenizer

    return Tokenizer(str(path))


def run_tokenize(args: argparse.Namespace) -> int:
    if args.shard_tokens <= 0:
        raise ConfigError(f"--shard-tokens must be a positive integer, got {args.shard_tokens}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder path")
    tokenizer = load_tokenizer(args.tokenizer)
    files = list_input_files(args.inputs)
    index = tokenize_to_shards(
        read_documents(files, errors="skip" if args.skip_bad_lines else "raise"),
        tokenizer,
        out,
        shard_tokens=args.shard_tokens,
        progress=not args.no_progress,
        made_from={"inputs": describe_inputs(files), "skip_bad_lines": bool(args.skip_bad_lines)},
        report=print,
    )
    print(
        f"{args.out}: {index.n_tokens:,} tokens ({index.dtype}) from {index.n_docs:,} documents "
        f"in {len(index.shards)} shard(s); {index.n_empty_skipped} empty documents skipped"
    )
    return 0


def configure_tokenize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", help=".jsonl(.gz/.zst) or .txt files, or folders of them"
    )
    parser.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    parser.add_argument(
        "--out",
        required=True,
        help="output token folder (re-running reuses it only if inputs and settings are unchanged)",
    )
    parser.add_argument(
        "--shard-tokens", type=int, default=100_000_000, help="tokens per shard file"
    )
    parser.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip bad JSONL lines and non-UTF-8 .txt files (with a warning) instead of failing",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_tokenize)
