"""Benchmarks of the paper, each a registered :class:`Task`."""

from llamaforge.eval.tasks.base import (
    TASKS,
    DatasetSpec,
    EvalContext,
    Task,
    get_task,
    load_docs,
    register_task,
)

__all__ = ["TASKS", "DatasetSpec", "EvalContext", "Task", "get_task", "load_docs", "register_task"]
