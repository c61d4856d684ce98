"""Generation tasks refuse a record whose gold or prompt fields have the wrong type or format.

``str()`` of a wrong value ("None", "[...]", a string's characters joined by
newlines) used to reach the prompt, the reference answer or the test program
and be scored silently. Each bad record is named by file:line, and it stops
the run before anything is generated.
"""

import json

import pytest

from llamaforge.errors import DataError
from llamaforge.eval.answers import exact_number
from llamaforge.eval.tasks.base import EvalContext, get_task, load_docs
from llamaforge.eval.tasks.code import MBPP, HumanEval
from llamaforge.eval.tasks.math_reasoning import GSM8k
from tests.eval.tasks.test_closed_book import NQ, TRIVIA
from tests.eval.tasks.test_code import LIMITS, MBPP_DOC, PROBLEMS
from tests.eval.tasks.test_math_reasoning import GSM, MATH_DOC
from tests.eval.test_generation import ScriptedModel
from tests.eval.toy import TOK

BAD = {
    "gsm8k": [
        (dict(GSM, answer="They sold 72 clips."), "'#### <number>'"),
        (dict(GSM, answer="48 + 24 = 72\n#### seventy-two"), "'#### <number>'"),
        (dict(GSM, answer="#### 72 clips, or 73"), "'#### <number>'"),
        (dict(GSM, answer=72), "answer=72 has type int, not a string"),
        (dict(GSM, question=None), "question=None"),
    ],
    "math": [
        (dict(MATH_DOC, solution="The sum is 3/4."), "boxed"),
        (dict(MATH_DOC, solution="\\boxed{}"), "boxed"),
        (dict(MATH_DOC, solution=["\\boxed{1}"]), "has type list, not a string"),
        (dict(MATH_DOC, problem={"text": "1 + 1"}), "problem="),
    ],
    "nq_open": [
        (dict(NQ, answer=[]), "non-empty list of strings"),
        (dict(NQ, answer=None), "non-empty list of strings"),
        (dict(NQ, answer=[["Darwin"]]), "non-empty list of strings"),
        (dict(NQ, question=7), "question=7 has type int"),
    ],
    "triviaqa": [
        (dict(TRIVIA, answer={"value": None, "aliases": []}), "string 'value'"),
        (dict(TRIVIA, answer={"value": "Sunset", "aliases": "Sunset Blvd"}), "'aliases'"),
        (dict(TRIVIA, answer="Sunset Boulevard"), "the rc.nocontext schema"),
    ],
    "humaneval": [
        (dict(PROBLEMS[0], entry_point="f); import os #"), "not a Python function name"),
        (dict(PROBLEMS[0], test=["assert True"]), "test=['assert True'] has type list"),
        (dict(PROBLEMS[0], prompt=None), "prompt=None"),
    ],
    "mbpp": [
        (dict(MBPP_DOC, test_list="assert add(1, 2) == 3"), "non-empty list of strings"),
        (dict(MBPP_DOC, test_list=[]), "non-empty list of strings"),
        (dict(MBPP_DOC, test_setup_code=["import os"]), "test_setup_code="),
    ],
}
SPLIT = {"gsm8k": "test", "math": "test", "nq_open": "validation", "triviaqa": "validation",
         "humaneval": "test", "mbpp": "test"}  # fmt: skip
GOOD = {"gsm8k": GSM, "math": MATH_DOC, "nq_open": NQ, "triviaqa": TRIVIA,
        "humaneval": PROBLEMS[0], "mbpp": MBPP_DOC}  # fmt: skip


def _task(name):
    if name == "gsm8k":
        return GSM8k(samples=0)
    if name == "math":
        return type(get_task("math"))(samples=0)
    if name == "humaneval":
        return HumanEval(pass1_samples=1, samples=0, ks=(), limits=LIMITS, workers=1)
    if name == "mbpp":
        return MBPP(pass1_samples=1, samples=0, ks=(), limits=LIMITS, workers=1)
    return get_task(name)


@pytest.mark.parametrize(
    "name, record, message",
    [(name, record, message) for name, cases in BAD.items() for record, message in cases],
)
def test_a_bad_record_is_named_by_file_and_line_before_anything_is_generated(
    tmp_path, name, record, message
):
    path = tmp_path / name / f"{SPLIT[name]}.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(GOOD[name]) + "\n" + json.dumps(record) + "\n")
    task = _task(name)
    docs = load_docs(task, SPLIT[name], data_dir=tmp_path)
    model = ScriptedModel(lambda prompt: "x", max_seq_len=4096)
    ctx = EvalContext(model, TOK, batch_size=2, progress=False)
    with pytest.raises(DataError) as error:
        task.evaluate(ctx, docs, [], 0)
    assert str(error.value).startswith(f"{path}:2: task {name}: ")
    assert message in str(error.value)
    assert model.prompts_seen == []


def test_reference_numbers_are_one_number():
    assert exact_number(" 1,234.50 ") == "1234.5"
    assert exact_number("-0") == "0" and exact_number("72") == "72"
    assert exact_number("72 clips") is None and exact_number("") is None
    # A decimal without a leading digit is its value, not the digits after the dot.
    assert exact_number(".5") == "0.5" and exact_number("-.50") == "-0.5"
    # What lm-eval's gsm8k also ignores in a reference: a leading "$", a final ".".
    assert exact_number("$18") == "18" and exact_number("18.") == "18"
    assert exact_number("1/2") is None and exact_number("$") is None
    # Values, not digit strings: a leading zero is the same number; only ASCII digits count.
    assert exact_number("072") == "72" and exact_number("-007.10") == "-7.1"
    assert exact_number("\u0667\u0662") is None  # Arabic-Indic "72": not read as a number
