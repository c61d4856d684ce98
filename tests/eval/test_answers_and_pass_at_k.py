import math
import random
from pathlib import Path

import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.answers import (
    CLOSED_BOOK_STOP,
    closed_book_answer,
    exact_match,
    extract_number,
    first_line,
    maj_at_k,
    majority_vote,
    normalize_answer,
)
from llamaforge.eval.pass_at_k import mean_pass_at_k, pass_at_k


def test_normalize_and_exact_match():
    assert normalize_answer("  The  Eiffel Tower!\t") == "eiffel tower"
    assert normalize_answer("Jay-Z") == "jayz"  # SQuAD deletes punctuation, no space
    assert normalize_answer("An apple, a day") == "apple day"
    assert exact_match("the Beatles.", ["Rolling Stones", "Beatles"])
    assert exact_match("Paris", "paris")
    assert not exact_match("Paris, France", ["Paris"])
    assert not exact_match("theatre", ["atre"])  # articles only as whole words


# Generations with every kind of early stop; lm-eval's own cut must agree on each.
CLOSED_BOOK_GENERATIONS = [
    " Canberra, not Sydney", " Paris.", " 3.5 metres", " St. Louis, Missouri", " U.S.",
    " 1,000 years", " Darwin\nQ: next", "\nlate", " no stop at all", "", "   ", " ,lead",
    " Jean-Paul Sartre.\n", " e.g. this", " 42\n\n", " a, b. c\n", "\t Tabbed answer. ",
    " Washington, D.C.", " ...", " New York\r\nQ:",
]  # fmt: skip


def test_closed_book_answer_stops_at_the_first_line_break_dot_or_comma():
    assert closed_book_answer(" Canberra, not Sydney") == "Canberra"
    assert closed_book_answer(" 3.5 metres") == "3"
    assert closed_book_answer(" St. Louis") == "St"
    assert closed_book_answer(" 1,000 years") == "1"
    assert closed_book_answer(" Darwin\nQ: next") == "Darwin"
    assert closed_book_answer(" no stop at all ") == "no stop at all"
    assert closed_book_answer(" New York\r\nQ:") == "New York"
    assert closed_book_answer(".") == ""


def test_closed_book_answer_agrees_with_lm_eval():
    lm_eval_utils = pytest.importorskip("lm_eval.models.utils")
    import yaml

    tasks = Path(lm_eval_utils.__file__).parents[1] / "tasks"
    for config in (tasks / "nq_open" / "nq_open.yaml", tasks / "triviaqa" / "default.yaml"):
        kwargs = yaml.safe_load(config.read_text(encoding="utf-8"))["generation_kwargs"]
        assert tuple(kwargs["until"]) == CLOSED_BOOK_STOP, config
    for text in CLOSED_BOOK_GENERATIONS:
        theirs = lm_eval_utils.postprocess_generated_text(text, list(CLOSED_BOOK_STOP), None)
        assert closed_book_answer(text) == theirs.strip(), text  # .strip(): remove_whitespace


def test_first_line_cuts_at_the_first_newline():
    assert first_line(" Paris\nQuestion: next") == " Paris"
    assert first_line("no newline") == "no newline"
    assert first_line("\nlate") == ""


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("... the answer is 1,234.", "1234"),
        ("She has 3 apples, then 5. #### 8", "8"),
        ("It costs $2.50 then 12.0 in total", "12"),
        ("The answer is -7 and not 9", "-7"),
        ("we get 1,000,000.50", "1000000.5"),
        ("1, 2, 3", "3"),
        ("The answer is .5 of a cake", "0.5"),  # not "5"
        ("it falls by -.25 each day", "-0.25"),
        ("no digits", None),
    ],
)
def test_extract_number(text, number):
    assert extract_number(text) == number


def test_majority_vote_ties_go_to_first_occurrence():
    assert majority_vote(["b", "a", "a", "b", "c"]) == "b"
    assert majority_vote(["c", "a", "a"]) == "a"
    assert majority_vote([None, "4", None]) == "4"
    assert majority_vote([None]) is None


def test_maj_at_k_uses_first_k_samples():
    samples = [["1", "2", "2", "1", "1"], ["7", None, "7", "3", "3"]]
    assert maj_at_k(samples, ["2", "7"], k=3) == 1.0
    assert maj_at_k(samples, ["1", "3"], k=5) == 0.5
    assert maj_at_k(samples, ["1", "7"], k=1) == 1.0
    with pytest.raises(DataError, match="problem 0"):
        maj_at_k(samples, ["1", "7"], k=6)
    with pytest.raises(DataError):
        maj_at_k(samples, ["1"], k=1)


def comb_pass_at_k(n, c, k):
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_the_combinatorial_formula():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 60)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(comb_pass_at_k(n, c, k), abs=1e-12)
    assert pass_at_k(200, 3, 100) == pytest.approx(comb_pass_at_k(200, 3, 100), rel=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 7, 4) == 1.0  # n - c = 3 < k
    assert pass_at_k(5, 5, 5) == 1.0
    with pytest.raises(ConfigError, match="k must be"):
        pass_at_k(3, 1, 4)
    with pytest.raises(DataError):
        pass_at_k(3, 4, 1)


def test_mean_pass_at_k():
    results = [[True, False, False, False], [False] * 4, [True] * 4]
    expected = (comb_pass_at_k(4, 1, 2) + 0.0 + 1.0) / 3
    assert mean_pass_at_k(results, 2) == pytest.approx(expected)
    with pytest.raises(DataError):
        mean_pass_at_k([], 1)
