"""Benchmarks while pretraining, like the paper's Figure 2 (accuracy against tokens).

The trainer knows nothing about benchmarks (data flows data -> tokenizer ->
train -> eval): it calls the hooks it is given every
``benchmarks.every_steps`` steps (and before the first and after the last
step) with the live model and logs the returned numbers under
``split="tasks"``; ``llamaforge train`` builds this hook from the config's
``[benchmarks]`` section. This module
is the hook. It reuses :func:`llamaforge.eval.runner.evaluate_tasks`, so a
number logged during training is the number ``llamaforge eval`` prints for
the same checkpoint, task list, shots and limit.

Decisions:

* Task documents are read once, on the first call (``--data-dir`` layout or
  Hugging Face ``datasets``), so a missing file fails at the first evaluation,
  not hours in. Use ``limit`` to keep evaluation short relative to training.
* The model is put in eval mode for the call and restored afterwards; no
  gradients are kept. Under data/tensor parallelism every rank runs the same
  evaluation (sharded modules need all ranks in each forward); the trainer
  logs rank 0's numbers.
* Each task's main metric is logged as ``<task>/<metric>`` for every numeric
  metric (``hellaswag/acc``, ``hellaswag/acc_raw``, ``gsm8k/maj1@1``); the
  report plots the paper's metric per task.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from llamaforge.eval.runner import evaluate_tasks, resolve_task_names


class TaskEvalHook:
    """Evaluate ``tasks`` on the live model; the trainer decides when."""

    def __init__(
        self,
        tasks: str | Sequence[str],
        tokenizer: Any,
        *,
        data_dir: str | os.PathLike | None = None,
        limit: int | None = None,
        shots: int | None = None,
        batch_size: int = 8,
        seed: int = 1234,
    ) -> None:
        self.tasks = resolve_task_names(tasks)
        self.tokenizer = tokenizer
        self.data_dir = data_dir
        self.limit = limit
        self.shots = shots
        self.batch_size = batch_size
        self.seed = seed

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            out = evaluate_tasks(
                model,
                self.tokenizer,
                self.tasks,
                shots=self.shots,
                limit=self.limit,
                data_dir=self.data_dir,
                batch_size=self.batch_size,
                progress=False,
                seed=self.seed,
            )
        finally:
            model.train(was_training)
        return flatten_results(out)


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """``{"<task>/<metric>": value}`` for every numeric metric of an ``evaluate_tasks`` result."""
    flat: dict[str, float] = {}
    for task, entry in results["results"].items():
        for metric, value in entry["metrics"].items():
            if metric != "n" and isinstance(value, int | float) and not isinstance(value, bool):
                flat[f"{task}/{metric}"] = float(value)
    return flat
