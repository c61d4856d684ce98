"""Closed-book question answering: NaturalQuestions and TriviaQA (paper §3.3, Tables 4-5).

Prompt: the paper's format (its Appendix A figure), not lm-eval's::

    Answer these questions:
    Q: <shot question>?
    A: <shot answer>
    ...
    Q: <question>?
    A:

A question that does not end with "?" gets one (NQ-open questions never
have it; lm-eval adds it too). The completion is decoded greedily and cut
where the paper's Appendix A says, "at the first line break, final dot or
comma": generation stops at the first ``\n``, ``.`` or ``,`` (stop strings
``CLOSED_BOOK_STOP``, lm-eval's ``until`` for these tasks) and the same cut
is applied again when scoring
(:func:`~llamaforge.eval.answers.closed_book_answer`, which also covers a
completion that ended at the token limit or comes from elsewhere). The
answer is stripped and scored by exact match against any gold alias after
:func:`~llamaforge.eval.answers.normalize_answer` (the SQuAD/TriviaQA
normalisation: lowercase, no punctuation, no articles, single spaces).
A dot or comma inside an answer ("3.5", "St. Louis") ends it too, as in
lm-eval; ``docs/evaluation.md`` explains the choice.

Shots: the paper reports 0, 1, 5 and 64; the default is 0 (``--shots``
chooses). Examples are drawn at random from the training split per question
(seeded with ``EvalContext.seed``; see :func:`~llamaforge.eval.generation.draw_shots`
for how this differs from lm-eval's sampler). When the prompt with
all shots would not leave room for the answer in the context (64 shots do
not fit a 2048-token window for some questions), shots are dropped from the
end until it fits; the mean number actually used is reported as
``shots_used``, the number of questions asked with fewer shots as
``prompts_fewer_shots`` and the number cut from the left even at 0 shots as
``prompts_truncated`` (not columns of the Markdown report, which shows exact
match, but a note under its tables when not 0).

Data: NaturalQuestions is NQ-open (``google-research-datasets/nq_open``,
formerly ``nq_open``; {question, answer: [aliases]}), validation split (3,610
questions; the test set has no public answers). TriviaQA is
``mandarjoshi/trivia_qa`` ``rc.nocontext`` validation split, which is the
*filtered* dev set the paper reports on (the "rc" subset keeps questions whose
evidence documents contain the answer; "unfiltered" is the other one); gold
answers are ``answer.aliases`` plus ``answer.value``. A gold answer that
normalises to ``""`` (``""``, ``"the"``, ``"."``) would match an empty
completion, so it is dropped; a record left with none is an error
(:func:`~llamaforge.eval.tasks.fields.scoreable_golds`).
"""

from __future__ import annotations

import random
from typing import ClassVar

from llamaforge.errors import DataError
from llamaforge.eval.answers import (
    CLOSED_BOOK_STOP,
    closed_book_answer,
    exact_match,
    normalize_answer,
)
from llamaforge.eval.generation import (
    context_length,
    draw_shots,
    fit_shots,
    generate_completions,
    prompt_token_budget,
)
from llamaforge.eval.tasks.base import (
    DatasetSpec,
    EvalContext,
    Task,
    get_field,
    located,
    register_task,
    text_field,
    text_list_field,
)
from llamaforge.eval.tasks.fields import scoreable_golds
from llamaforge.inference import SamplingConfig

INSTRUCTION = "Answer these questions:"
# Answers are a few words; the stop strings usually end generation much earlier.
MAX_NEW_TOKENS = 32


