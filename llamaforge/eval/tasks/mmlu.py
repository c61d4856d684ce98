"""MMLU, 5-shot (paper Table 9), in lm-eval 0.4's format with the original code's shot dropping.

Data: ``cais/mmlu`` config ``all`` (every subject in one split, records
``{question, subject, choices, answer}``, ``answer`` an index 0-3), scored on
``test`` with shots from ``dev``. Locally: ``DATA_DIR/mmlu/test.jsonl`` and
``DATA_DIR/mmlu/dev.jsonl`` holding all subjects.

Prompt, per subject (``_`` in the subject name read as a space)::

    The following are multiple choice questions (with answers) about {subject}.\\n\\n
    {question}\\nA. {choice}\\nB. {choice}\\nC. {choice}\\nD. {choice}\\nAnswer: {letter}\\n\\n
    ... (k shots) ...
    {question}\\nA. ...\\nD. {choice}\\nAnswer:

and the choices are the letters `` A`` .. `` D``. This is exactly the prompt
of lm-eval 0.4's ``mmlu`` task (``tasks/mmlu/default``: its
``description``, ``doc_to_text``, ``target_delimiter`` and ``"\\n\\n"``
between shots; tested against its YAML). lm-eval derived it from the format
of Hendrycks et al.'s ``evaluate.py``, which differs in two details: it
writes "about" followed by *two* spaces (its ``format_subject`` puts a
space before every word) and it does not strip the question text. The LLaMA
paper does not print its prompt. Shots are the first k ``dev`` records of the
same subject, as in the original code (and lm-eval's ``first_n`` sampler),
not a random draw. Letters are ranked by raw log-likelihood of the
continuation `` A`` .. `` D`` (the original reads the same tokens from the
next-token distribution); they are one token each, so character
normalisation would not change the ranking.

**Prompts longer than the context.** As in the original code (``while
crop(prompt) != prompt: k -= 1``), a question whose k-shot prompt and
answer letter do not fit the model's window is asked with one shot fewer,
until it fits; lm-eval instead cuts the prompt from the left, which removes
the instruction and the first shots' questions. Only a question that does
not fit even with 0 shots is cut from the left (by the scorer). The metrics
say how often: ``prompts_fewer_shots`` (questions asked with fewer than k
shots), ``prompts_truncated`` (cut even at 0 shots) and ``shots_used`` (the
mean), and the Markdown report prints a note when either count is not 0.

Metrics: ``acc`` is the average of the per-subject accuracies (the paper's
"average over the 57 tasks"), ``acc_micro`` pools every question (the
original ``evaluate.py``); ``acc_humanities``, ``acc_stem``,
``acc_social_sciences`` and ``acc_other`` average the subjects of each of
the four categories of Hendrycks et al.; ``acc_subject_<subject>`` per
subject (paper Table 16). With ``--limit`` only the first records of the
test split are scored (the first subjects alphabetically): the averages are
then over the subjects present.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.likelihood import model_max_len, split_request
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
from llamaforge.eval.tasks.choice_task import FEWSHOT_DELIMITER, Question, score_questions

LETTERS = "ABCDEFGHIJ"

# Hendrycks et al.'s four categories and the subjects in each.
CATEGORY_SUBJECTS: dict[str, tuple[str, ...]] = {
    "stem": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics",
        "computer_security", "conceptual_physics", "electrical_engineering",
        "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history",
        "high_school_world_history", "international_law", "jurisprudence",
        "logical_fallacies", "moral_disputes", "moral_scenarios", "philosophy", "prehistory",
        "professional_law", "world_religions",
    ),
    "social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
        "human_sexuality", "professional_psychology", "public_relations", "security_studies",
        "sociology", "us_foreign_policy",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts",
        "human_aging", "management", "marketing", "medical_genetics", "miscellaneous",
        "nutrition", "professional_accounting", "professional_medicine", "virology",
    ),
}  # fmt: skip
SUBJECT_CATEGORY = {s: c for c, subjects in CATEGORY_SUBJECTS.items() for s in subjects}


def format_question(doc: dict) -> str:
    """``{question}\\nA. ..\\nB. ..\\nAnswer:`` for one record."""
    choices = text_list_field("mmlu", doc, "choices")
    if not 2 <= len(choices) <= len(LETTERS):
        raise DataError(
            f"{located(doc)}task mmlu: a question needs 2-{len(LETTERS)} choices, "
            f"got {str(choices)[:80]!r}"
        )
    lines = [text_field("mmlu", doc, "question").strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices, strict=False)]
    return "\n".join(lines) + "\nAnswer:"


def gold_index(doc: dict) -> int:
    """``answer`` as an index; an int in ``cais/mmlu``, a letter in some copies."""
    answer, n = get_field("mmlu", doc, "answer"), len(text_list_field("mmlu", doc, "choices"))
    if isinstance(answer, str) and answer.strip().upper() in LETTERS[:n]:
        return LETTERS.index(answer.strip().upper())
    if type(answer) is int and 0 <= answer < n:  # not True
        return answer
    raise DataError(
        f"{located(doc)}task mmlu: answer {answer!r} is not an index or letter of {n} choices"
    )


def subject_of(doc: dict) -> str:
    subject = get_field("mmlu", doc, "subject")
    if not isinstance(subject, str) or subject not in SUBJECT_CATEGORY:
        raise DataError(
            f"{located(doc)}task mmlu: unknown subject {str(subject)[:80]!r}; expected one of "
            "the 57 cais/mmlu subjects"
        )
    return subject


def build_prompt(doc: dict, shots: list[dict]) -> str:
    """The full k-shot prompt for ``doc`` (module docstring)."""
    about = subject_of(doc).replace("_", " ")
    header = f"The following are multiple choice questions (with answers) about {about}.\n\n"
    examples = "".join(
        f"{format_question(s)} {LETTERS[gold_index(s)]}{FEWSHOT_DELIMITER}" for s in shots
    )
    return header + examples + format_question(doc)


@register_task
class MMLU(Task):
    """MMLU 5-shot in lm-eval's format, shots dropped to fit (module docstring)."""

    name = "mmlu"
    title = "MMLU"
    dataset = DatasetSpec("cais/mmlu", "all", split="test", fewshot_split="dev")
    default_shots = 5
    table = "Table 9: Massive Multitask Language Understanding (MMLU)"
    report_columns: ClassVar[tuple[tuple[str, str], ...]] = (
        ("acc_humanities", "Humanities"),
        ("acc_stem", "STEM"),
        ("acc_social_sciences", "Social Sciences"),
        ("acc_other", "Other"),
        ("acc", "Average"),
    )

    def questions(
        self,
        docs: list[dict],
        fewshot_docs: list[dict],
        shots: int,
        *,
        tokenizer: Any = None,
        max_len: int | None = None,
    ) -> list[Question]:
        """One question per document; with ``tokenizer`` and ``max_len``, shots dropped to fit."""
        return [
            q for q, _, _ in self.fitted_questions(docs, fewshot_docs, shots, tokenizer, max_len)
        ]

    def fitted_questions(
        self,
        docs: list[dict],
        fewshot_docs: list[dict],
        shots: int,
        tokenizer: Any = None,
        max_len: int | None = None,
    ) -> list[tuple[Question, int, bool]]:
        """``(question, shots used, fits the window)`` per document (module docstring).

        Without ``tokenizer`` and ``max_len`` every question keeps its ``shots``.
        """
        if shots < 0:
            raise ConfigError(f"shots must be >= 0, got {shots}")
        pool: dict[str, list[dict]] = defaultdict(list)
        for doc in fewshot_docs:
            pool[subject_of(doc)].append(doc)
        out = []
        for doc in docs:
            subject = subject_of(doc)
            examples = [s for s in pool[subject] if s != doc][:shots]
            if len(examples) < shots:
                raise ConfigError(
                    f"task mmlu: {shots} shots asked but the few-shot split has "
                    f"{len(examples)} {subject} examples; lower --shots"
                )
            k, prompt = shots, build_prompt(doc, examples)  # checks the choices
            letters = [" " + letter for letter in LETTERS[: len(doc["choices"])]]
            fit = tokenizer is not None and max_len is not None
            fits = not fit or _scored_whole(tokenizer, prompt, letters, max_len)
            while not fits and k > 0:  # the original code's ``k -= 1``
                k -= 1
                prompt = build_prompt(doc, examples[:k])
                fits = _scored_whole(tokenizer, prompt, letters, max_len)
            out.append((Question(tuple((prompt, c) for c in letters), gold_index(doc)), k, fits))
        return out

    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        if not docs:
            raise DataError("task mmlu: no documents to evaluate")
        max_len = model_max_len(ctx.model, ctx.max_seq_len)
        fitted = self.fitted_questions(docs, fewshot_docs, shots, ctx.tokenizer, max_len)
        outcome = score_questions(ctx, [q for q, _, _ in fitted], "raw")
        per_subject: dict[str, list[bool]] = defaultdict(list)
        for doc, (right, _) in zip(docs, outcome, strict=True):
            per_subject[doc["subject"]].append(right)
        subject_acc = {s: sum(r) / len(r) for s, r in sorted(per_subject.items())}
        metrics: dict[str, float] = {
            "acc": _mean(subject_acc.values()),
            "acc_micro": sum(right for right, _ in outcome) / len(outcome),
        }
        for category in CATEGORY_SUBJECTS:
            present = [a for s, a in subject_acc.items() if SUBJECT_CATEGORY[s] == category]
            if present:
                metrics[f"acc_{category}"] = _mean(present)
        metrics.update({f"acc_subject_{s}": a for s, a in subject_acc.items()})
        metrics["shots_used"] = sum(k for _, k, _ in fitted) / len(fitted)
        metrics["prompts_fewer_shots"] = sum(k < shots for _, k, _ in fitted)
        metrics["prompts_truncated"] = sum(not fits for _, _, fits in fitted)
        metrics["n"] = len(outcome)
        return metrics


def _scored_whole(tokenizer: Any, prompt: str, letters: list[str], max_len: int) -> bool:
    """Whether every ``(prompt, letter)`` request fits the scorer's window without truncation.

    The scorer keeps the last ``max_len + 1`` tokens of BOS + prompt + letter
    (the last one is only a target), so that is the limit.
    """
    return all(
        sum(map(len, split_request(tokenizer, prompt, letter))) <= max_len + 1 for letter in letters
    )


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
