"""Results as Markdown tables laid out like the paper's: one table per paper table.

Each task is reported under its ``table`` (e.g. "Table 3: Common sense
reasoning"), tasks are the columns and each results file (model) is a row,
so several checkpoints compare at a glance as in the paper. Numbers are
percentages with one decimal; every reported metric is a fraction in
[0, 1] (accuracy, exact match, pass@k).

Which metrics become columns: the task's ``columns`` in the results (MMLU:
the four categories and the average, as Table 9), else ``acc`` when the task
has one, else every metric but ``n``. When the same task was run with
different numbers of shots in the files given, it gets one column per shot
count ("NQ (5-shot)"), the layout of the paper's Tables 4 and 5. Tables come
in the paper's order (by their number). Notes under the tables say when a
run used ``--limit`` and, from a task's ``prompts_fewer_shots`` and
``prompts_truncated`` metrics, how many prompts lost few-shot examples or
were cut to fit the context.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llamaforge.errors import DataError
from llamaforge.umask import atomic_write_text  # noqa: F401 (runner and outputs import it from here)

MISSING = "-"
LIMITED_NOTE = "Scored on the first documents of each task only"
FITTING_NOTE = "Prompts that did not fit the context"
PARTIAL_NOTE = "Partial runs"
# How the report's notes begin (:func:`llamaforge.eval.outputs.looks_like_report` knows them).
NOTE_PREFIXES = (LIMITED_NOTE, FITTING_NOTE, PARTIAL_NOTE)


def run_label(run: Mapping[str, Any], index: int = 0) -> str:
    """A row name: the checkpoint folder's name, else the model config's name."""
    config = run.get("config", {})
    checkpoint = config.get("checkpoint")
    if checkpoint:
        return Path(checkpoint).name or str(checkpoint)
    name = config.get("model", {}).get("name")
    return name if name and name != "custom" else f"model {index + 1}"


def task_columns(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(metric, header)`` pairs reported for one task entry of a results file."""
    title = task.get("title", "?")
    if task.get("columns"):
        return [(metric, header) for metric, header in task["columns"]]
    metrics = task.get("metrics", {})
    if "acc" in metrics:
        return [("acc", title)]
    return [(m, f"{title} {m}") for m, v in metrics.items() if m != "n" and _is_number(v)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table_order(table: str) -> tuple[float, str]:
    number = re.search(r"\d+", table)
    return (int(number.group()) if number else float("inf"), table)


def markdown_report(
    runs: Mapping[str, Any] | Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None
) -> str:
    """Markdown for one results dict or several (one row each); ``labels`` name the rows."""
    runs = [runs] if isinstance(runs, Mapping) else list(runs)
    labels = list(labels) if labels is not None else [run_label(r, i) for i, r in enumerate(runs)]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} results")
    # table -> ordered (task, shots, metric, header)
    tables: dict[str, list[tuple[str, int, str, str]]] = {}
    shots_seen: dict[str, set[int]] = {}
    for run in runs:
        for task, entry in run["results"].items():
            shots_seen.setdefault(task, set()).add(entry.get("shots", 0))
            columns = tables.setdefault(entry.get("table", "Other"), [])
            for metric, header in task_columns(entry):
                key = (task, entry.get("shots", 0), metric, header)
                if key not in columns:
                    columns.append(key)
    sections = []
    for table in sorted(tables, key=_table_order):
        columns = tables[table]
        headers = [
            f"{header} ({shots}-shot)" if len(shots_seen[task]) > 1 else header
            for task, shots, _, header in columns
        ]
        lines = [
            f"## {table}",
            "",
            "| Model | " + " | ".join(headers) + " |",
            "| --- |" + " ---: |" * len(headers),
        ]
        for label, run in zip(labels, runs, strict=True):
            cells = [
                _cell(run["results"].get(task), shots, metric) for task, shots, metric, _ in columns
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    limited = [
        f"{lab} (--limit {r['config']['limit']})"
        for lab, r in zip(labels, runs, strict=True)
        if r.get("config", {}).get("limit")
    ]
    if limited:
        sections.append(
            f"{LIMITED_NOTE}, not comparable with the paper: " + ", ".join(limited) + "."
        )
    crowded = _fitting_notes(runs, labels)
    if crowded:
        sections.append(
            f"{FITTING_NOTE} (few-shot examples dropped; cut from the "
            "left only where 0 shots did not fit either): " + "; ".join(crowded) + "."
        )
    partial = _partial_notes(runs, labels)
    if partial:
        sections.append(f"{PARTIAL_NOTE}, stopped by an error: " + "; ".join(partial) + ".")
    return "\n\n".join(sections) + "\n"


def _partial_notes(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """ "run (piqa failed; not run: siqa)" for each run that stopped at an error."""
    notes = []
    for label, run in zip(labels, runs, strict=True):
        partial = run.get("partial")
        if isinstance(partial, Mapping):
            not_run = ", ".join(str(name) for name in partial.get("not_run") or [])
            rest = f"; not run: {not_run}" if not_run else ""
            notes.append(f"{label} ({partial.get('failed_task', '?')} failed{rest})")
    return notes


def _fitting_notes(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """ "MMLU (run, 5-shot): 3 of 14042 with fewer shots, 0 cut from the left" per such task."""
    notes = []
    for label, run in zip(labels, runs, strict=True):
        for entry in run["results"].values():
            metrics = entry.get("metrics", {})
            fewer, cut = metrics.get("prompts_fewer_shots", 0), metrics.get("prompts_truncated", 0)
            if _is_number(fewer) and _is_number(cut) and (fewer or cut):
                notes.append(
                    f"{entry.get('title', '?')} ({label}, {entry.get('shots', 0)}-shot): "
                    f"{fewer:g} of {metrics.get('n', entry.get('n', '?'))} with fewer shots, {cut:g} cut from the left"
                )
    return notes


def _cell(entry: Mapping[str, Any] | None, shots: int, metric: str) -> str:
    if entry is None or entry.get("shots", 0) != shots:
        return MISSING
    value = entry.get("metrics", {}).get(metric)
    return f"{100 * value:.1f}" if _is_number(value) else MISSING


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results file of ``llamaforge eval --out``, checked enough to report from.

    Every field :func:`markdown_report` reads is checked here, so a damaged
    ``--compare`` file fails before the model loads, naming the file and the
    field, rather than as a crash after the run.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: bad JSON, UTF-8, digits
        raise DataError(f"{path}: cannot read results JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise DataError(f"{path}: not a results file of `llamaforge eval` (no 'results' object)")
    for task, entry in data["results"].items():
        _check_entry(path, f"results.{task}", entry)
    config = _typed(path, "config", data.get("config", {}), dict, "an object")
    _typed(path, "config.checkpoint", config.get("checkpoint"), (str, type(None)), "a string")
    model = _typed(path, "config.model", config.get("model", {}), dict, "an object")
    _typed(path, "config.model.name", model.get("name"), (str, type(None)), "a string")
    if config.get("limit") is not None and not _is_count(config["limit"]):
        raise DataError(f"{path}: config.limit must be a whole number or null; {_REDO}")
    partial = _typed(path, "partial", data.get("partial", {}), dict, "an object")
    _typed(path, "partial.failed_task", partial.get("failed_task", ""), str, "a string")
    _typed(path, "partial.not_run", partial.get("not_run", []), list, "a list")
    return data


_REDO = "fix it or run `llamaforge eval --out` again"


def _typed(path: Path, field: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, types):
        raise DataError(
            f"{path}: {field} must be {what}, not {type(value).__name__} ({value!r:.60}); {_REDO}"
        )
    return value


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_entry(path: Path, field: str, entry: Any) -> None:
    """One task's entry: the fields the report reads, with the types it needs."""
    _typed(path, field, entry, dict, "an object (a task's metrics, shots, ...)")
    if "shots" in entry and not _is_count(entry["shots"]):
        raise DataError(f"{path}: {field}.shots must be a whole number >= 0; {_REDO}")
    for name in ("title", "table"):
        _typed(path, f"{field}.{name}", entry.get(name, ""), str, "a string")
    metrics = _typed(path, f"{field}.metrics", entry.get("metrics", {}), dict, "an object")
    for metric, value in metrics.items():
        if not _is_number(value):
            raise DataError(
                f"{path}: {field}.metrics.{metric} must be a number, not "
                f"{type(value).__name__} ({value!r:.60}); {_REDO}"
            )
    columns = _typed(path, f"{field}.columns", entry.get("columns") or [], list, "a list")
    for column in columns:
        if not (
            isinstance(column, list)
            and len(column) == 2
            and all(isinstance(c, str) for c in column)
        ):
            raise DataError(
                f"{path}: {field}.columns must be [metric, header] pairs of strings, "
                f"got {column!r:.60}; {_REDO}"
            )
