"""Common sense tasks: exact prompts from records in each dataset's schema, and scoring rules.

Scoring is checked with :class:`RuleModel`: every character costs log(V)
(uniform logits) except where a rule gives one character a bonus, so which
choice each normalisation picks can be worked out by hand:

* raw log-likelihood prefers the shortest choice;
* per-character normalisation ties uniform choices, and prefers the choice
  whose first character has a bonus, however long it is;
* "Answer:" normalisation cancels a bonus the unconditional context gets too.
"""

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.multiple_choice import MCExample, evaluate_multiple_choice
from llamaforge.eval.tasks.base import EvalContext, get_task, load_docs
from llamaforge.eval.tasks.commonsense import sample_fewshot, score_questions
from tests.eval.toy import ALPHABET, TOK, tid


class RuleModel(nn.Module):
    """Zero logits, plus ``bonus`` for ``char`` wherever the text so far ends with ``suffix``.

    ``"^"`` in a suffix stands for the start of the text (BOS), so
    ``"^Answer: "`` matches the unconditional context only.
    """

    def __init__(self, rules=(), max_seq_len=1024):
        super().__init__()
        self.rules = list(rules)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device and dtype
        self.config = SimpleNamespace(max_seq_len=max_seq_len)

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, TOK.vocab_size)
        for row, ids in enumerate(tokens.tolist()):
            text = "^"
            for pos, token in enumerate(ids):
                if token >= 2:
                    text += ALPHABET[token - 2]
                for suffix, char, bonus in self.rules:
                    if text.endswith(suffix):
                        logits[row, pos, tid(char)] += bonus
        return logits + self.anchor


def ctx_for(model, **kwargs):
    return EvalContext(model, TOK, batch_size=3, progress=False, **kwargs)


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


BOOLQ = {"question": "is the sky blue", "passage": "The sky is blue.", "idx": 0, "label": 1}
PIQA = {"goal": "Open a jar", "sol1": "ab", "sol2": "cdefgh", "label": 1}
SIQA = {
    "context": "Tracy went to the store.",
    "question": "What will Tracy want to do next?",
    "answerA": "rest",
    "answerB": "buy milk",
    "answerC": "cry",
    "label": "2",
}
HELLASWAG = {
    "ind": 4,
    "activity_label": "Home and Garden",
    "ctx_a": "[header] How to clean a grill [title] Heat the grill. [step] Turn it on high.",
    "ctx_b": "",
    "ctx": "[header] How to clean a grill [title] Heat the grill. [step] Turn it on high.",
    "endings": ["Wait.", "Scrub the  grates well.", "Run.", "Sing [title] loud."],
    "source_id": "wikihow~1",
    "split": "val",
    "split_type": "indomain",
    "label": "1",
}
ARC_LETTERS = {
    "id": "Mercury_1",
    "question": "Which is a gas?",
    "choices": {"text": ["ice", "steam", "rock"], "label": ["A", "B", "C"]},
    "answerKey": "B",
}
ARC_DIGITS = {
    "id": "NYSEDREGENTS_1",
    "question": "Which is a gas?",
    "choices": {"text": ["ice", "steam", "rock", "wood"], "label": ["1", "2", "3", "4"]},
    "answerKey": "2",
}
OBQA = {
    "id": "7-980",
    "question_stem": "The sun is",
    "choices": {"text": ["hot", "cold", "a star", "wet"], "label": ["A", "B", "C", "D"]},
    "answerKey": "B",
}
WINOGRANDE = {
    "sentence": "The trophy didn't fit in the suitcase because the _ was too small.",
    "option1": "trophy",
    "option2": "suitcase",
    "answer": "2",
}


def requests_of(name, doc, shots=()):
    return list(get_task(name).question(doc, list(shots)).requests)


@pytest.mark.parametrize(
    ("name", "doc", "context", "choices", "gold"),
    [
        (
            "boolq",
            BOOLQ,
            "The sky is blue.\nQuestion: is the sky blue?\nAnswer:",
            [" no", " yes"],
            1,
        ),
        ("piqa", PIQA, "Question: Open a jar\nAnswer:", [" ab", " cdefgh"], 1),
        (
            "siqa",
            SIQA,
            "Q: Tracy went to the store. What will Tracy want to do next?\nA:",
            [" rest", " buy milk", " cry"],
            1,
        ),
        (
            "hellaswag",
            HELLASWAG,
            "Home and Garden: How to clean a grill. Heat the grill. Turn it on high.",
            [" Wait.", " Scrub the grates well.", " Run.", " Sing. loud."],
            1,
        ),
        (
            "arc_easy",
            ARC_LETTERS,
            "Question: Which is a gas?\nAnswer:",
            [" ice", " steam", " rock"],
            1,
        ),
        (
            "arc_challenge",
            ARC_DIGITS,
            "Question: Which is a gas?\nAnswer:",
            [" ice", " steam", " rock", " wood"],
            1,
        ),
        ("openbookqa", OBQA, "The sun is", [" hot", " cold", " a star", " wet"], 1),
    ],
)
def test_prompt_choices_and_gold_from_a_real_schema_record(name, doc, context, choices, gold):
    question = get_task(name).question(doc, [])
    assert list(question.requests) == [(context, c) for c in choices]
    assert question.gold == gold


