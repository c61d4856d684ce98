"""``llamaforge data``: ``build CONFIG.toml`` runs the pipeline; ``samples OUT`` writes dumps to try it.

``data samples`` also trains a small SentencePiece tokenizer
(``OUT/tokenizer.model``) on text already on this machine (the demo's local
corpus), so ``configs/data-sample.toml`` runs all four stages offline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SAMPLE_TOKENIZER = "tokenizer.model"


def run_build(args: argparse.Namespace) -> int:
    from llamaforge.data.build import build
    from llamaforge.data.build_config import load_build_config

    config = load_build_config(args.config)
    result = build(
        config, workers=args.workers, progress=not args.no_progress, config_path=args.config
    )
    print(f"report: {result.output / 'report.md'}")
    for name, row in result.report["sources"].items():
        tokens = f"{row['tokens']:,} tokens" if row["tokens"] is not None else "no tokens"
        kept = row["global_filter"]["kept_docs"] if row["global_filter"] else 0
        print(
            f"  {name}: {row['files']['done']}/{row['files']['total']} files, {kept:,} docs, {tokens}"
        )
    if result.failures:
        print(
            f"{len(result.failures)} task(s) failed (see report.md); fix and run again: "
            "finished files are kept",
            file=sys.stderr,
        )
        return 1
    if (result.output / "mixture.toml").is_file():
        print(f"mixture: {result.output / 'mixture.toml'}")
    return 0


def train_sample_tokenizer(out: Path, vocab_size: int) -> Path:
    """A small BPE tokenizer on local text (reused when present): enough to try a build."""
    path = out / SAMPLE_TOKENIZER
    if path.is_file():
        return path
    from llamaforge.data.local_corpus import iter_local_documents
    from llamaforge.tokenizer import train_tokenizer

    texts = [d.text for d in iter_local_documents(max_bytes=1_000_000)]
    train_tokenizer(path, texts=texts, vocab_size=vocab_size, progress=False)
    return path


def run_samples(args: argparse.Namespace) -> int:
    from llamaforge.data.sources.registry import SOURCES, available_samples, write_samples
    from llamaforge.errors import ConfigError

    available = available_samples()
    wanted = args.sources.split(",") if args.sources else available
    unknown = [n for n in wanted if n not in SOURCES]
    if unknown:
        raise ConfigError(f"--sources: unknown {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    missing = [n for n in wanted if n not in available]
    if missing:
        print(f"no sample writer (yet) for: {', '.join(missing)}", file=sys.stderr)
    out = Path(args.out)
    for name in (n for n in wanted if n in available):
        paths = write_samples(name, out / name, n_docs=args.n_docs, seed=args.seed)
        print(f"{name}: {len(paths)} file(s) in {out / name}")
    if args.tokenizer_vocab:
        print(f"tokenizer: {train_sample_tokenizer(out, args.tokenizer_vocab)}")
    return 0


def configure_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    build = sub.add_parser(
        "build", help="raw dumps -> filtered shards -> tokens -> mixture (restartable)"
    )
    build.add_argument(
        "config", help="data TOML (configs/data-llama.toml, configs/data-sample.toml)"
    )
    build.add_argument(
        "--workers", type=int, default=None, help="processes (overrides [build].workers)"
    )
    build.add_argument("--no-progress", action="store_true", help="hide progress bars")
    build.set_defaults(run=run_build)

    samples = sub.add_parser(
        "samples", help="write small sample dumps in each source's real format"
    )
    samples.add_argument("out", help="folder; one sub-folder per source")
    samples.add_argument("--n-docs", type=int, default=20, help="documents per source")
    samples.add_argument("--sources", default="", help="comma-separated names (default: all)")
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument(
        "--tokenizer-vocab",
        type=int,
        default=1000,
        help="vocabulary of the small tokenizer written as OUT/tokenizer.model (0: none)",
    )
    samples.set_defaults(run=run_samples)
