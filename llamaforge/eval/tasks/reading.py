"""Reading comprehension: RACE-middle and RACE-high (paper Table 6), zero-shot by default.

Data: ``ehovy/race`` configs ``middle`` and ``high``, one record per question
(``{example_id, article, question, options, answer}``, ``answer`` a letter),
scored on ``test`` like the paper.

The prompt is per question, in the words lm-eval's ``race`` template uses
for the questions it shows before the scored one, but without lm-eval's
other questions on the same article as context (this dataset has one record
per question, and it keeps every question independent of reading order)::

    Article: {article}\\n\\nQuestion: {question}\\nAnswer: {option}

About a third of RACE questions are fill-in sentences with a blank (``_``)
instead of a question. Those are completed in place (lm-eval writes the
earlier questions of an article this way when the blank ends the sentence,
but leaves the blank in its scored question and appends the option): the
context is the sentence up to the blank and the continuation is the option
followed by the rest of the sentence (``"The passage is mainly about _ ."``
-> context ``"...mainly about"``, continuation ``" the weather."``). A
sentence that starts with the blank has the option right after the article.
Only the first blank (a run of underscores) is filled; the rest of the text is
kept as written. Choices are ranked by the paper's character-normalised
log-likelihood (``acc``; the characters of the continuation without its
leading space, option and rest of the sentence for a blank); ``acc_raw`` is
the plain sum, the only metric lm-eval's ``race`` reports.
"""

from __future__ import annotations

import re

from llamaforge.errors import DataError
from llamaforge.eval.tasks.base import (
    DatasetSpec,
    get_field,
    located,
    register_task,
    text_field,
    text_list_field,
)
from llamaforge.eval.tasks.choice_task import MultipleChoiceTask

READING_TABLE = "Table 6: Reading comprehension"
_BLANK = re.compile(r"_+")
_NO_SPACE_BEFORE = tuple(".,;:!?')\"")


def fill_in_request(prefix: str, question: str, option: str) -> tuple[str, str]:
    """``(context, continuation)`` for a question with a blank (see the module docstring)."""
    blank = _BLANK.search(question)
    if blank is None:
        raise ValueError(f"no blank in {question!r}")
    before = question[: blank.start()].strip()
    after = " ".join(question[blank.end() :].split())
    context = prefix + before
    continuation = (" " if before else "") + option
    if after:
        continuation += ("" if after.startswith(_NO_SPACE_BEFORE) else " ") + after
    return context, continuation


class _RACE(MultipleChoiceTask):
    table = READING_TABLE

    def doc_to_choices(self, doc: dict) -> list[str]:
        return text_list_field(self.name, doc, "options")

    def doc_to_requests(self, doc: dict) -> list[tuple[str, str]]:
        prefix = f"Article: {text_field(self.name, doc, 'article')}\n\n"
        question = text_field(self.name, doc, "question")
        options = self.doc_to_choices(doc)
        if _BLANK.search(question):
            return [fill_in_request(prefix, question, option) for option in options]
        context = f"{prefix}Question: {question}\nAnswer:"
        return [(context, " " + option) for option in options]

    def doc_to_gold(self, doc: dict) -> int:
        given = get_field(self.name, doc, "answer")
        answer = given.strip().upper() if isinstance(given, str) else ""
        if len(answer) != 1 or not "A" <= answer <= "Z":
            raise DataError(
                f"{located(doc)}task {self.name}: answer {given!r} is not a letter A, B, C, ..."
            )
        return ord(answer) - ord("A")


@register_task
class RaceMiddle(_RACE):
    """RACE-middle (middle-school exams), ``ehovy/race`` ``middle``, test split."""

    name = "race_middle"
    title = "RACE-middle"
    dataset = DatasetSpec("ehovy/race", "middle", split="test")


@register_task
class RaceHigh(_RACE):
    """RACE-high (high-school exams), ``ehovy/race`` ``high``, test split."""

    name = "race_high"
    title = "RACE-high"
    dataset = DatasetSpec("ehovy/race", "high", split="test")
