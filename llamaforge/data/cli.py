"""``llamaforge tokenize``: documents on disk -> a token folder the trainer reads.

Run once per source (one folder per Table 1 row) so each source gets its own
mixture weight in the training config.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llamaforge.data.documents import read_documents
from llamaforge.data.shards import tokenize_to_shards
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
    tokenizer = load_tokenizer(args.tokenizer)
    index = tokenize_to_shards(
        read_documents(args.inputs, errors="skip" if args.skip_bad_lines else "raise"),
        tokenizer,
        args.out,
        shard_tokens=args.shard_tokens,
        progress=not args.no_progress,
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
        "--out", required=True, help="output token folder (re-running skips finished work)"
    )
    parser.add_argument(
        "--shard-tokens", type=int, default=100_000_000, help="tokens per shard file"
    )
    parser.add_argument(
        "--skip-bad-lines", action="store_true", help="skip bad JSONL lines instead of failing"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_tokenize)
