"""Common sense reasoning (paper Table 3), and the multiple-choice task machinery it shares.

Prompts are lm-evaluation-harness 0.4's templates (named in each task's
docstring), because LLaMA-style numbers are reported with them. Every choice
is a continuation with a leading space (lm-eval's ``target_delimiter``), and
is ranked by its log-likelihood under the paper's rule (``method``):
normalised by its number of characters, except BoolQ and OpenBookQA
(normalised by the likelihood given ``"Answer:"``) and WinoGrande (partial
scoring). ``acc`` is that rule, ``acc_raw`` the plain sum of log-probs.

Few-shot examples (``shots`` > 0) are the task's own prompt followed by its
gold choice, drawn from the few-shot split with a generator seeded by
``(ctx.seed, task, position of the document)``, so a document gets the same
shots whatever ``limit`` is. The document itself is never its own shot.
Shots and question are separated by a blank line (lm-eval's ``"\\n\\n"``).

The multiple-choice machinery (:class:`MultipleChoiceTask`, few-shot
sampling, :func:`score_questions`) lives here, with its first users;
``reading`` and ``mmlu`` build on it.

Datasets are the Hub ids lm-eval 0.4 reads (Parquet, so ``datasets`` >= 4 can
load them): ``aps/super_glue`` is where the Hub's ``super_glue`` lives now,
``baber/piqa`` and ``lighteval/siqa`` are Parquet copies of ``piqa`` and
``social_i_qa`` with the same fields. ARC and OpenBookQA are scored on
``test`` (what the paper reports), the others on ``validation`` (their test
labels are not public).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.likelihood import loglikelihood
from llamaforge.eval.multiple_choice import (
    UNCONDITIONAL_CONTEXT,
    Method,
    best_choice,
    normalise_scores,
    winogrande_split,
)
from llamaforge.eval.tasks.base import DatasetSpec, EvalContext, Task, register_task

FEWSHOT_DELIMITER = "\n\n"
COMMONSENSE_TABLE = "Table 3: Common sense reasoning"


def get_field(task: str, doc: dict, name: str) -> Any:
    """``doc[name]``, or a :class:`DataError` naming the task and the missing field."""
    if name not in doc:
        raise DataError(
            f"task {task}: record has no field {name!r} (fields: {sorted(doc)}); the data must "
            "be in the Hugging Face dataset's own schema"
        )
    return doc[name]


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
    requests: list[tuple[str, str]] = []
    for q in questions:
        requests += q.requests
        if method == "answer":
            requests += [(UNCONDITIONAL_CONTEXT, cont) for _, cont in q.requests]
    results = loglikelihood(
        ctx.model,
        ctx.tokenizer,
        requests,
        batch_size=ctx.batch_size,
        progress=ctx.progress,
        max_seq_len=ctx.max_seq_len,
    )
    outcome, pos = [], 0
    for q in questions:
        n = len(q.requests)
        conditional = [lp for lp, _ in results[pos : pos + n]]
        pos += n
        unconditional: list[float] = []
        if method == "answer":
            unconditional = [lp for lp, _ in results[pos : pos + n]]
            pos += n
        continuations = [cont for _, cont in q.requests]
        scores = normalise_scores(method, continuations, conditional, unconditional)
        outcome.append((best_choice(scores) == q.gold, best_choice(conditional) == q.gold))
    return outcome


class MultipleChoiceTask(Task):
    """A task whose documents become a prompt, choices and a gold index (lm-eval style)."""

    title: ClassVar[str]
    method: ClassVar[Method] = "chars"
    table = COMMONSENSE_TABLE

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
            raise DataError(f"task {self.name}: gold answer {gold} is not one of {n} choices")
        return gold

    def question(self, doc: dict, shots: list[dict]) -> Question:
        prefix = "".join(self.fewshot_text(s) + FEWSHOT_DELIMITER for s in shots)
        requests = tuple((prefix + c, cont) for c, cont in self.doc_to_requests(doc))
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
        outcome = score_questions(ctx, questions, self.method)
        return {
            "acc": sum(right for right, _ in outcome) / len(outcome),
            "acc_raw": sum(raw for _, raw in outcome) / len(outcome),
            "n": len(outcome),
        }


def _label(task: str, doc: dict, name: str, offset: int = 0) -> int:
    value = get_field(task, doc, name)
    try:
        return int(value) - offset
    except (TypeError, ValueError):
        raise DataError(
            f"task {task}: {name}={value!r} is not a label (unlabelled split?)"
        ) from None


def _keyed_gold(task: str, doc: dict) -> int:
    """Index of ``answerKey`` in ``choices.label``: letters ("A") or digits ("1") both occur."""
    choices = get_field(task, doc, "choices")
    if not isinstance(choices, dict) or "label" not in choices:
        raise DataError(f"task {task}: choices must be {{'text': [...], 'label': [...]}}")
    labels = [str(x).strip() for x in choices["label"]]
    key = str(get_field(task, doc, "answerKey")).strip()
    if key in labels:
        return labels.index(key)
    if key.isdigit() and all(x.isalpha() for x in labels):
        return int(key) - 1
    if len(key) == 1 and key.isalpha() and all(x.isdigit() for x in labels):
        return ord(key.upper()) - ord("A")
    raise DataError(f"task {task}: answerKey {key!r} is not one of the labels {labels}")


def _choice_texts(task: str, doc: dict) -> list[str]:
    choices = get_field(task, doc, "choices")
    if not isinstance(choices, dict) or "text" not in choices:
        raise DataError(f"task {task}: choices must be {{'text': [...], 'label': [...]}}")
    return list(choices["text"])


@register_task
class BoolQ(MultipleChoiceTask):
    """lm-eval ``boolq``: ``"{passage}\\nQuestion: {question}?\\nAnswer:"`` -> `` no``/`` yes``."""

    name = "boolq"
    title = "BoolQ"
    dataset = DatasetSpec("aps/super_glue", "boolq", split="validation")
    method = "answer"

    def doc_to_text(self, doc: dict) -> str:
        passage, question = (
            get_field(self.name, doc, "passage"),
            get_field(self.name, doc, "question"),
        )
        return f"{passage}\nQuestion: {question}?\nAnswer:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" no", " yes"]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label")


@register_task
class PIQA(MultipleChoiceTask):
    """lm-eval ``piqa``: ``"Question: {goal}\\nAnswer:"`` -> `` {sol1}``/`` {sol2}``."""

    name = "piqa"
    title = "PIQA"
    dataset = DatasetSpec("baber/piqa", split="validation")

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {get_field(self.name, doc, 'goal')}\nAnswer:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + get_field(self.name, doc, "sol1"), " " + get_field(self.name, doc, "sol2")]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label")


@register_task
class SIQA(MultipleChoiceTask):
    """lm-eval ``social_iqa``: ``"Q: {context} {question}\\nA:"`` -> `` {answerA|B|C}``."""

    name = "siqa"
    title = "SIQA"
    dataset = DatasetSpec("lighteval/siqa", split="validation")

    def doc_to_text(self, doc: dict) -> str:
        context, question = (
            get_field(self.name, doc, "context"),
            get_field(self.name, doc, "question"),
        )
        return f"Q: {context} {question}\nA:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + get_field(self.name, doc, f"answer{x}") for x in "ABC"]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label", offset=1)  # "1".."3"


def hellaswag_clean(text: str) -> str:
    """lm-eval's clean-up of WikiHow artefacts: ``[title]`` ends a sentence, other tags go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


