"""Record checks shared by the tasks, beyond :mod:`~llamaforge.eval.tasks.base`'s.

Each helper refuses a value that would otherwise be scored silently wrong
(a ``bool`` read as a class index, a label list that cannot be the answer
key, a gold answer that normalises to ``""`` and so matches an empty
completion) with a :class:`DataError` that starts with the record's
``path:line`` (:func:`~llamaforge.eval.tasks.base.located`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llamaforge.errors import DataError
from llamaforge.eval.tasks.base import get_field, located, text_list_field


def bad(doc: dict, task: str, message: str) -> DataError:
    """A :class:`DataError` for ``doc`` of ``task``: ``"path:line: task T: message"``."""
    return DataError(f"{located(doc)}task {task}: {message}")


def shown(value: Any) -> str:
    """``repr(value)``, cut to 80 characters for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def require_docs(task: str, docs: Sequence[dict]) -> None:
    """An empty document list is an error: a mean over it would divide by zero."""
    if not docs:
        raise DataError(f"task {task}: no documents to evaluate")


def class_name(task: str, doc: dict, field: str, value: Any, names: tuple[str, ...]) -> str:
    """A ClassLabel given as its name or its index; ``True``/``False`` are neither.

    ``isinstance(True, int)`` holds, so without the check ``true`` would be
    index 1 (CrowS-Pairs' "socioeconomic", "antistereo") and score silently.
    """
    if type(value) is int and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str) and value in names:
        return value
    raise bad(doc, task, f"{field}={shown(value)} must be one of {names} or its index")


def binary_labels(task: str, doc: dict, field: str, labels: Any, n_choices: int) -> list[int]:
    """One 0/1 int per choice with at least one 1 (TruthfulQA's ``labels``).

    ``"1" == 1`` is false, so string labels, a label 5 or no true answer at
    all would make every MC1/MC2 score 0 without an error.
    """
    if (
        not isinstance(labels, list)
        or len(labels) != n_choices
        or not all(type(label) is int and label in (0, 1) for label in labels)
        or 1 not in labels
    ):
        raise bad(
            doc,
            task,
            f"{field}.labels={shown(labels)} must be {n_choices} ints 0 or 1 (one per choice) "
            "with at least one 1 (a true answer)",
        )
    return labels


def target_choices(task: str, doc: dict, field: str) -> tuple[list[str], Any]:
    """``(choices, labels)`` of a ``{"choices": [...], "labels": [...]}`` field."""
    targets = get_field(task, doc, field)
    if not isinstance(targets, dict) or "choices" not in targets or "labels" not in targets:
        raise bad(
            doc, task, f"{field}={shown(targets)} must be {{'choices': [...], 'labels': [...]}}"
        )
    return text_list_field(task, doc, f"{field}.choices", targets["choices"]), targets["labels"]


def scoreable_golds(
    task: str, doc: dict, golds: list[str], normalise: Callable[[str], str]
) -> list[str]:
    """The gold answers that do not normalise to ``""``; an error if none is left.

    An alias such as ``""`` or ``"the"`` normalises to ``""``, which an empty
    completion (``","`` cut at the comma) matches: a free 1.0. Such aliases are
    dropped when another alias remains (real alias lists hold a few), and a
    record whose every answer is one of them cannot be scored.
    """
    kept = [gold for gold in golds if normalise(gold)]
    if not kept:
        raise bad(
            doc,
            task,
            f"every gold answer {shown(golds)} normalises to '' and would match an empty answer",
        )
    return kept
