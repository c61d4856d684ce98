"""``llamaforge train-tokenizer``: text files -> a SentencePiece ``.model`` (+ ``.vocab``)."""

from __future__ import annotations

import argparse


def run_train(args: argparse.Namespace) -> int:
    from llamaforge.tokenizer.trainer import train_tokenizer

    tokenizer = train_tokenizer(
        args.output,
        files=args.input,
        vocab_size=args.vocab_size,
        character_coverage=args.character_coverage,
        max_sentence_length=args.max_sentence_length,
        input_sentence_size=args.input_sentence_size,
        hard_vocab_limit=not args.allow_smaller_vocab,
        num_threads=args.threads,
        progress=not args.no_progress,
        verbose=args.verbose,
    )
    sample = "LLaMA was trained on 1.4T tokens."
    pieces = [tokenizer.id_to_piece(i) for i in tokenizer.encode(sample, bos=False)]
    print(
        f"{tokenizer.model_path}: vocab_size {tokenizer.vocab_size} (unk {tokenizer.unk_id}, "
        f"bos {tokenizer.bos_id}, eos {tokenizer.eos_id}, pad {tokenizer.pad_id})\n"
        f"{sample!r} -> {pieces}"
    )
    return 0


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE",
        help='training text: .txt files (one document each), .jsonl files with a "text" field '
        "per line (.jsonl.gz/.jsonl.zst too), or folders of them; documents are fed line by line",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="PATH.model",
        help="tokenizer file to write (the .vocab listing is written beside it)",
    )
    parser.add_argument(
        "--vocab-size", type=int, default=32000, help="vocabulary size (LLaMA: 32000)"
    )
    parser.add_argument(
        "--character-coverage",
        type=float,
        default=0.99995,
        help="share of characters that get their own piece; the rest use byte fallback",
    )
    parser.add_argument(
        "--max-sentence-length",
        type=int,
        default=65536,
        help="lines longer than this many bytes are left out of training",
    )
    parser.add_argument(
        "--input-sentence-size",
        type=int,
        default=0,
        help="train on this many randomly sampled lines (0: all lines)",
    )
    parser.add_argument(
        "--allow-smaller-vocab",
        action="store_true",
        help="if the corpus is too small for --vocab-size, write a smaller vocabulary "
        "instead of failing",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="trainer threads (0: all usable cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", action="store_true", help="show SentencePiece's own log")
    parser.set_defaults(run=run_train)
