"""Common sense reasoning (paper Table 3), and the multiple-choice task machinery it shares.

Prompts are lm-evaluation-harness 0.4's templates (named in each task's
docstring), because LLaMA-style numbers are reported with them. Every choice
is a continuation with a leading space (lm-eval's ``target_delimiter``), and
is ranked by its log-likelihood under the paper's rule (``method``):
normalised by its number of characters (the choice's, without the delimiter
space, as lm-eval's ``acc_norm`` counts them), except BoolQ and OpenBookQA
(normalised by the likelihood given ``"Answer:"``) and WinoGrande (partial
scoring). ``acc`` is that rule, ``acc_raw`` the plain sum of log-probs.

Few-shot sampling and the shared multiple-choice machinery live in
:mod:`llamaforge.eval.tasks.choice_task` (re-exported here, where they first
lived); ``reading`` and ``mmlu`` build on it too.

Datasets are the Hub ids lm-eval 0.4 reads (Parquet, so ``datasets`` >= 4 can
load them): ``aps/super_glue`` is where the Hub's ``super_glue`` lives now,
``baber/piqa`` and ``lighteval/siqa`` are Parquet copies of ``piqa`` and
``social_i_qa`` with the same fields. ARC and OpenBookQA are scored on
``test`` (what the paper reports), the others on ``validation`` (their test
labels are not public).
"""

from __future__ import annotations

import re

from llamaforge.errors import DataError
from llamaforge.eval.multiple_choice import winogrande_split
from llamaforge.eval.tasks.base import (
    DatasetSpec,
    get_field,
    integer_field,
    located,
    register_task,
    text_field,
    text_list_field,
)
from llamaforge.eval.tasks.choice_task import FEWSHOT_DELIMITER as FEWSHOT_DELIMITER
from llamaforge.eval.tasks.choice_task import MultipleChoiceTask
from llamaforge.eval.tasks.choice_task import Question as Question
from llamaforge.eval.tasks.choice_task import sample_fewshot as sample_fewshot
from llamaforge.eval.tasks.choice_task import score_questions as score_questions

COMMONSENSE_TABLE = "Table 3: Common sense reasoning"


class _CommonsenseTask(MultipleChoiceTask):
    """Reported in the paper's Table 3."""

    table = COMMONSENSE_TABLE


def _label(task: str, doc: dict, name: str, offset: int = 0) -> int:
    return integer_field(task, doc, name) - offset


def _choices(task: str, doc: dict) -> dict:
    """ARC/OBQA's ``choices``: ``{"text": [...], "label": [...]}``, as many labels as texts."""
    choices = get_field(task, doc, "choices")
    if not isinstance(choices, dict) or "label" not in choices or "text" not in choices:
        raise DataError(
            f"{located(doc)}task {task}: choices must be {{'text': [...], 'label': [...]}}, "
            f"got {str(choices)[:80]!r}"
        )
    texts = text_list_field(task, doc, "choices.text", choices["text"])
    labels = text_list_field(task, doc, "choices.label", choices["label"])
    if len(texts) != len(labels):
        raise DataError(
            f"{located(doc)}task {task}: choices has {len(texts)} texts but {len(labels)} labels"
        )
    return choices


def _keyed_gold(task: str, doc: dict) -> int:
    """Index of ``answerKey`` in ``choices.label``: letters ("A") or digits ("1") both occur."""
    labels = [x.strip() for x in _choices(task, doc)["label"]]
    key = str(get_field(task, doc, "answerKey")).strip()
    if key in labels:
        return labels.index(key)
    if key.isdigit() and all(x.isalpha() for x in labels):
        return int(key) - 1
    if len(key) == 1 and key.isalpha() and all(x.isdigit() for x in labels):
        return ord(key.upper()) - ord("A")
    raise DataError(
        f"{located(doc)}task {task}: answerKey {key!r} is not one of the labels {labels}"
    )


def _choice_texts(task: str, doc: dict) -> list[str]:
    return list(_choices(task, doc)["text"])


@register_task
class BoolQ(_CommonsenseTask):
    """lm-eval ``boolq``: ``"{passage}\\nQuestion: {question}?\\nAnswer:"`` -> `` no``/`` yes``."""

    name = "boolq"
    title = "BoolQ"
    dataset = DatasetSpec("aps/super_glue", "boolq", split="validation")
    method = "answer"

    def doc_to_text(self, doc: dict) -> str:
        passage, question = (
            text_field(self.name, doc, "passage"),
            text_field(self.name, doc, "question"),
        )
        return f"{passage}\nQuestion: {question}?\nAnswer:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" no", " yes"]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label")


