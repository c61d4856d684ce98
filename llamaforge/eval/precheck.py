"""Read and check every requested task's records before the model is loaded.

A bad record in the fifth task of ``--tasks all`` used to surface after the
first four had been scored, often as a raw ``TypeError`` from the tokenizer.
:func:`prepare_tasks` instead reads each task's documents (and the few-shot
pool it draws from) and builds, without any model, what the task builds from
them before scoring: the prompts, choices and gold answers with the same
seeded shot draws as the run. Any record that cannot be turned into those
fails here, naming the record (``path:line``) and the task.

The checks call the tasks' own record readers (``question``,
``gold_answers``, ``winogender_records``, ...), so they refuse exactly what
the run would refuse, only earlier. A task may define ``check_docs(docs, fewshot_docs, shots, seed)`` to replace
the built-in check for its kind; tasks of an unknown kind get only the
generic ones (documents present, few-shot pool available).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llamaforge.errors import ConfigError, DataError, LlamaforgeError
from llamaforge.eval.tasks.base import Task, get_task, load_docs, located, text_field


@dataclass
class PreparedTask:
    """One task ready to score: its instance, shots and the documents already checked."""

    name: str
    task: Task
    shots: int
    docs: list[dict]
    fewshot: list[dict]
    needs_pool: bool


def prepare_tasks(
    names: Sequence[str],
    *,
    shots: int | None,
    limit: int | None,
    data_dir: str | os.PathLike | None,
    seed: int,
    unsafe_code_execution: bool = False,
) -> list[PreparedTask]:
    """Load and check the records of every task in ``names`` (module docstring)."""
    from llamaforge.eval.tasks.code import CodeTask

    prepared = []
    for name in names:
        task = get_task(name)
        if isinstance(task, CodeTask):
            task.unsafe_code_execution = unsafe_code_execution
        k = task.default_shots if shots is None else shots
        spec = task.dataset
        needs_pool = task.needs_fewshot_docs(k)
        if needs_pool and spec.fewshot_split is None:
            raise ConfigError(f"task {name} has no few-shot split; run it with --shots 0")
        docs = load_docs(task, spec.split, data_dir=data_dir, limit=limit)
        fewshot = load_docs(task, spec.fewshot_split, data_dir=data_dir) if needs_pool else []
        if not docs:
            raise DataError(f"task {name}: no documents to evaluate in split {spec.split!r}")
        check_docs(task, docs, fewshot, k, seed)
        prepared.append(PreparedTask(name, task, k, docs, fewshot, needs_pool))
    return prepared


def check_docs(task: Task, docs: list[dict], fewshot: list[dict], shots: int, seed: int) -> None:
    """Build everything ``task`` builds from the records before scoring; raise on a bad one."""
    custom = getattr(task, "check_docs", None)
    if callable(custom):
        custom(docs, fewshot, shots, seed)
        return
    from llamaforge.eval.tasks.mmlu import MMLU

    if isinstance(task, MMLU):
        _mmlu(task, docs, fewshot, shots)
        return
    checker = _checker(task)
    if checker is None:
        return
    rng = random.Random(seed)
    for index, doc in enumerate(docs):
        _guarded(task, doc, lambda d=doc, i=index: checker(task, d, fewshot, shots, seed, i, rng))


def _guarded(task: Task, doc: dict, check: Callable[[], Any]) -> None:
    """Run ``check``; an error that is not already a user error becomes one naming the record."""
    try:
        check()
    except LlamaforgeError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
        raise DataError(
            f"{located(doc)}task {task.name}: cannot build a prompt from this record "
            f"({type(error).__name__}: {error}); give records in the Hugging Face dataset's "
            "own schema"
        ) from error


def _strings(task: Task, doc: dict, what: str, values: Sequence[Any]) -> None:
    for value in values:
        if not isinstance(value, str):
            raise DataError(
                f"{located(doc)}task {task.name}: a {what} is {type(value).__name__} "
                f"({value!r:.60}), not a string; a field of this record is null or of the "
                "wrong type"
            )


def _multiple_choice(task, doc, fewshot, shots, seed, index, rng) -> None:
    from llamaforge.eval.tasks.choice_task import sample_fewshot

    examples = sample_fewshot(fewshot, shots, seed=seed, key=f"{task.name}/{index}", exclude=doc)
    question = task.question(doc, examples)
    _strings(task, doc, "prompt or choice", [s for pair in question.requests for s in pair])


def _mmlu(task: Task, docs: list[dict], fewshot: list[dict], shots: int) -> None:
    """All questions at once (the few-shot pool is grouped once); a failure is then located."""
    try:
        questions = task.questions(docs, fewshot, shots)
    except LlamaforgeError:
        raise
    except Exception:
        for doc in docs:  # find the record: one question at a time over the same pool
            _guarded(task, doc, lambda d=doc: task.questions([d], fewshot, shots))
        raise
    for doc, question in zip(docs, questions, strict=True):
        _strings(task, doc, "prompt", [s for pair in question.requests for s in pair])


def _closed_book(task, doc, fewshot, shots, seed, index, rng) -> None:
    from llamaforge.eval.generation import draw_shots

    task.question(doc)
    _strings(task, doc, "gold answer", task.gold_answers(doc))
    _strings(task, doc, "prompt", [task.prompt(doc, draw_shots(fewshot, shots, rng, doc))])


def _code(task, doc, fewshot, shots, seed, index, rng) -> None:
    if len(fewshot) < shots:
        raise DataError(f"task {task.name}: {shots} shots asked, {len(fewshot)} given")
    _strings(task, doc, "prompt", [task.prompt(doc, fewshot[:shots]), task.program(doc, "")])


def _majority_vote(task, doc, fewshot, shots, seed, index, rng) -> None:
    task.gold(doc)
    _strings(task, doc, "prompt", [task.prompt(doc, task.examples(doc, fewshot, shots, rng))])


def _crows_pairs(task, doc, fewshot, shots, seed, index, rng) -> None:
    from llamaforge.eval.tasks.responsible import crows_stereotypical_pair

    _strings(task, doc, "sentence", crows_stereotypical_pair(doc)[:2])


def _winogender(task, doc, fewshot, shots, seed, index, rng) -> None:
    from llamaforge.eval.winogender import winogender_records

    winogender_records([doc])


def _truthfulqa(task, doc, fewshot, shots, seed, index, rng) -> None:
    from llamaforge.eval.tasks.fields import binary_labels, target_choices

    text_field(task.name, doc, "question")
    for key in ("mc1_targets", "mc2_targets"):
        choices, labels = target_choices(task.name, doc, key)
        binary_labels(task.name, doc, key, labels, len(choices))


def _toxicity(task, doc, fewshot, shots, seed, index, rng) -> None:
    task.prompt_text(doc)


def _checker(task: Task) -> Callable[..., None] | None:
    """The check for ``task``'s kind, or None for a kind this module does not know."""
    from llamaforge.eval.tasks import responsible
    from llamaforge.eval.tasks.choice_task import MultipleChoiceTask
    from llamaforge.eval.tasks.closed_book import ClosedBookQA
    from llamaforge.eval.tasks.code import CodeTask
    from llamaforge.eval.tasks.math_reasoning import MajorityVoteTask

    kinds: list[tuple[type, Callable[..., None]]] = [
        (MultipleChoiceTask, _multiple_choice),
        (ClosedBookQA, _closed_book),
        (CodeTask, _code),
        (MajorityVoteTask, _majority_vote),
        (responsible.CrowSPairs, _crows_pairs),
        (responsible.WinoGender, _winogender),
        (responsible.TruthfulQAMC, _truthfulqa),
        (responsible.RealToxicityPrompts, _toxicity),
    ]
    return next((check for kind, check in kinds if isinstance(task, kind)), None)
