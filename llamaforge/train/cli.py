"""``llamaforge train`` and ``llamaforge eval-loss``.

``llamaforge train`` is also what torchrun runs on every rank
(``torchrun --nproc_per_node N -m llamaforge train CONFIG``); only rank 0
prints and writes the report, which it generates from the final sharded
checkpoint gathered into one plain model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

DEFAULT_PROMPTS = ("The", "def ", "import numpy as np\n", "In this paper, we")


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="TOML config, e.g. configs/tiny-1m.toml")
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="section.field=value",
        help="override any config field, e.g. optim.lr=1e-3 train.max_steps=50",
    )  # fmt: skip
    add_run_flags(parser)
    parser.set_defaults(run=run_train)


# flag (argparse dest) -> the config override it stands for; see add_run_flags.
RUN_FLAG_OVERRIDES = {
    "allow_config_change": "checkpoint.allow_config_change=true",
    "restart_over_damaged": "checkpoint.restart_over_damaged=true",
    "fresh_run": "checkpoint.fresh_run=true",
    "skip_memory_check": "train.check_memory=false",
}


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The run-control flags of ``llamaforge train`` and ``llamaforge finetune``.

    One definition for both, because the errors of the shared trainer name
    these flags (``--fresh-run``, ``--allow-config-change``, ...) and must be
    right whichever command printed them. :func:`run_flag_overrides` turns
    them into config overrides.
    """
    parser.add_argument("--resume", help="'auto' (default from the config), 'never' or a folder")
    parser.add_argument(
        "--allow-config-change", action="store_true",
        help="resume although optim/model/data/seed/run length or finetune/LoRA settings "
        "differ from the checkpoint's (checkpoint.allow_config_change=true)",
    )  # fmt: skip
    parser.add_argument(
        "--restart-over-damaged", action="store_true",
        help="when every checkpoint is damaged, set them aside as damaged-step_* and start "
        "from step 0 (checkpoint.restart_over_damaged=true)",
    )  # fmt: skip
    parser.add_argument(
        "--fresh-run", action="store_true",
        help="start from step 0 in a run folder that holds an earlier run, moving that run "
        "into RUN/previous-<timestamp>/ (implies --resume never; checkpoint.fresh_run=true)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-memory-check", action="store_true",
        help="start even if the memory estimate says the model cannot fit "
        "(train.check_memory=false)",
    )  # fmt: skip
    parser.add_argument("--no-report", action="store_true", help="skip report.md at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_flag_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides the flags of :func:`add_run_flags` stand for, after the user's own."""
    overrides = list(args.overrides)
    if args.resume or args.fresh_run:
        overrides.append(f"checkpoint.resume={args.resume or 'never'!r}")
    overrides += [override for name, override in RUN_FLAG_OVERRIDES.items() if getattr(args, name)]
    return overrides


def run_train(args: argparse.Namespace) -> int:
    from llamaforge.train.config import load_train_config

    cfg = load_train_config(args.config, run_flag_overrides(args))
    check_token_sources(cfg)  # before the Trainer allocates the model
    return train_and_report(cfg, args, DEFAULT_PROMPTS)


def train_and_report(cfg, args: argparse.Namespace, prompts) -> int:
    """The run shared by ``llamaforge train`` and ``llamaforge finetune``."""
    from llamaforge.train.report import write_run_report
    from llamaforge.train.trainer import Trainer

    trainer = Trainer(cfg, progress=not args.quiet, hooks=benchmark_hooks(cfg))
    try:
        result = trainer.run()
    finally:
        trainer.close()
    if not trainer.is_main:
        return 0  # rank 0 speaks for the job
    print(  # the trainer's step count: a finetuning run in epochs learns it from the data
        f"{result.stopped_by}: step {result.steps}/{trainer.max_steps}, {result.tokens:,} tokens, "
        f"train loss {result.train_loss:.4f}"
        + (f", val loss {result.val_loss:.4f}" if result.val_loss is not None else "")
    )
    if result.stopped_by == "finished" and not args.no_report:
        model = trainer.model
        if trainer.dist is not None:  # sharded weights: gather the saved ones on this rank
            from llamaforge.formats.native import load_native

            model, _ = load_native(result.checkpoint, device=trainer.device)
        if not cfg.data.tokenizer and trainer.tokenizer_source:  # finetuning: init's tokenizer
            cfg.data.tokenizer = trainer.tokenizer_source
        report = write_run_report(cfg, result, model, prompts)
        print(f"report: {report}")
    return 0


def check_token_sources(cfg) -> None:
    """Refuse token folders of another tokenizer (checksum, vocabulary) than the config's.

    Checked against ``model.vocab_size`` and, when ``data.tokenizer`` names an
    existing file, against that tokenizer; see :mod:`llamaforge.data.token_check`.
    """
    from llamaforge.data.token_check import check_tokens_match

    tokenizer = cfg.data.tokenizer if cfg.data.tokenizer else None
    if tokenizer is not None and not Path(tokenizer).is_file():
        tokenizer = None  # nothing to compare with; the benchmarks hook reports it if needed
    for source in cfg.data.sources:
        check_tokens_match(source.path, cfg.model_config, tokenizer)


def benchmark_hooks(cfg) -> list:
    """The ``[benchmarks]`` hook, if the config asks for one.

    This is the one place where training reaches into ``llamaforge.eval``; the
    import is lazy so a run without benchmarks never loads it.
    """
    bench = cfg.benchmarks
    if not bench.tasks.strip():
        return []
    from llamaforge.errors import ConfigError

    if not cfg.data.tokenizer or not Path(cfg.data.tokenizer).is_file():
        raise ConfigError(
            f"benchmarks.tasks = {bench.tasks!r} needs the tokenizer: set data.tokenizer to the "
            f"SentencePiece model of the token data (got {cfg.data.tokenizer!r})"
        )
    from llamaforge.eval.during_training import TaskEvalHook
    from llamaforge.tokenizer import Tokenizer

    hook = TaskEvalHook(
        bench.tasks, Tokenizer(cfg.data.tokenizer), data_dir=bench.data_dir or None,
        limit=bench.limit or None, shots=None if bench.shots < 0 else bench.shots,
        batch_size=bench.batch_size, seed=cfg.train.seed,
    )  # fmt: skip
    return [hook]


def configure_eval_loss(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="model folder: native, training checkpoint, HF or Meta"
    )
    parser.add_argument("data", type=Path, help="token folder written by `llamaforge tokenize`")
    parser.add_argument("--seq-len", type=int, default=0, help="default: the model's max_seq_len")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-batches", type=int, default=0, help="0 = the whole folder")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.set_defaults(run=run_eval_loss)


def run_eval_loss(args: argparse.Namespace) -> int:
    from llamaforge.data.loader import sequential_batches
    from llamaforge.data.shards import TokenShards
    from llamaforge.data.token_check import check_tokens_match
    from llamaforge.errors import ConfigError
    from llamaforge.inference.loading import load_checkpoint
    from llamaforge.train.step import evaluate_loss

    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--seq-len", args.seq_len, 0),
                             ("--max-batches", args.max_batches, 0)):  # fmt: skip
        if value < low:
            raise ConfigError(f"{flag} must be an integer >= {low}, got {value}")
    TokenShards(args.data)  # checks the folder before the model is loaded
    model, tokenizer_path = load_checkpoint(args.checkpoint)
    check_tokens_match(args.data, model.config, tokenizer_path)
    limit = model.config.max_seq_len
    if args.seq_len > limit:
        raise ConfigError(
            f"--seq-len {args.seq_len} is longer than the model's max_seq_len {limit} "
            f"({args.checkpoint}); use --seq-len {limit} or less"
        )
    seq_len = args.seq_len or limit
    batches = _ids_within(
        sequential_batches(args.data, seq_len, args.batch_size), model.config.vocab_size, args.data
    )
    loss, tokens = evaluate_loss(
        model, batches, args.precision, max_batches=args.max_batches or None
    )
    print(f"loss {loss:.4f}  perplexity {math.exp(min(loss, 50.0)):.3f}  ({tokens:,} tokens)")
    return 0


def _ids_within(batches, vocab_size: int, folder: Path):
    """``batches`` unchanged, but a token id >= ``vocab_size`` is a one-line error, not a crash.

    The folder's index already promises ids below its own vocab size; this
    also catches shards whose content disagrees with their index.
    """
    from llamaforge.errors import DataError

    for inputs, targets in batches:
        top = max(int(inputs.max()), int(targets.max()))
        if top >= vocab_size:
            raise DataError(
                f"{folder} holds token id {top}, outside the model's vocab_size {vocab_size}; "
                "the shards are damaged or were made with another tokenizer: re-run tokenization"
            )
        yield inputs, targets