@register_task
class PIQA(_CommonsenseTask):
    """lm-eval ``piqa``: ``"Question: {goal}\\nAnswer:"`` -> `` {sol1}``/`` {sol2}``."""

    name = "piqa"
    title = "PIQA"
    dataset = DatasetSpec("baber/piqa", split="validation")

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {text_field(self.name, doc, 'goal')}\nAnswer:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + text_field(self.name, doc, "sol1"), " " + text_field(self.name, doc, "sol2")]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label")


@register_task
class SIQA(_CommonsenseTask):
    """lm-eval ``social_iqa``: ``"Q: {context} {question}\\nA:"`` -> `` {answerA|B|C}``."""

    name = "siqa"
    title = "SIQA"
    dataset = DatasetSpec("lighteval/siqa", split="validation")

    def doc_to_text(self, doc: dict) -> str:
        context, question = (
            text_field(self.name, doc, "context"),
            text_field(self.name, doc, "question"),
        )
        return f"Q: {context} {question}\nA:"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + text_field(self.name, doc, f"answer{x}") for x in "ABC"]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label", offset=1)  # "1".."3"


def hellaswag_clean(text: str) -> str:
    """lm-eval's clean-up of WikiHow artefacts: ``[title]`` ends a sentence, other tags go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


@register_task
class HellaSwag(_CommonsenseTask):
    """lm-eval ``hellaswag``: ``"{activity_label}: {ctx_a} {Ctx_b}"`` -> `` {ending}``, cleaned."""

    name = "hellaswag"
    title = "HellaSwag"
    dataset = DatasetSpec("Rowan/hellaswag", split="validation")

    def doc_to_text(self, doc: dict) -> str:
        ctx_b = text_field(self.name, doc, "ctx_b").capitalize()
        context = text_field(self.name, doc, "ctx_a") + " " + ctx_b
        return hellaswag_clean(text_field(self.name, doc, "activity_label") + ": " + context)

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + hellaswag_clean(e) for e in text_list_field(self.name, doc, "endings")]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "label")


@register_task
class WinoGrande(_CommonsenseTask):
    """lm-eval ``winogrande``: partial scoring, the text after the blank given each filled prefix.

    The continuation is the same for both options, so the raw log-likelihood
    is already comparable: ``acc_raw`` equals ``acc`` by construction.
    """

    name = "winogrande"
    title = "WinoGrande"
    dataset = DatasetSpec("allenai/winogrande", "winogrande_xl", split="validation")
    method = "raw"

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [text_field(self.name, doc, "option1"), text_field(self.name, doc, "option2")]

    def doc_to_requests(self, doc: dict) -> list[tuple[str, str]]:
        sentence = text_field(self.name, doc, "sentence")
        if sentence.count("_") != 1:
            raise DataError(
                f"{located(doc)}task {self.name}: sentence needs exactly one '_' blank, "
                f"got {sentence[:80]!r}"
            )
        return [winogrande_split(sentence, option) for option in self.doc_to_choices(doc)]

    def doc_to_gold(self, doc: dict) -> int:
        return _label(self.name, doc, "answer", offset=1)  # "1" / "2"


class _ARC(_CommonsenseTask):
    """lm-eval ``arc_easy``/``arc_challenge``: ``"Question: {question}\\nAnswer:"`` -> `` {text}``."""

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {text_field(self.name, doc, 'question')}\nAnswer:"

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
class OpenBookQA(_CommonsenseTask):
    """lm-eval ``openbookqa``: ``"{question_stem}"`` -> `` {text}``, normalised by ``"Answer:"``."""

    name = "openbookqa"
    title = "OBQA"
    dataset = DatasetSpec("allenai/openbookqa", "main", split="test")
    method = "answer"

    def doc_to_text(self, doc: dict) -> str:
        return text_field(self.name, doc, "question_stem")

    def doc_to_choices(self, doc: dict) -> list[str]:
        return [" " + text for text in _choice_texts(self.name, doc)]

    def doc_to_gold(self, doc: dict) -> int:
        return _keyed_gold(self.name, doc)
