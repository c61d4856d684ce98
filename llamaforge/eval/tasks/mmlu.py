"""MMLU, 5-shot (paper Table 9): the format of the original MMLU code, HELM and LLaMA.

Data: ``cais/mmlu`` config ``all`` (every subject in one split, records
``{question, subject, choices, answer}``, ``answer`` an index 0-3), scored on
``test`` with shots from ``dev``. Locally: ``DATA_DIR/mmlu/test.jsonl`` and
``DATA_DIR/mmlu/dev.jsonl`` holding all subjects.

Prompt, per subject (``_`` in the subject name read as a space)::

    The following are multiple choice questions (with answers) about {subject}.\\n\\n
    {question}\\nA. {choice}\\nB. {choice}\\nC. {choice}\\nD. {choice}\\nAnswer: {letter}\\n\\n
    ... (k shots) ...
    {question}\\nA. ...\\nD. {choice}\\nAnswer:

and the choices are the letters `` A`` .. `` D``. Shots are the first k
``dev`` records of the same subject, as in the original code (and lm-eval's
``first_n`` sampler), not a random draw. Letters are one token each, so they
are ranked by raw log-likelihood (character normalisation would not change
the ranking).

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
from typing import ClassVar

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.tasks.base import DatasetSpec, EvalContext, Task, get_field, register_task
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
    choices = get_field("mmlu", doc, "choices")
    if not 2 <= len(choices) <= len(LETTERS):
        raise DataError(f"task mmlu: a question needs 2-{len(LETTERS)} choices, got {choices!r}")
    lines = [str(get_field("mmlu", doc, "question")).strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices, strict=False)]
    return "\n".join(lines) + "\nAnswer:"


def gold_index(doc: dict) -> int:
    """``answer`` as an index; an int in ``cais/mmlu``, a letter in some copies."""
    answer, n = get_field("mmlu", doc, "answer"), len(get_field("mmlu", doc, "choices"))
    if isinstance(answer, str) and answer.strip().upper() in LETTERS[:n]:
        return LETTERS.index(answer.strip().upper())
    if isinstance(answer, int) and 0 <= answer < n:
        return answer
    raise DataError(f"task mmlu: answer {answer!r} is not an index or letter of {n} choices")


def subject_of(doc: dict) -> str:
    subject = get_field("mmlu", doc, "subject")
    if subject not in SUBJECT_CATEGORY:
        raise DataError(
            f"task mmlu: unknown subject {subject!r}; expected one of the 57 cais/mmlu subjects"
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
    """MMLU 5-shot in the original format (module docstring)."""

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

    def questions(self, docs: list[dict], fewshot_docs: list[dict], shots: int) -> list[Question]:
        if shots < 0:
            raise ConfigError(f"shots must be >= 0, got {shots}")
        pool: dict[str, list[dict]] = defaultdict(list)
        for doc in fewshot_docs:
            pool[subject_of(doc)].append(doc)
        questions = []
        for doc in docs:
            subject = subject_of(doc)
            examples = [s for s in pool[subject] if s != doc][:shots]
            if len(examples) < shots:
                raise ConfigError(
                    f"task mmlu: {shots} shots asked but the few-shot split has "
                    f"{len(examples)} {subject} examples; lower --shots"
                )
            prompt = build_prompt(doc, examples)
            letters = [" " + letter for letter in LETTERS[: len(doc["choices"])]]
            questions.append(Question(tuple((prompt, c) for c in letters), gold_index(doc)))
        return questions

    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        if not docs:
            raise DataError("task mmlu: no documents to evaluate")
        outcome = score_questions(ctx, self.questions(docs, fewshot_docs, shots), "raw")
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
        metrics["n"] = len(outcome)
        return metrics


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