def test_hellaswag_capitalises_ctx_b_like_lm_eval():
    doc = dict(HELLASWAG, ctx_a="A chef shows pans.", ctx_b="the PANS are big", ctx="")
    assert (
        requests_of("hellaswag", doc)[0][0]
        == "Home and Garden: A chef shows pans. The pans are big"
    )


def test_winogrande_partial_requests():
    assert requests_of("winogrande", WINOGRANDE) == [
        ("The trophy didn't fit in the suitcase because the trophy", " was too small."),
        ("The trophy didn't fit in the suitcase because the suitcase", " was too small."),
    ]
    assert get_task("winogrande").question(WINOGRANDE, []).gold == 1


def evaluate(name, doc, rules, **ctx_kwargs):
    return get_task(name).evaluate(ctx_for(RuleModel(rules), **ctx_kwargs), [doc], [], 0)


def test_boolq_is_normalised_by_the_answer_prior_not_by_characters():
    # After any "Answer: " the model leans to "no" (bonus 2), enough to win per character too;
    # unconditionally (after "^Answer:") it expects "no" far more (2 + 6): only the "Answer:"
    # normalisation sees that the passage made "yes" relatively likelier.
    rules = [("^Answer: ", "n", 6.0), ("Answer: ", "n", 2.0)]
    assert evaluate("boolq", BOOLQ, rules) == {"acc": 1.0, "acc_raw": 0.0, "n": 1}
    question = get_task("boolq").question(BOOLQ, [])
    ctx = ctx_for(RuleModel(rules))
    assert score_questions(ctx, [question], "chars") == [(False, False)]
    assert score_questions(ctx, [question], "answer") == [(True, False)]


def test_openbookqa_is_normalised_by_the_answer_prior():
    # The prior after "Answer:" favours "hot" strongly, "a star" and "wet" a little: normalised
    # by it, "cold" wins; raw and per-character scores pick "hot" (shortest / first of a tie).
    rules = [("^Answer: ", "h", 6.0), ("^Answer: ", "a", 1.0), ("^Answer: ", "w", 1.0)]
    assert evaluate("openbookqa", OBQA, rules) == {"acc": 1.0, "acc_raw": 0.0, "n": 1}
    ctx = ctx_for(RuleModel(rules))
    assert score_questions(ctx, [get_task("openbookqa").question(OBQA, [])], "chars") == [
        (False, False)
    ]


@pytest.mark.parametrize(
    ("name", "doc", "rule"),
    [
        ("piqa", PIQA, ("Answer: ", "c", 3.0)),  # also matches "^Answer: ": "answer" would tie
        ("siqa", SIQA, ("A: ", "b", 3.0)),
        ("hellaswag", HELLASWAG, ("on high. S", "c", 3.0)),
        ("arc_easy", ARC_LETTERS, ("Answer: ", "s", 3.0)),
        ("arc_challenge", ARC_DIGITS, ("Answer: ", "s", 3.0)),
    ],
)
def test_character_normalised_tasks_prefer_the_per_character_likelier_choice(name, doc, rule):
    # The gold choice is longer than another one but its first character has a bonus:
    # per character it wins, in total it loses.
    assert evaluate(name, doc, [rule]) == {"acc": 1.0, "acc_raw": 0.0, "n": 1}


def test_piqa_answer_normalisation_would_fail():
    ctx = ctx_for(RuleModel([("Answer: ", "c", 3.0)]))
    question = get_task("piqa").question(PIQA, [])
    assert score_questions(ctx, [question], "answer") == [(False, False)]


def test_winogrande_partial_scoring_beats_scoring_the_option():
    # Only the text after the blank is scored: " was too small." is likelier after "suitcase".
    rules = [("the suitcase ", "w", 4.0)]
    assert evaluate("winogrande", WINOGRANDE, rules) == {"acc": 1.0, "acc_raw": 1.0, "n": 1}
    # Scoring the options themselves after the shared prefix would pick the shorter "trophy".
    prefix = "The trophy didn't fit in the suitcase because the"
    wrong = MCExample(prefix, [" trophy", " suitcase"], gold=1)
    got = evaluate_multiple_choice(RuleModel(rules), TOK, [wrong], "raw")
    assert got["acc"] == 0.0


