import pytest
import torch

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.multiple_choice import (
    MCExample,
    evaluate_multiple_choice,
    score_choices,
    winogrande_partial,
    winogrande_split,
)
from tests.eval.test_likelihood import TOK, ToyModel, reference, tid


@pytest.fixture
def model():
    """Hand-set so that normalisation changes the winner.

    After "Q": " x" is likely (raw winner, 2 chars) but " yyyy" costs little per
    character (chars winner). After "Z?": " x" is mildly favoured, but far more
    so after "Answer:", so the "answer" normalisation prefers " y".
    """
    torch.manual_seed(0)
    m = ToyModel()
    with torch.no_grad():
        m.bigram[tid(" "), tid("x")] = 6.0
        m.bigram[tid("y"), tid("y")] = 10.0
        m.first[tid("Z"), tid("x")] = 1.0
        m.first[tid("A"), tid("x")] = 5.0
    return m


def test_chars_normalisation_changes_the_winner(model):
    choices = [" x", " yyyy"]
    raw = score_choices(model, TOK, "Q", choices, "raw")
    chars = score_choices(model, TOK, "Q", choices, "chars")
    expected = [reference(model, TOK, "Q", c)[0] for c in choices]
    assert raw == pytest.approx(expected, abs=1e-4)
    assert chars == pytest.approx([expected[0] / 2, expected[1] / 5], abs=1e-4)
    assert raw[0] > raw[1] and chars[1] > chars[0]


def test_answer_normalisation_changes_the_winner(model):
    choices = [" x", " y"]
    raw = score_choices(model, TOK, "Z?", choices, "raw")
    answer = score_choices(model, TOK, "Z?", choices, "answer")
    expected = [
        reference(model, TOK, "Z?", c)[0] - reference(model, TOK, "Answer:", c)[0] for c in choices
    ]
    assert answer == pytest.approx(expected, abs=1e-4)
    assert answer[0] - answer[1] == pytest.approx(1.0 - 5.0, abs=1e-4)  # the two biases
    assert raw[0] > raw[1] and answer[1] > answer[0]


def test_evaluate_multiple_choice_reports_normalised_and_raw(model):
    examples = [MCExample("Q", [" x", " yyyy"], gold=1), MCExample("Z?", [" x", " y"], gold=1)]
    chars = evaluate_multiple_choice(model, TOK, examples, "chars", batch_size=3)
    assert chars == {"acc": 0.5, "acc_raw": 0.0, "n": 2}
    answer = evaluate_multiple_choice(model, TOK, examples[1:], "answer")
    assert answer == {"acc": 1.0, "acc_raw": 0.0, "n": 1}
    raw = evaluate_multiple_choice(model, TOK, iter(examples), "raw")
    assert raw["acc"] == raw["acc_raw"] == 0.0


def test_ties_go_to_the_first_choice():
    flat = ToyModel()  # all logits zero: equal-length choices tie
    examples = [MCExample("Q", [" a", " b"], gold=0), MCExample("Q", [" a", " b"], gold=1)]
    assert evaluate_multiple_choice(flat, TOK, examples, "chars")["acc"] == 0.5


def test_bad_input_is_reported(model):
    with pytest.raises(DataError, match="example 0"):
        evaluate_multiple_choice(model, TOK, [MCExample("Q", [" a"], gold=3)])
    with pytest.raises(ConfigError, match="method"):
        score_choices(model, TOK, "Q", [" a"], "bytes")
    with pytest.raises(DataError, match="empty choice"):
        score_choices(model, TOK, "Q", [""], "chars")
    with pytest.raises(DataError, match="blank"):
        winogrande_split("no blank here", "x")


def test_winogrande_partial_scores_the_shared_suffix(model):
    sentence = "_ fixed the box because  it broke. "
    assert winogrande_split(sentence, "Q") == ("Q", " fixed the box because  it broke.")
    scores = winogrande_partial(model, TOK, sentence, ["Q", "Z"])
    expected = [reference(model, TOK, *winogrande_split(sentence, o))[0] for o in ["Q", "Z"]]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert scores[0] != pytest.approx(scores[1])
