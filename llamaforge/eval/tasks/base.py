"""The contract every benchmark implements, and where its documents come from.

A task is one benchmark of the paper (§3-§5): it knows its dataset (the
Hugging Face id and splits the paper's numbers are reported on), turns raw
records *in that dataset's own schema* into prompts, and scores them with the
paper's rule. Benchmarks cannot be downloaded at run time here, so the
documents come from, in order:

1. ``DATA_DIR/<task name>/<split>.jsonl`` when the user gives a data folder
   (one JSON object per line, exactly the fields of the Hugging Face dataset);
2. otherwise ``datasets.load_dataset(hf_path, hf_name, split=...)``, which
   uses the user's local Hugging Face cache (and the network where there is one).

Each record remembers where it was read (:class:`Doc`: ``path:line`` or the
dataset row), and errors about a record start with it. Integer labels
(:func:`integer_field`) are an int, a whole float or a string of ASCII digits
with at most one leading minus; ``True`` or ``1.5`` are errors, not the label 1
that ``int()`` would make. A JSONL line longer than :data:`MAX_RECORD_BYTES`
and a file with no records are errors too.

Tests write small JSONL files in the real schemas and go through path 1.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from llamaforge.errors import ConfigError, DataError

# The longest JSONL line read: benchmark records here (a RACE article, a MATH solution, a
# TriviaQA rc.nocontext record) are tens of kB at most, and one 16 MB line took 2.6 GB.
MAX_RECORD_BYTES = 4 << 20
_INTEGER = re.compile(r"-?[0-9]+")


class Doc(dict):
    """A record as read, with where it came from (``path:line``, or a dataset row) for errors."""

    where = ""


def _doc(record: dict, where: str) -> Doc:
    doc = Doc(record)
    doc.where = where
    return doc


def located(doc: Any) -> str:
    """``"path:line: "`` of a record read by :func:`load_docs` (``""`` for other dicts)."""
    where = getattr(doc, "where", "")
    return f"{where}: " if where else ""


def get_field(task: str, doc: dict, name: str) -> Any:
    """``doc[name]``, or a :class:`DataError` naming the task, the field and the fields there are.

    Records must be in the Hugging Face dataset's own schema (see the module
    docstring); a renamed or missing field is the commonest data mistake.
    """
    if name not in doc:
        raise DataError(
            f"{located(doc)}task {task}: a record has no {name!r} field (fields: {sorted(doc)}); give records "
            "in the Hugging Face dataset's own schema"
        )
    return doc[name]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def text_field(task: str, doc: dict, name: str) -> str:
    """A string field: ``str()`` of ``None``, a number or a list would put "None" or "[...]"
    into a prompt, a program or a gold answer and score it silently."""
    value = get_field(task, doc, name)
    if not isinstance(value, str):
        raise DataError(
            f"{located(doc)}task {task}: {name}={_shown(value)} has type {type(value).__name__}, "
            "not a string; give records in the Hugging Face dataset's own schema"
        )
    return value


_FIELD: Any = object()  # "read doc[name]": None is a value that must be refused


def text_list_field(task: str, doc: dict, name: str, value: Any = _FIELD) -> list[str]:
    """A non-empty list of strings (``doc[name]``, or ``value`` read from inside it).

    ``"\n".join`` of a string would join its characters, a string of choices
    would be one choice per character, and ``str()`` of an element that is not
    a string would be scored as an answer, a choice or a test.
    """
    value = get_field(task, doc, name) if value is _FIELD else value
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise DataError(
            f"{located(doc)}task {task}: {name}={_shown(value)} must be a non-empty list of "
            "strings; give records in the Hugging Face dataset's own schema"
        )
    return value


def integer_field(task: str, doc: dict, name: str) -> int:
    """An integer label: an int, a whole float (1.0) or a string of digits ("2", SIQA's).

    ``True``, ``1.5`` and ``"1.5"`` are refused: ``int()`` would read them as
    1 and score the wrong answer silently. Only ASCII digits with at most one
    leading minus count (``str.isdigit`` accepts "²", which ``int()`` rejects).
    """
    value = get_field(task, doc, name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    if type(value) is not int:
        raise DataError(
            f"{located(doc)}task {task}: {name}={value!r} is not an integer label "
            "(an unlabelled split?)"
        )
    return value


@dataclass(frozen=True)
class DatasetSpec:
    """Where a task's documents live: a Hugging Face dataset id and its splits.

    ``fewshot_split`` is where k-shot examples are drawn from (None: the task
    has no few-shot pool and k must be 0).
    """

    hf_path: str
    hf_name: str | None = None
    split: str = "validation"
    fewshot_split: str | None = "train"


@dataclass
class EvalContext:
    """What every task needs to run: the model, its tokenizer and run options."""

    model: nn.Module
    tokenizer: Any
    batch_size: int = 8
    max_seq_len: int | None = None
    progress: bool = True
    seed: int = 1234


class Task(ABC):
    """One benchmark. Subclasses set the class attributes and implement :meth:`evaluate`."""

    name: ClassVar[str]
    dataset: ClassVar[DatasetSpec]
    default_shots: ClassVar[int] = 0
    # The paper table the task is reported in, e.g. "Table 3 (common sense reasoning)";
    # the Markdown report groups tasks by it.
    table: ClassVar[str] = "Other"
    # Column header in the report (the paper's spelling, e.g. "HellaSwag"); defaults to ``name``.
    title: ClassVar[str] = ""
    # (metric, header) pairs to show in the report; None shows the task's main metric.
    report_columns: ClassVar[tuple[tuple[str, str], ...] | None] = None

    def needs_fewshot_docs(self, shots: int) -> bool:
        """Whether ``shots`` examples must be read from ``dataset.fewshot_split``.

        Tasks with a fixed, published exemplar prompt (GSM8k's eight
        chain-of-thought examples) override this so no train split is needed.
        """
        return shots > 0

    @abstractmethod
    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        """Score ``docs`` (``shots`` examples drawn from ``fewshot_docs``); return metric -> value."""


TASKS: dict[str, type[Task]] = {}

# Modules under llamaforge/eval/tasks/ that register tasks when imported.
BUILTIN_TASK_MODULES = (
    "commonsense",  # BoolQ, PIQA, SIQA, HellaSwag, WinoGrande, ARC-e/c, OpenBookQA (Table 3)
    "reading",  # RACE-middle/high (Table 6)
    "mmlu",  # MMLU 5-shot (Table 9)
    "closed_book",  # NaturalQuestions, TriviaQA (Tables 4-5)
    "math_reasoning",  # GSM8k, MATH with maj1@k (Table 7)
    "code",  # HumanEval, MBPP pass@k (Table 8)
    "responsible",  # CrowS-Pairs, WinoGender, TruthfulQA, RealToxicityPrompts (Tables 11-14)
)


def load_builtin_tasks() -> None:
    """Import the built-in task modules so their ``@register_task`` classes are known."""
    import importlib

    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(f"llamaforge.eval.tasks.{module}")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its ``name`` to the runner and CLI."""
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"two tasks are registered as {cls.name!r}")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> Task:
    """An instance of the registered task ``name``; unknown names list the known ones."""
    if name not in TASKS:
        load_builtin_tasks()
    if name not in TASKS:
        known = ", ".join(sorted(TASKS)) or "(none registered)"
        raise ConfigError(f"unknown task {name!r}; known tasks: {known}")
    return TASKS[name]()


