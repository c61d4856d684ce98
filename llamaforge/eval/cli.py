"""``llamaforge eval CHECKPOINT --tasks boolq,piqa``: the paper's benchmarks on a checkpoint.

The checkpoint may be any folder :func:`llamaforge.formats.load_any` reads
(native, Hugging Face or Meta); its ``tokenizer.model`` must sit next to the
weights, as for ``llamaforge generate``. The Markdown table is printed on
stdout (progress goes to stderr), and ``--out``/``--markdown`` keep the JSON
results and the table. ``--compare`` adds rows from earlier results files, so
checkpoints line up as in the paper's tables.

Everything that can be checked without the model is checked before it loads:
the task names, every task's records (:mod:`llamaforge.eval.precheck`), the
``--compare`` files and the output paths. An existing output file is
replaced only with ``--overwrite`` and only when it is an output of this
command (:mod:`llamaforge.eval.outputs`), as ``llamaforge convert`` does. If
a task fails after others finished, their results are still written to
``--out``/``--markdown`` (or printed), marked ``partial``, before the error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llamaforge.errors import ConfigError
from llamaforge.inference.loading import (
    add_device_arguments,
    load_checkpoint,
    load_model_and_tokenizer,
)


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
        "--overwrite",
        action="store_true",
        help="replace an existing --out/--markdown file, if it is an output of `llamaforge eval` "
        "(other files are never replaced)",
    )
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
    """Check everything that needs no model (module docstring), then load it and score."""
    from llamaforge.eval.outputs import MARKDOWN, RESULTS, check_outputs
    from llamaforge.eval.precheck import prepare_tasks
    from llamaforge.eval.report import read_results
    from llamaforge.eval.runner import evaluate_tasks, is_code_task, resolve_task_names
    from llamaforge.eval.sandbox import require_boundary

    names = resolve_task_names(args.tasks)  # fail on a typo before loading the model
    if any(is_code_task(name) for name in names):  # refuse before the model loads
        require_boundary(unsafe=args.unsafe_code_execution)
    if not args.checkpoint.is_dir():
        load_checkpoint(args.checkpoint)  # the missing-folder error, before reading any data
    earlier = [read_results(path) for path in args.compare]
    outputs = {"--out": (args.out, RESULTS), "--markdown": (args.markdown, MARKDOWN)}
    paths = check_outputs(outputs, args.compare, args.overwrite)
    if args.shots is not None and args.shots < 0:
        raise ConfigError(f"--shots must be >= 0, got {args.shots}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    prepared = prepare_tasks(
        names,
        shots=args.shots,
        limit=args.limit,
        data_dir=args.data_dir,
        seed=args.seed,
        unsafe_code_execution=args.unsafe_code_execution,
    )
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
        prepared=prepared,
        on_partial=lambda partial: _save_partial(args, paths, earlier, partial),
    )
    _save(args, paths, earlier, results)
    return 0


def _save(args: argparse.Namespace, paths: dict, earlier: list, results: dict) -> None:
    """Write ``--out`` and ``--markdown`` (at the paths checked before the run), print the table."""
    from llamaforge.eval.outputs import MARKDOWN, RESULTS, write_output
    from llamaforge.eval.report import markdown_report

    if "--out" in paths:
        text = json.dumps(results, indent=2) + "\n"
        write_output("--out", paths["--out"], text, RESULTS, args.overwrite)
    table = markdown_report([*earlier, results])
    if "--markdown" in paths:
        write_output("--markdown", paths["--markdown"], table, MARKDOWN, args.overwrite)
    sys.stdout.write(table)
    sys.stdout.flush()


def _save_partial(args: argparse.Namespace, paths: dict, earlier: list, results: dict) -> None:
    """Keep the finished tasks when a later one fails; never hide the error that stopped the run."""
    done = ", ".join(results["results"])
    try:
        _save(args, paths, earlier, results)
    except Exception as error:  # the task's error is re-raised by the caller
        print(f"llamaforge eval: could not save the finished tasks ({error})", file=sys.stderr)
        return
    where = " and ".join(str(paths[flag]) for flag in ("--out", "--markdown") if flag in paths)
    print(
        f"llamaforge eval: {results['partial']['failed_task']} failed; the finished tasks "
        f"({done}) are {'in ' + where + ', marked partial' if where else 'printed above'}",
        file=sys.stderr,
    )
