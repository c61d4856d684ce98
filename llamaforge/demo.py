"""``llamaforge demo``: the whole system on a laptop CPU, offline, in a few minutes.

Steps, each reused when its output already exists (so a second run resumes
or reuses instead of starting over):

1. gather a few MB of real text already on the machine (``data.local_corpus``);
2. train a SentencePiece BPE tokenizer on it (``runs/demo/tokenizer.model``);
3. tokenize it into memory-mapped shards (``runs/demo/tokens``);
4. pretrain a tiny LLaMA with the paper's recipe (``configs/demo.toml``),
   resuming from the newest checkpoint if one exists;
5. write ``runs/demo/report.md`` with the loss curve, figures and samples.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"
PROMPTS = ("The", "import os\n", "def main(", "This package provides", "# Copyright")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument(
        "--config", type=Path, default=DEMO_CONFIG, help="default: configs/demo.toml"
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="section.field=value",
        help="override config fields, e.g. train.max_steps=50",
    )  # fmt: skip
    parser.add_argument("--corpus-mb", type=float, default=8.0, help="text to gather (MB)")
    parser.add_argument("--fresh", action="store_true", help="delete the run folder first")
    parser.set_defaults(run=run)


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run(args: argparse.Namespace) -> int:
    from llamaforge.data.local_corpus import describe_sources, iter_local_documents
    from llamaforge.data.tokenize_folder import tokenize_to_shards
    from llamaforge.errors import ConfigError
    from llamaforge.tokenizer import Tokenizer, train_tokenizer
    from llamaforge.train.config import load_train_config
    from llamaforge.train.report import write_run_report
    from llamaforge.train.trainer import Trainer

    started = time.perf_counter()
    run_dir: Path = args.run_dir
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.config.is_file():
        raise ConfigError(f"{args.config}: demo config not found; pass --config PATH")
    tokenizer_path, tokens_dir = run_dir / "tokenizer.model", run_dir / "tokens"
    cfg = load_train_config(args.config, [
        f"data.tokenizer={str(tokenizer_path)!r}",
        f"data.sources=[{{path = {str(tokens_dir)!r}, weight = 1.0}}]",
        f"train.run_dir={str(run_dir)!r}",
        *args.overrides,
    ])  # fmt: skip

    _say(f"1/5 corpus: {describe_sources()}")
    documents = [d.text for d in iter_local_documents(max_bytes=int(args.corpus_mb * 1e6))]
    # Interleave prose and code so the held-out tail is a fair sample of both.
    random.Random(cfg.data.seed).shuffle(documents)
    _say(f"    {len(documents)} documents, {sum(map(len, documents)) / 1e6:.1f} M characters")

    if tokenizer_path.is_file():
        tokenizer = Tokenizer(tokenizer_path)
        _say(f"2/5 tokenizer: reusing {tokenizer_path}")
    else:
        _say(f"2/5 tokenizer: training BPE, vocabulary {cfg.model_config.vocab_size}")
        tokenizer = train_tokenizer(
            tokenizer_path, texts=documents, vocab_size=cfg.model_config.vocab_size
        )

    _say(f"3/5 tokens: {tokens_dir}")
    index = tokenize_to_shards(documents, tokenizer, tokens_dir)
    _say(
        f"    {index.n_tokens:,} tokens ({sum(map(len, documents)) / index.n_tokens:.2f} chars/token)"
    )

    _say(f"4/5 pretraining {cfg.model_config.num_params() / 1e6:.2f}M parameters for "
         f"{cfg.max_steps} steps of {cfg.data.batch_tokens:,} tokens (resumes if interrupted)")  # fmt: skip
    trainer = Trainer(cfg)
    result = trainer.run()
    if result.stopped_by != "finished":
        _say(f"stopped by {result.stopped_by} at step {result.steps}; run `make demo` to resume")
        return 1

    _say("5/5 report with samples")
    report = write_run_report(cfg, result, trainer.model, PROMPTS, title="llamaforge demo run")
    fell = (
        f"validation loss {result.initial_val_loss:.3f} -> {result.val_loss:.3f}"
        if result.val_loss is not None and result.initial_val_loss is not None
        else f"training loss {result.train_loss:.3f}"
    )
    _say(f"done in {time.perf_counter() - started:.0f} s: {fell}; report: {report}")
    return 0
