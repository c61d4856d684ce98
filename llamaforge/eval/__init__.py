"""Evaluation as the paper did it (§3-§5): benchmarks, their scoring rules, results and report.

Names are imported lazily, on first use, so ``import llamaforge.eval`` (or
reading one result file) does not pay for torch and every task module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_tasks": "llamaforge.eval.runner",
    "resolve_task_names": "llamaforge.eval.runner",
    "task_groups": "llamaforge.eval.runner",
    "write_results": "llamaforge.eval.runner",
    "markdown_report": "llamaforge.eval.report",
    "read_results": "llamaforge.eval.report",
    "loglikelihood": "llamaforge.eval.likelihood",
    "loglikelihood_rolling": "llamaforge.eval.likelihood",
    "MCExample": "llamaforge.eval.multiple_choice",
    "evaluate_multiple_choice": "llamaforge.eval.multiple_choice",
    "DatasetSpec": "llamaforge.eval.tasks.base",
    "EvalContext": "llamaforge.eval.tasks.base",
    "Task": "llamaforge.eval.tasks.base",
    "get_task": "llamaforge.eval.tasks.base",
    "load_docs": "llamaforge.eval.tasks.base",
    "register_task": "llamaforge.eval.tasks.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llamaforge.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
