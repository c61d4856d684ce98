"""Run a list of benchmarks on one model and keep everything needed to trust the numbers.

The result is plain JSON: per task its metrics, how many documents were
scored, the shots, the split and dataset, and the paper table it belongs to;
plus the run itself (model config, checkpoint, versions, date, seed, limit),
since a number without its protocol cannot be compared with the paper's.

Task names may be given one by one, as ``"all"`` (every registered task), or
as a group: the name of a module in ``llamaforge/eval/tasks/`` (``commonsense``,
``reading``, ``mmlu``, ``closed_book``, ``math_reasoning``, ``code``,
``responsible``) stands for the tasks it defines.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

import llamaforge
from llamaforge.errors import ConfigError
from llamaforge.eval.precheck import PreparedTask, prepare_tasks
from llamaforge.eval.report import atomic_write_text
from llamaforge.eval.tasks.base import (
    BUILTIN_TASK_MODULES,
    TASKS,
    EvalContext,
    get_task,
    load_builtin_tasks,
)


def task_groups() -> dict[str, list[str]]:
    """Group name -> its task names, in registration order; ``all`` is every task."""
    load_builtin_tasks()
    groups: dict[str, list[str]] = {"all": list(TASKS)}
    for module in BUILTIN_TASK_MODULES:
        suffix = f".tasks.{module}"
        groups[module] = [name for name, cls in TASKS.items() if cls.__module__.endswith(suffix)]
    return groups


def resolve_task_names(names: str | Iterable[str]) -> list[str]:
    """Expand ``"boolq,commonsense"`` (or a list) into task names, without duplicates."""
    if isinstance(names, str):
        names = names.split(",")
    wanted = [n.strip() for n in names if n.strip()]
    if not wanted:
        raise ConfigError("no task given; pass --tasks NAME[,NAME...] (or 'all')")
    groups = task_groups()
    resolved: list[str] = []
    for name in wanted:
        for task in groups.get(name, [name]):
            get_task(task)  # unknown names fail here, listing the known ones
            if task not in resolved:
                resolved.append(task)
    return resolved


def is_code_task(name: str) -> bool:
    """Whether the task runs generated programs (and so needs the code sandbox)."""
    from llamaforge.eval.tasks.code import CodeTask

    return isinstance(get_task(name), CodeTask)


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The model's config as JSON-able fields, and its parameter count."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        fields = dataclasses.asdict(config)
    else:
        fields = dict(vars(config)) if config is not None else {}
    fields = {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool | None)}
    fields["parameters"] = sum(p.numel() for p in model.parameters())
    param = next(model.parameters(), None)
    fields["dtype"] = str(param.dtype).removeprefix("torch.") if param is not None else None
    return fields


def evaluate_tasks(
    model: nn.Module,
    tokenizer: Any,
    task_names: str | Sequence[str],
    *,
    shots: int | None = None,
    limit: int | None = None,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = True,
    seed: int = 1234,
    max_seq_len: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    unsafe_code_execution: bool = False,
    prepared: Sequence[PreparedTask] | None = None,
    on_partial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on each task; ``shots=None`` uses each task's paper default.

    Every task's records are read and checked first
    (:func:`llamaforge.eval.precheck.prepare_tasks`), so a bad record in a
    later task fails before anything is scored; pass ``prepared`` (from the
    same arguments) to reuse a check made before the model was loaded.

    Code tasks run generated programs only inside the OS sandbox
    (:mod:`llamaforge.eval.sandbox`) and refuse to run where it is
    unavailable, unless ``unsafe_code_execution``.

    ``limit`` scores only the first ``limit`` documents of each task (a quick
    check, not a number comparable with the paper's); the few-shot split is
    always read whole.

    If a task fails (or the run is interrupted) after others finished,
    ``on_partial`` gets the results of the finished ones, with a ``partial``
    field naming the failed task, the error and the tasks not run, before the
    error propagates: hours of scoring are not lost to the last task.
    """
    if shots is not None and shots < 0:
        raise ConfigError(f"--shots must be >= 0, got {shots}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    names = resolve_task_names(task_names)
    if prepared is None:
        prepared = prepare_tasks(
            names,
            shots=shots,
            limit=limit,
            data_dir=data_dir,
            seed=seed,
            unsafe_code_execution=unsafe_code_execution,
        )
    elif [p.name for p in prepared] != names:
        raise ValueError("prepared tasks do not match task_names")
    ctx = EvalContext(model, tokenizer, batch_size, max_seq_len, progress, seed)
    results: dict[str, Any] = {}

    def run_config() -> dict[str, Any]:
        return {
            "model": model_metadata(model),
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "tasks": names,
            "shots": shots,
            "limit": limit,
            "data_dir": str(data_dir) if data_dir is not None else None,
            "batch_size": batch_size,
            "seed": seed,
            "llamaforge_version": llamaforge.__version__,
            "torch_version": torch.__version__,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    for item in prepared:
        try:
            results[item.name] = _evaluate_one(ctx, item, progress)
        except BaseException as error:
            if on_partial is not None and results:
                partial = {
                    "failed_task": item.name,
                    "error": f"{type(error).__name__}: {error}",
                    "not_run": [p.name for p in prepared if p.name not in {*results, item.name}],
                }
                on_partial({"results": results, "config": run_config(), "partial": partial})
            raise
    return {"results": results, "config": run_config()}


def _evaluate_one(ctx: EvalContext, item: PreparedTask, progress: bool) -> dict[str, Any]:
    """One task's results entry: its metrics and the protocol they were measured with."""
    task, k, spec = item.task, item.shots, item.task.dataset
    started = time.perf_counter()
    if progress:
        tqdm.write(f"{item.name}: {len(item.docs)} documents, {k}-shot", file=sys.stderr)
    metrics = task.evaluate(ctx, item.docs, item.fewshot, k)
    entry: dict[str, Any] = {
        "metrics": metrics,
        "n": int(metrics.get("n", len(item.docs))),
        "shots": k,
        "split": spec.split,
        "fewshot_split": spec.fewshot_split if item.needs_pool else None,
        "dataset": spec.hf_path + (f"/{spec.hf_name}" if spec.hf_name else ""),
        "title": task.title or item.name,
        "table": task.table,
        "seconds": round(time.perf_counter() - started, 3),
    }
    columns = task.report_columns
    if columns:
        entry["columns"] = [list(c) for c in columns]
    return entry


def write_results(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``results`` as JSON atomically (temp file in the same folder, then rename)."""
    return atomic_write_text(path, json.dumps(results, indent=2) + "\n")