class ClosedBookQA(Task):
    """Shared prompt, generation and scoring; subclasses say where question and answers are."""

    default_shots: ClassVar[int] = 0
    title: ClassVar[str]

    def question(self, doc: dict) -> str:
        text = text_field(self.name, doc, "question").strip()
        return text if text.endswith("?") else text + "?"

    def gold_answers(self, doc: dict) -> list[str]:
        raise NotImplementedError

    def shot_answer(self, doc: dict) -> str:
        """The answer written after a few-shot example's question."""
        return self.gold_answers(doc)[0]

    def prompt(self, doc: dict, examples: list[dict]) -> str:
        lines = [INSTRUCTION]
        for example in examples:
            lines += [f"Q: {self.question(example)}", f"A: {self.shot_answer(example)}"]
        lines += [f"Q: {self.question(doc)}", "A:"]
        return "\n".join(lines)

    def score(self, docs: list[dict], predictions: list[str]) -> float:
        """Exact match of each prediction's answer (cut as the paper says) against the golds."""
        hits = [
            exact_match(closed_book_answer(prediction), self.gold_answers(doc))
            for doc, prediction in zip(docs, predictions, strict=True)
        ]
        return sum(hits) / len(hits)

    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        if not docs:
            raise DataError(f"task {self.name}: no documents to evaluate")
        for doc in docs:  # a bad record stops the run before any generation
            self.question(doc)
            self.gold_answers(doc)
        cfg = SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=CLOSED_BOOK_STOP)
        budget = prompt_token_budget(context_length(ctx.model, ctx.max_seq_len), MAX_NEW_TOKENS)
        rng = random.Random(ctx.seed)
        prompts, used, truncated = [], [], 0
        for doc in docs:
            examples = draw_shots(fewshot_docs, shots, rng, exclude=doc)
            prompt, k = fit_shots(
                ctx.tokenizer, lambda k, d=doc, e=examples: self.prompt(d, e[:k]), shots, budget
            )
            if k == 0:  # fit_shots returns the 0-shot prompt even when it does not fit
                truncated += len(ctx.tokenizer.encode(prompt, bos=True, eos=False)) > budget
            prompts.append(prompt)
            used.append(k)
        completions = generate_completions(
            ctx.model,
            ctx.tokenizer,
            prompts,
            cfg,
            batch_size=ctx.batch_size,
            max_seq_len=ctx.max_seq_len,
            progress=ctx.progress,
        )
        return {
            "exact_match": self.score(docs, [c[0] for c in completions]),
            "shots_used": sum(used) / len(used),
            "prompts_fewer_shots": sum(k < shots for k in used),
            "prompts_truncated": truncated,
        }


@register_task
class NaturalQuestions(ClosedBookQA):
    """NQ-open: ``answer`` is the list of accepted answers."""

    name = "nq_open"
    title = "NaturalQuestions"
    table = "Table 4: NaturalQuestions"
    report_columns = (("exact_match", title),)
    dataset = DatasetSpec("google-research-datasets/nq_open", None, "validation", "train")

    def gold_answers(self, doc: dict) -> list[str]:
        answers = get_field(self.name, doc, "answer")
        if isinstance(answers, str):
            answers = [answers]
        answers = text_list_field(self.name, doc, "answer", answers)
        return scoreable_golds(self.name, doc, answers, normalize_answer)


@register_task
class TriviaQA(ClosedBookQA):
    """TriviaQA rc.nocontext: ``answer`` holds ``value`` and its ``aliases``."""

    name = "triviaqa"
    title = "TriviaQA"
    table = "Table 5: TriviaQA"
    report_columns = (("exact_match", title),)
    dataset = DatasetSpec("mandarjoshi/trivia_qa", "rc.nocontext", "validation", "train")

    def gold_answers(self, doc: dict) -> list[str]:
        answer = get_field(self.name, doc, "answer")
        aliases = answer.get("aliases", []) if isinstance(answer, dict) else None
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("value"), str)
            or not isinstance(aliases, list)
            or not all(isinstance(alias, str) for alias in aliases)
        ):
            raise DataError(
                f"{located(doc)}task {self.name}: 'answer' must be an object with a string "
                f"'value' and a list of string 'aliases' (the rc.nocontext schema), got "
                f"{str(answer)[:80]!r}"
            )
        return scoreable_golds(self.name, doc, [answer["value"], *aliases], normalize_answer)
