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

from llamaforge.inference.loading import add_device_arguments, load_model_and_tokenizer


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
    add_device_arguments(parser)
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
    parser.add_argument(
        "--unsafe-code-execution",
        action="store_true",
        help="run generated code (humaneval, mbpp) even where the OS sandbox (user namespaces, "
        "seccomp) is unavailable, with only in-process guards: use a throw-away VM",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from llamaforge.eval.report import markdown_report, read_results
    from llamaforge.eval.runner import (
        evaluate_tasks,
        is_code_task,
        resolve_task_names,
        write_results,
    )
    from llamaforge.eval.sandbox import require_boundary

    names = resolve_task_names(args.tasks)  # fail on a typo before loading the model
    if any(is_code_task(name) for name in names):  # refuse before the model loads
        require_boundary(unsafe=args.unsafe_code_execution)
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
        unsafe_code_execution=args.unsafe_code_execution,
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
