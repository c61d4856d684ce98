import json
import math
import random
from pathlib import Path

import pytest
import torch

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.likelihood import loglikelihood
from llamaforge.eval.multiple_choice import (
    MCExample,
    choice_chars,
    evaluate_multiple_choice,
    normalise_scores,
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
    # divided by len("x") and len("yyyy"): the delimiter space is not counted
    assert chars == pytest.approx([expected[0] / 1, expected[1] / 4], abs=1e-4)
    assert raw[0] > raw[1] and chars[1] > chars[0]


def test_chars_counts_the_choice_without_its_delimiter_space():
    assert [choice_chars(c) for c in [" Paris", "Paris", "  x", " "]] == [5, 5, 2, 0]
    # Every character costs log(V) under a flat model: " ab" scores -3 log V and " cdefgh"
    # -7 log V. Per len(choice) the longer one wins (-1.5 vs -1.17 log V); per
    # len(" " + choice) both are -log V, a tie the first choice would take.
    flat = ToyModel()
    example = MCExample("Question: which?\nAnswer:", [" ab", " cdefgh"], gold=1)
    assert evaluate_multiple_choice(flat, TOK, [example], "chars")["acc"] == 1.0
    scores = score_choices(flat, TOK, example.context, example.choices, "chars")
    assert scores == pytest.approx(
        [-3 * math.log(TOK.vocab_size) / 2, -7 * math.log(TOK.vocab_size) / 6]
    )
    with pytest.raises(DataError, match="no characters"):
        normalise_scores("chars", [" a", " "], [-1.0, -1.0], [])


WORDS = ("cat", "dog", "mat", "sun", "rain", "jar", "lid", "open", "twist", "pour", "cup",
         "tea", "hot", "cold", "run", "walk")  # fmt: skip


def _phrase(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _reference_records(rng):
    arc = [
        {"id": str(i), "question": _phrase(rng, 3, 6) + "?", "answerKey": rng.choice("ABCD"),
         "choices": {"text": [_phrase(rng, 1, 4) for _ in range(4)], "label": list("ABCD")}}
        for i in range(30)
    ]  # fmt: skip
    piqa = [
        {"goal": _phrase(rng, 3, 6), "sol1": _phrase(rng, 1, 5), "sol2": _phrase(rng, 1, 5),
         "label": rng.randint(0, 1)}
        for _ in range(10)
    ]  # fmt: skip
    hellaswag = [
        {"ind": i, "activity_label": "Cooking", "ctx_a": _phrase(rng, 3, 5) + ".",
         "ctx_b": _phrase(rng, 2, 3), "ctx": "", "source_id": "x", "split": "val",
         "split_type": "indomain", "label": str(rng.randint(0, 3)),
         "endings": [_phrase(rng, 1, 4) + (" [title] tea" if j == 0 else "") for j in range(4)]}
        for i in range(10)
    ]  # fmt: skip
    return {"arc_easy": arc, "piqa": piqa, "hellaswag": hellaswag}


def test_acc_norm_agrees_with_lm_eval_on_its_own_task_configs(tmp_path, monkeypatch):
    """lm-eval's arc_easy, piqa and hellaswag YAMLs (on local copies of records) against ours.

    lm-eval computes ``acc_norm`` from our log-likelihoods with its own code; every
    item must get the same verdict, and the items must include ones where dividing
    by ``len(" " + choice)`` would have picked another choice.
    """
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from llamaforge.eval.lm_eval_backend import LlamaforgeLM
    from llamaforge.eval.tasks.base import EvalContext, get_task
    from llamaforge.eval.tasks.choice_task import score_questions

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = ToyModel(max_seq_len=256)
    with torch.no_grad():
        model.bigram.normal_(0, 1.5)
    records = _reference_records(random.Random(0))
    theirs_dir = Path(lm_eval.__file__).parent / "tasks"
    for name in records:
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records[name]), encoding="utf-8")
        (tmp_path / f"lf_{name}.yaml").write_text(
            f"include: {theirs_dir / name.split('_')[0] / (name + '.yaml')}\n"
            f"task: lf_{name}\ntag: []\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  cache_dir: {tmp_path / 'cache'}\n  data_files:\n"
            f"    test: {data}\ntest_split: test\nvalidation_split: null\ntraining_split: null\n",
            encoding="utf-8",
        )
    evaluated = lm_eval.simple_evaluate(
        model=LlamaforgeLM(model=model, tokenizer=TOK, device="cpu", progress=False),
        tasks=[f"lf_{name}" for name in records],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
        log_samples=True,
    )
    flips = 0
    for name, docs in records.items():
        questions = get_task(name).questions(docs, [], 0, 0)
        ours = score_questions(EvalContext(model, TOK, progress=False), questions, "chars")
        samples = sorted(evaluated["samples"][f"lf_{name}"], key=lambda s: s["doc_id"])
        for question, sample, (right, right_raw) in zip(questions, samples, ours, strict=True):
            assert [tuple(a) for a in sample["arguments"]] == list(question.requests)
            assert (right, right_raw) == (sample["acc_norm"] == 1.0, sample["acc"] == 1.0)
            lls = [lp for lp, _ in loglikelihood(model, TOK, question.requests)]
            lengths = [len(cont) for _, cont in question.requests]  # the old rule
            old = max(range(len(lls)), key=lambda i: (lls[i] / lengths[i], -i))
            flips += (old == question.gold) != right
    assert flips >= 3


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
