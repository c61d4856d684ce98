"""The multiple-choice task machinery shared by commonsense, reading and MMLU tasks.

A :class:`MultipleChoiceTask` turns each record into a prompt, choices and a
gold index (lm-eval 0.4 style), and its choices are ranked by
:func:`llamaforge.eval.multiple_choice.rank_request_groups` under the paper's
normalisation rule.

Few-shot examples (``shots`` > 0) are the task's own prompt followed by its
gold choice, drawn from the few-shot split with a generator seeded by
``(ctx.seed, task, position of the document)``, so a document gets the same
shots whatever ``limit`` is. The document itself is never its own shot.
Shots and question are separated by a blank line (lm-eval's ``"\\n\\n"``).

A choice with no characters cannot be normalised by its length, so under
``"chars"`` it is an error naming the record before anything is scored. A
question whose gold choice reads exactly like another choice (PIQA with
``sol1 == sol2``) is the dataset's own answer key, so it is scored, but the
two have the same likelihood and the tie goes to the lower index: the run
warns, naming the first such record, and reports how many there were as
``choices_duplicated`` (absent when 0).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import ClassVar

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.multiple_choice import Method, accuracy, choice_chars, rank_request_groups
from llamaforge.eval.tasks.base import EvalContext, Task, located

FEWSHOT_DELIMITER = "\n\n"


def sample_fewshot(
    pool: list[dict], shots: int, *, seed: int, key: str, exclude: dict
) -> list[dict]:
    """``shots`` records of ``pool`` other than ``exclude``, the same for the same seed and key."""
    if shots < 0:
        raise ConfigError(f"shots must be >= 0, got {shots}")
    if shots == 0:
        return []
    rng = random.Random(f"{seed}/{key}")
    picked = rng.sample(range(len(pool)), min(len(pool), shots + 1))
    chosen = [pool[i] for i in picked if pool[i] != exclude][:shots]
    if len(chosen) < shots:
        raise ConfigError(
            f"{key}: {shots} shots asked but the few-shot split has only {len(chosen)} other "
            "examples; lower --shots"
        )
    return chosen


@dataclass(frozen=True)
class Question:
    """One item as a ``(context, continuation)`` request per choice, and the gold index."""

    requests: tuple[tuple[str, str], ...]
    gold: int


def score_questions(
    ctx: EvalContext, questions: list[Question], method: Method
) -> list[tuple[bool, bool]]:
    """``(right under method, right by raw log-likelihood)`` per question, in one batched pass."""
    return rank_request_groups(
        ctx.model,
        ctx.tokenizer,
        [q.requests for q in questions],
        [q.gold for q in questions],
        method,
        batch_size=ctx.batch_size,
        progress=ctx.progress,
        max_seq_len=ctx.max_seq_len,
    )


class MultipleChoiceTask(Task):
    """A task whose documents become a prompt, choices and a gold index (lm-eval style)."""

    title: ClassVar[str]
    method: ClassVar[Method] = "chars"

    def doc_to_text(self, doc: dict) -> str:
        raise NotImplementedError

    def doc_to_choices(self, doc: dict) -> list[str]:
        raise NotImplementedError

    def doc_to_gold(self, doc: dict) -> int:
        raise NotImplementedError

    def doc_to_requests(self, doc: dict) -> list[tuple[str, str]]:
        text = self.doc_to_text(doc)
        return [(text, choice) for choice in self.doc_to_choices(doc)]

    def fewshot_text(self, doc: dict) -> str:
        """The document with its gold answer, as a shot."""
        context, continuation = self.doc_to_requests(doc)[self.checked_gold(doc)]
        return context + continuation

    def checked_gold(self, doc: dict) -> int:
        gold, n = self.doc_to_gold(doc), len(self.doc_to_choices(doc))
        if not 0 <= gold < n:
            raise DataError(
                f"{located(doc)}task {self.name}: gold answer {gold} is not one of {n} choices"
            )
        return gold

    def question(self, doc: dict, shots: list[dict]) -> Question:
        prefix = "".join(self.fewshot_text(s) + FEWSHOT_DELIMITER for s in shots)
        requests = tuple((prefix + c, cont) for c, cont in self.doc_to_requests(doc))
        if self.method == "chars" and any(choice_chars(cont) == 0 for _, cont in requests):
            raise DataError(
                f"{located(doc)}task {self.name}: an empty choice (nothing to normalise its "
                "likelihood by); every choice needs text"
            )
        return Question(requests, self.checked_gold(doc))

    def questions(
        self, docs: list[dict], fewshot_docs: list[dict], shots: int, seed: int
    ) -> list[Question]:
        return [
            self.question(
                doc,
                sample_fewshot(fewshot_docs, shots, seed=seed, key=f"{self.name}/{i}", exclude=doc),
            )
            for i, doc in enumerate(docs)
        ]

    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        if not docs:
            raise DataError(f"task {self.name}: no documents to evaluate")
        questions = self.questions(docs, fewshot_docs, shots, ctx.seed)
        duplicated = [doc for doc, q in zip(docs, questions, strict=True) if _gold_duplicated(q)]
        if duplicated:
            warnings.warn(
                f"{located(duplicated[0])}task {self.name}: the gold choice reads exactly like "
                f"another choice ({len(duplicated)} such questions); the tie goes to the lower "
                "index (counted as choices_duplicated)",
                stacklevel=2,
            )
        metrics = accuracy(score_questions(ctx, questions, self.method))
        if duplicated:
            metrics["choices_duplicated"] = len(duplicated)
        return metrics


def _gold_duplicated(question: Question) -> bool:
    """Whether another choice has the same request as the gold one (so the same score)."""
    return question.requests.count(question.requests[question.gold]) > 1