def load_docs(
    task: Task, split: str, *, data_dir: str | Path | None = None, limit: int | None = None
) -> list[dict]:
    """The raw records of ``task``'s ``split``: local JSONL first, else Hugging Face ``datasets``."""
    if data_dir is not None:
        path = Path(data_dir) / task.name / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(
                f"{path} does not exist: put the {task.dataset.hf_path} {split!r} split there as "
                "JSONL (one record per line, the dataset's own fields), or drop --data-dir to "
                "read it through Hugging Face datasets"
            )
        return _read_jsonl(path, limit)
    try:
        import datasets
    except ImportError as error:
        raise ConfigError(
            f"task {task.name}: reading {task.dataset.hf_path} needs `pip install datasets`, "
            "or pass --data-dir with local JSONL files"
        ) from error
    try:
        rows = datasets.load_dataset(task.dataset.hf_path, task.dataset.hf_name, split=split)
    except Exception as error:  # offline, unknown dataset, ...: say what to do instead
        raise DataError(
            f"task {task.name}: could not load {task.dataset.hf_path}"
            f"{'/' + task.dataset.hf_name if task.dataset.hf_name else ''} split {split!r} "
            f"({type(error).__name__}: {error}); pass --data-dir with "
            f"<dir>/{task.name}/{split}.jsonl instead"
        ) from error
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    where = f"{task.dataset.hf_path} {split!r} row"
    return [_doc(row, f"{where} {index}") for index, row in enumerate(rows, start=1)]


def _read_jsonl(path: Path, limit: int | None) -> list[dict]:
    docs: list[dict] = []
    with open(path, "rb") as f:
        lineno = 0
        while limit is None or len(docs) < limit:
            raw = f.readline(MAX_RECORD_BYTES + 1)  # bounded: never one huge line in memory
            if not raw:
                break
            lineno += 1
            if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
                raise DataError(
                    f"{path}:{lineno}: a line longer than {MAX_RECORD_BYTES:,} bytes; "
                    "benchmark records are far shorter (is this the right file?)"
                )
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except RecursionError:
                raise DataError(f"{path}:{lineno}: not a JSON line (nested too deeply)") from None
            except ValueError as error:
                raise DataError(f"{path}:{lineno}: not a JSON line ({error})") from error
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            docs.append(_doc(record, f"{path}:{lineno}"))
    if not docs and limit != 0:
        raise DataError(f"{path}: no records (an empty file); every task needs at least one")
    return docs
