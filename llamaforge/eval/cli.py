"""``llamaforge eval CHECKPOINT --tasks boolq,piqa``: the paper's benchmarks on a checkpoint.

The checkpoint may be any folder :func:`llamaforge.formats.load_any` reads
(native, Hugging Face or Meta); its ``tokenizer.model`` must sit next to the
weights, as for ``llamaforge generate``. The Markdown table is printed on
stdout (progress goes to stderr), and ``--out``/``--markdown`` keep the JSON
results and the table. ``--compare`` adds rows from earlier results files, so
checkpoints line up as in the paper's tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from llamaforge.errors import CheckpointError, ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model folder (native, HF or Meta)")
    parser.add_argument(
        "--tasks",
        required=True,
        help="comma-separated task names, groups (commonsense, reading, mmlu, closed_book, "
        "math_reasoning, code, responsible) or 'all'",
    )
    parser.add_argument("--shots", type=int, default=None, help="k-shot (default: each task's)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N docs")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="read DIR/<task>/<split>.jsonl instead of Hugging Face datasets",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234, help="few-shot draws and sampling")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0")
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        default="auto",
        help="auto: bfloat16 on a GPU that supports it, float32 otherwise",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="earlier results JSON to show as extra rows (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def device_and_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``auto`` means CUDA when present, in bfloat16 where the GPU supports it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"--device {device!r} is not a torch device: {error}") from None
    if dtype != "auto":
        return dev, DTYPES[dtype]
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return dev, torch.bfloat16
    return dev, torch.float32


def load_model_and_tokenizer(checkpoint: Path, device: str, dtype: str):
    """Model in eval mode and its SentencePiece tokenizer, from a checkpoint folder."""
    from llamaforge.formats import load_any
    from llamaforge.tokenizer import Tokenizer

    if not checkpoint.is_dir():
        raise CheckpointError(
            f"{checkpoint}: no such model folder; pass a folder written by `llamaforge train` "
            "or `llamaforge convert`"
        )
    dev, torch_dtype = device_and_dtype(device, dtype)
    model, tokenizer_path = load_any(checkpoint, device=dev, dtype=torch_dtype)
    if tokenizer_path is None:
        raise CheckpointError(
            f"{checkpoint} has no tokenizer.model; copy the tokenizer the model was trained "
            "with into the folder"
        )
    return model.eval(), Tokenizer(tokenizer_path)


def run(args: argparse.Namespace) -> int:
    from llamaforge.eval.report import markdown_report, read_results
    from llamaforge.eval.runner import evaluate_tasks, resolve_task_names, write_results

    names = resolve_task_names(args.tasks)  # fail on a typo before loading the model
    earlier = [read_results(path) for path in args.compare]
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, args.device, args.dtype)
    results = evaluate_tasks(
        model,
        tokenizer,
        names,
        shots=args.shots,
        limit=args.limit,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        seed=args.seed,
        checkpoint=args.checkpoint,
    )
    if args.out is not None:
        write_results(results, args.out)
    table = markdown_report([*earlier, results])
    if args.markdown is not None:
        from llamaforge.eval.report import atomic_write_text

        atomic_write_text(args.markdown, table)
    sys.stdout.write(table)
    sys.stdout.flush()
    return 0