def test_score_questions_agrees_with_evaluate_multiple_choice():
    model = RuleModel([("Answer: ", "c", 3.0), ("^Answer: ", "n", 2.0), ("yes", "e", 1.0)])
    docs = [PIQA, dict(PIQA, sol1="cc", sol2="nope", label=0), dict(PIQA, goal="x", label=0)]
    task = get_task("piqa")
    questions = task.questions(docs, [], 0, seed=1)
    for method in ("raw", "chars", "answer"):
        examples = [
            MCExample(q.requests[0][0], [c for _, c in q.requests], q.gold) for q in questions
        ]
        expected = evaluate_multiple_choice(model, TOK, examples, method)
        outcome = score_questions(ctx_for(model), questions, method)
        assert sum(r for r, _ in outcome) / len(outcome) == expected["acc"]
        assert sum(r for _, r in outcome) / len(outcome) == expected["acc_raw"]


def test_fewshot_examples_carry_gold_answers_and_exclude_the_document():
    pool = [dict(PIQA, goal=f"goal {i}", label=i % 2) for i in range(4)]
    task = get_task("piqa")
    (question,) = task.questions([pool[0]], pool, 3, seed=7)
    context = question.requests[0][0]
    shots = context.split("\n\n")
    assert shots[-1] == "Question: goal 0\nAnswer:"
    expected_shots = {
        f"Question: goal {i}\nAnswer: {'cdefgh' if i % 2 else 'ab'}" for i in (1, 2, 3)
    }
    assert set(shots[:-1]) == expected_shots
    assert task.questions([pool[0]], pool, 3, seed=7) == [question]  # deterministic
    with pytest.raises(ConfigError, match="3 other examples"):
        task.questions([pool[0]], pool, 4, seed=7)


def test_fewshot_draw_depends_on_seed_and_document_position_not_on_limit():
    pool = [{"k": i} for i in range(50)]
    draws = [sample_fewshot(pool, 5, seed=s, key="t/0", exclude={}) for s in range(4)]
    assert len({json.dumps(d) for d in draws}) > 1
    assert sample_fewshot(pool, 5, seed=1, key="t/0", exclude={}) == draws[1]
    task = get_task("boolq")
    docs = [dict(BOOLQ, idx=i) for i in range(5)]
    fewshot = [dict(BOOLQ, idx=100 + i, passage=f"p{i}.") for i in range(20)]
    all_docs = task.questions(docs, fewshot, 2, seed=3)
    assert task.questions(docs[:2], fewshot, 2, seed=3) == all_docs[:2]


def test_boolq_and_winogrande_shot_formats():
    boolq_shot = requests_of("boolq", BOOLQ, [dict(BOOLQ, label=0)])[0][0]
    assert boolq_shot == (
        "The sky is blue.\nQuestion: is the sky blue?\nAnswer: no\n\n"
        "The sky is blue.\nQuestion: is the sky blue?\nAnswer:"
    )
    other = dict(WINOGRANDE, answer="1")
    context = requests_of("winogrande", WINOGRANDE, [other])[0][0]
    assert context == (
        "The trophy didn't fit in the suitcase because the trophy was too small.\n\n"
        "The trophy didn't fit in the suitcase because the trophy"
    )


def test_bad_records_name_the_task_and_field(tmp_path):
    with pytest.raises(DataError, match="boolq.*'passage'"):
        get_task("boolq").question({"question": "q", "label": 1}, [])
    with pytest.raises(DataError, match="winogrande.*not an integer label"):
        get_task("winogrande").question(dict(WINOGRANDE, answer=""), [])
    with pytest.raises(DataError, match="answerKey 'E'"):
        get_task("arc_easy").question(dict(ARC_LETTERS, answerKey="E"), [])


@pytest.mark.parametrize("label", [1.5, True, "1.5", None, [1]])
def test_a_label_int_would_misread_is_refused(label):
    with pytest.raises(DataError, match=r"piqa: label=.* is not an integer label"):
        get_task("piqa").question(dict(PIQA, label=label), [])


@pytest.mark.parametrize("label", [1, 1.0, "1", " 1 "])
def test_integer_labels_in_any_spelling_read_the_same(label):
    assert get_task("piqa").question(dict(PIQA, label=label), []).gold == 1


def test_a_bad_local_record_names_its_file_and_line(tmp_path):
    path = tmp_path / "piqa" / "validation.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(PIQA) + "\n\n" + json.dumps(dict(PIQA, label=1.5)) + "\n")
    docs = load_docs(get_task("piqa"), "validation", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"validation\.jsonl:3: task piqa: label=1\.5"):
        get_task("piqa").question(docs[1], [])
    with pytest.raises(DataError, match=r"validation\.jsonl:1: task piqa: gold answer 5"):
        get_task("piqa").question(_moved(docs[0], label=5), [])


def _moved(doc, **fields):
    """``doc`` itself with ``fields`` changed: keeps where it was read."""
    doc.update(fields)
    return doc


def test_local_jsonl_round_trip_through_load_docs(tmp_path):
    write_jsonl(tmp_path / "siqa" / "validation.jsonl", [SIQA, SIQA])
    docs = load_docs(get_task("siqa"), "validation", data_dir=tmp_path, limit=1)
    assert docs == [SIQA]
    assert evaluate("siqa", docs[0], [("A: ", "b", 3.0)])["acc"] == 1.0
