"""GSM8k and MATH: exact prompts, answer extraction and normalisation, maj1@k."""

import re

import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.tasks.base import EvalContext, get_task
from llamaforge.eval.tasks.math_reasoning import (
    GSM8k,
    last_boxed,
    normalize_math_answer,
)
from tests.eval.test_generation import ScriptedModel
from tests.eval.toy import TOK

GSM = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 "
    "clips altogether in April and May.\n#### 72",
}
MATH_DOC = {
    "problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?",
    "level": "Level 1",
    "type": "Prealgebra",
    "solution": "We have $\\frac{1}{2} + \\frac{1}{4} = \\frac{2}{4} + \\frac{1}{4} = "
    "\\boxed{\\frac{3}{4}}$.",
}


def test_gsm8k_prompt_uses_the_chain_of_thought_exemplars():
    task = get_task("gsm8k")
    assert task.default_shots == 8 and task.dataset.hf_name == "main"
    first = task.examples(GSM, [], 1, None)
    assert task.prompt(GSM, first) == (
        "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
        "After they are done, there will be 21 trees. How many trees did the grove workers plant "
        "today?\nA: There are 15 trees originally. Then there were 21 trees after some more were "
        "planted. So there must have been 21 - 15 = 6. The answer is 6.\n\n"
        f"Q: {GSM['question']}\nA:"
    )
    assert task.prompt(GSM, []) == f"Q: {GSM['question']}\nA:"
    assert len(task.examples(GSM, [], 8, None)) == 8
    # beyond the 8 exemplars, shots come from the training split in the same style
    assert task.worked_solution(GSM) == (
        "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April "
        "and May. The answer is 72."
    )


def test_gsm8k_answers_and_maj_at_k_with_rigged_samples():
    task = get_task("gsm8k")
    assert task.gold(GSM) == "72"
    assert task.extract(" She sold 24 + 48 = 72 clips. The answer is 72.") == "72"
    assert task.extract(" The answer is $1,234.50.") == "1234.5"
    other = dict(GSM, answer="... #### 5")
    samples = [
        ["The answer is 72.", "The answer is 70.", "The answer is 70.", "It is 72", "So 72."],
        ["The answer is 6.", "The answer is 5.", "The answer is 5.", "no idea", "no idea"],
    ]
    assert task.score([GSM, other], samples, 1) == 0.5  # first sample: right, wrong
    assert task.score([GSM, other], samples, 3) == 0.5  # 70 wins; 5 wins
    assert task.score([GSM, other], samples, 5) == 1.0  # 72 wins 3-2; "no idea" abstains
    with pytest.raises(DataError, match="####"):
        task.gold({"question": "q", "answer": "72"})
    with pytest.raises(ConfigError, match="samples"):
        GSM8k(samples=1)


def test_math_boxed_extraction_and_normalisation():
    assert last_boxed("so \\boxed{1} and then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("$\\boxed 5$") == "5"
    assert last_boxed("\\fbox{x^{2}}") == "x^{2}"
    assert last_boxed("no box here") is None
    assert last_boxed("cut \\boxed{\\frac{1}{") is None
    cases = {
        "\\frac{3}{4}": "\\frac{3}{4}",
        "\\dfrac34": "\\frac{3}{4}",
        "\\frac12": "\\frac{1}{2}",
        "\\sqrt2": "\\sqrt{2}",
        "x = 3": "3",
        "10^\\circ": "10",
        "5 \\text{ dollars}": "5",
        "1,000": "1000",
        "\\left( 3, \\frac{\\pi}{2} \\right)": "(3,\\frac{\\pi}{2})",
        "\\text{(B)}": "(B)",
        "$\\$5$": "5",
    }
    for raw, expected in cases.items():
        assert normalize_math_answer(raw) == expected, raw


def test_math_prompt_gold_and_prediction():
    task = get_task("math")
    assert task.default_shots == 4 and task.dataset.split == "test"
    assert task.prompt(MATH_DOC, [("What is 1+1?", "It is $\\boxed{2}$.")]) == (
        "Problem:\nWhat is 1+1?\n\nSolution: It is $\\boxed{2}$.\n\n"
        "Problem:\nWhat is $\\frac{1}{2} + \\frac{1}{4}$?\n\nSolution:"
    )
    assert task.gold(MATH_DOC) == "\\frac{3}{4}"
    assert task.extract(" Adding gives $\\boxed{\\dfrac34}$.") == "\\frac{3}{4}"
    minerva = " So 3/4.\nFinal Answer: The final answer is $\\frac{3}{4}$. I hope it is correct."
    assert task.extract(minerva) == "\\frac{3}{4}"
    assert task.extract(" I cannot tell.") is None
    assert task.score([MATH_DOC], [[" $\\boxed{0.75}$"]], 1) == 0.0  # no symbolic equivalence
    with pytest.raises(DataError, match="boxed"):
        task.gold(dict(MATH_DOC, solution="3/4"))


def test_gsm8k_end_to_end_majority_beats_greedy():
    """Greedy follows the likeliest next character ('2', shared by ten "2x" answers) to a
    wrong "20"; sampling draws "1" (3 of 13) more often than any single "2x" (1 of 13)."""
    options = [" The answer is 1."] * 3 + [f" The answer is 2{d}." for d in range(10)]
    model = ScriptedModel(lambda prompt: options, max_seq_len=4096)
    doc = dict(GSM, answer="So one. #### 1")
    ctx = EvalContext(model, TOK, batch_size=16, progress=False, seed=1)
    metrics = GSM8k(samples=32, temperature=1.0).evaluate(ctx, [doc], [], 8)
    assert metrics == {"maj1@1": 0.0, "maj1@32": 1.0}
    assert len(re.findall(r"^Q: ", model.prompts_seen[0], re.M)) == 9  # 8 exemplars + question


def test_math_end_to_end_greedy_only():
    answer = " We get $\\boxed{\\frac34}$.\n\nProblem:\nmore"
    model = ScriptedModel(lambda prompt: answer, max_seq_len=2048)
    pool = [dict(MATH_DOC, problem=f"Problem {i}?") for i in range(5)]
    ctx = EvalContext(model, TOK, progress=False)
    metrics = type(get_task("math"))(samples=0).evaluate(ctx, [MATH_DOC], pool, 2)
    assert metrics == {"maj1@1": 1.0}
    assert model.prompts_seen[0].count("Problem:\n") == 3
