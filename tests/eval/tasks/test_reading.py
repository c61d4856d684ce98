"""RACE: per-question prompts, fill-in-the-blank questions, character-normalised scoring."""

import pytest

from llamaforge.errors import DataError
from llamaforge.eval.tasks.base import get_task, load_docs
from tests.eval.tasks.test_commonsense import RuleModel, ctx_for, write_jsonl

ARTICLE = "Tom has a dog. It sleeps in the garden."


def race(question, options=("cat", "big dog", "cow", "owl"), answer="B", **extra):
    return {"example_id": "middle1.txt", "article": ARTICLE, "answer": answer,
            "question": question, "options": list(options), **extra}  # fmt: skip


def requests(doc, name="race_middle"):
    return list(get_task(name).question(doc, []).requests)


def test_plain_question_prompt():
    doc = race("What does Tom have?")
    context = f"Article: {ARTICLE}\n\nQuestion: What does Tom have?\nAnswer:"
    assert requests(doc) == [(context, f" {o}") for o in doc["options"]]
    assert get_task("race_high").question(doc, []).gold == 1


@pytest.mark.parametrize(
    ("question", "context_end", "continuations"),
    [
        # blank at the end: the option completes the sentence, its full stop follows
        ("Tom's pet is a  _  .", "Tom's pet is a", [" cat.", " big dog.", " cow.", " owl."]),
        # blank in the middle: the rest of the sentence follows the option
        (
            "The _ sleeps in the garden.",
            "The",
            [f" {o} sleeps in the garden." for o in ("cat", "big dog", "cow", "owl")],
        ),
        # blank first: the option starts right after the article
        ("__ is Tom's pet.", "", [f"{o} is Tom's pet." for o in ("cat", "big dog", "cow", "owl")]),
    ],
)
def test_fill_in_questions_are_completed_in_place(question, context_end, continuations):
    context = f"Article: {ARTICLE}\n\n{context_end}"
    assert requests(race(question)) == [(context, c) for c in continuations]


def test_scoring_is_per_character_and_reports_raw():
    # " big dog" is longer than " cat" but its first letter is likelier: it wins per character.
    model = RuleModel([("Answer: ", "b", 3.0)])
    doc = race("What does Tom have?")
    task = get_task("race_middle")
    assert task.evaluate(ctx_for(model), [doc], [], 0) == {"acc": 1.0, "acc_raw": 0.0, "n": 1}
    gold_a = dict(doc, answer="A")  # " cat": shortest, first of the raw tie
    assert task.evaluate(ctx_for(model), [gold_a], [], 0) == {"acc": 0.0, "acc_raw": 1.0, "n": 1}


def test_shots_use_the_same_format_with_gold_answers(tmp_path):
    shot = race("Where does it sleep?", options=("in the garden", "bed", "car", "box"), answer="A")
    write_jsonl(tmp_path / "race_high" / "train.jsonl", [shot])
    pool = load_docs(get_task("race_high"), "train", data_dir=tmp_path)
    (question,) = get_task("race_high").questions([race("What does Tom have?")], pool, 1, seed=0)
    assert question.requests[0][0] == (
        f"Article: {ARTICLE}\n\nQuestion: Where does it sleep?\nAnswer: in the garden\n\n"
        f"Article: {ARTICLE}\n\nQuestion: What does Tom have?\nAnswer:"
    )


def test_answer_must_be_a_letter():
    with pytest.raises(DataError, match="race_middle.*'1'"):
        get_task("race_middle").question(race("Why?", answer="1"), [])