@register_task
class HellaSwag(MultipleChoiceTask):
    """lm-eval ``hellaswag``: ``"{activity_label}: {ctx_a} {Ctx_b}"`` -> `` {ending}``, cleaned."""

    name = "hellaswag"
    title = "HellaSwag"
    dataset = DatasetSpec("Rowan/hellaswag", split="validation")

    def doc_to_text(self, doc: dict) -> str:
        ctx_b = get_field(self.name, doc, "ctx_b").capitalize()
        context = get_field(self.name, doc, "ctx_a") + " " + ctx_b
        return hellaswag_clean(get_field(self.name, doc, "activity_label") + ": " + context)

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + hellaswag_clean(e) for e in get_field(self.name, doc, "endings")]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label")


@register_task
class WinoGrande(MultipleChoiceTask):
    """lm-eval ``winogrande``: partial scoring, the text after the blank given each filled prefix.

    The continuation is the same for both options, so the raw log-likelihood
    is already comparable: ``acc_raw`` equals ``acc`` by construction.
    """

    name = "winogrande"
    title = "WinoGrande"
    dataset = DatasetSpec("allenai/winogrande", "winogrande_xl", split="validation")
    method = "raw"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [get_field(self.name, doc, "option1"), get_field(self.name, doc, "option2")]

    def doc_to_requests(self, doc: dict) -> list[tuple[str, str]]:
        sentence = get_field(self.name, doc, "sentence")
        return [winogrande_split(sentence, option) for option in self.doc_to_choices(doc)]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "answer", offset=1)  # "1" / "2"


class _ARC(MultipleChoiceTask):
    """lm-eval ``arc_easy``/``arc_challenge``: ``"Question: {question}\\nAnswer:"`` -> `` {text}``."""

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {get_field(self.name, doc, 'question')}\nAnswer:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + text for text in _choice_texts(self.name, doc)]

    def doc_to_gold(self, doc: dict) -> int:
        return _keyed_gold(self.name, doc)


@register_task
class ARCEasy(_ARC):
    """ARC-Easy, test split (lm-eval ``arc_easy``)."""

    name = "arc_easy"
    title = "ARC-e"
    dataset = DatasetSpec("allenai/ai2_arc", "ARC-Easy", split="test")


@register_task
class ARCChallenge(_ARC):
    """ARC-Challenge, test split (lm-eval ``arc_challenge``)."""

    name = "arc_challenge"
    title = "ARC-c"
    dataset = DatasetSpec("allenai/ai2_arc", "ARC-Challenge", split="test")


@register_task
class OpenBookQA(MultipleChoiceTask):
    """lm-eval ``openbookqa``: ``"{question_stem}"`` -> `` {text}``, normalised by ``"Answer:"``."""

    name = "openbookqa"
    title = "OBQA"
    dataset = DatasetSpec("allenai/openbookqa", "main", split="test")
    method = "answer"

    def doc_to_text(self, doc: dict) -> str:
        return get_field(self.name, doc, "question_stem")

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + text for text in _choice_texts(self.name, doc)]

    def doc_to_gold(self, doc: dict) -> int:
        return _keyed_gold(self.name, doc)
