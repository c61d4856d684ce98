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
from llamaforge.umask import make_temp_file

MISSING = "-"


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
            "Scored on the first documents of each task only, not comparable with the paper: "
            + ", ".join(limited)
            + "."
        )
    crowded = _fitting_notes(runs, labels)
    if crowded:
        sections.append(
            "Prompts that did not fit the context (few-shot examples dropped; cut from the "
            "left only where 0 shots did not fit either): " + "; ".join(crowded) + "."
        )
    return "\n\n".join(sections) + "\n"


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


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file in the same folder and ``os.replace``.

    A crash mid-write leaves the previous file (or none), never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp_file(path.parent, f".{path.name}.", ".tmp")  # umask, not 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results file of ``llamaforge eval --out``, checked enough to report from."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: bad JSON, UTF-8, digits
        raise DataError(f"{path}: cannot read results JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise DataError(f"{path}: not a results file of `llamaforge eval` (no 'results' object)")
    return data
