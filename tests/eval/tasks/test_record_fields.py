"""Every task refuses a record it would score silently wrong, or crash on, before scoring.

One case per red-team finding: a ``bool`` or ``"1.5"`` read as a label, a
string read as a list of one-character choices, ``null`` or a number put
into a prompt as "None"/"123", a gold answer that normalises to ``""``, an
MBPP test with no assert, fields that used to raise a raw ``TypeError`` or
``KeyError``. Each record is the second line of its file, so the error must
start with ``FILE:2: task NAME:``, and the model raises if it is ever called:
nothing is scored or generated before the check.
"""

import json
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from llamaforge.errors import DataError
from llamaforge.eval.tasks import base
from llamaforge.eval.tasks.base import EvalContext, get_task, load_docs
from llamaforge.eval.tasks.responsible import RealToxicityPrompts
from llamaforge.eval.toxicity import WordListScorer
from tests.eval.tasks.test_closed_book import NQ, TRIVIA
from tests.eval.tasks.test_code import MBPP_DOC, PROBLEMS
from tests.eval.tasks.test_commonsense import (
    ARC_LETTERS,
    BOOLQ,
    HELLASWAG,
    OBQA,
    PIQA,
    SIQA,
    WINOGRANDE,
)
from tests.eval.tasks.test_gold_fields import _task as generation_task
from tests.eval.tasks.test_math_reasoning import MATH_DOC
from tests.eval.toy import ALPHABET, TOK, ToyModel, ToyTokenizer

RACE = {"example_id": "x", "article": "The sky is blue.", "question": "What colour is it?",
        "options": ["red", "blue", "green", "black"], "answer": "B"}  # fmt: skip
MMLU = {"question": "1+1?", "subject": "abstract_algebra", "choices": ["1", "2", "3", "4"],
        "answer": 1}  # fmt: skip
CROWS = {"sent_more": "He is rich.", "sent_less": "She is rich.", "stereo_antistereo": "stereo",
         "bias_type": "gender"}  # fmt: skip
WINOG = {"sentence": "The nurse helped the patient because she was kind.", "pronoun": "she",
         "occupation": "nurse", "participant": "patient", "gender": "female", "label": 0}  # fmt: skip
TEMPLATE = {"occupation(0)": "nurse", "other-participant(1)": "patient", "answer": 0,
            "sentence": "The $OCCUPATION told the $PARTICIPANT that $NOM_PRONOUN was late."}  # fmt: skip
TQA = {"question": "Is the sky blue?", "mc1_targets": {"choices": ["yes", "no"], "labels": [1, 0]},
       "mc2_targets": {"choices": ["yes", "no"], "labels": [1, 0]}}  # fmt: skip
RTP = {"prompt": {"text": "So I said"}}
GOOD = {"boolq": BOOLQ, "piqa": PIQA, "siqa": SIQA, "hellaswag": HELLASWAG,
        "winogrande": WINOGRANDE, "arc_easy": ARC_LETTERS, "openbookqa": OBQA,
        "race_middle": RACE, "mmlu": MMLU, "crows_pairs": CROWS, "winogender": WINOG,
        "truthfulqa_mc": TQA, "realtoxicityprompts": RTP, "nq_open": NQ, "triviaqa": TRIVIA,
        "math": MATH_DOC, "mbpp": MBPP_DOC, "humaneval": PROBLEMS[0]}  # fmt: skip
D = dict


def tqa(key="mc1_targets", **targets):
    return D(TQA, **{key: D(TQA[key], **targets)})


BAD = [  # (task, record, what the error says)
    # Silently wrong scores.
    ("winogender", D(TEMPLATE, answer=True), "answer=True is not an integer label"),
    ("winogender", D(TEMPLATE, answer=1.5), "answer=1.5 is not an integer label"),
    ("winogender", D(TEMPLATE, answer="1.5"), "not an integer label"),
    ("winogender", D(TEMPLATE, answer=2), "neither 0"),
    ("truthfulqa_mc", tqa(labels=["1", "0"]), "ints 0 or 1"),
    ("truthfulqa_mc", tqa(labels=[5, 0]), "ints 0 or 1"),
    ("truthfulqa_mc", tqa("mc2_targets", labels=[0, 0]), "at least one 1"),
    ("truthfulqa_mc", tqa(labels=[1, 0, 0]), "must be 2 ints"),
    ("truthfulqa_mc", tqa(labels=[True, False]), "ints 0 or 1"),
    ("crows_pairs", D(CROWS, bias_type=True), "bias_type=True must be one of"),
    ("crows_pairs", D(CROWS, stereo_antistereo=False), "stereo_antistereo=False"),
    ("hellaswag", D(HELLASWAG, endings="abcd"), "endings='abcd' must be a non-empty list"),
    (
        "arc_easy",
        D(ARC_LETTERS, choices={"text": "abc", "label": ["A", "B", "C"]}),
        "choices.text=",
    ),
    ("race_middle", D(RACE, options="abcd"), "options='abcd' must be a non-empty list"),
    ("mmlu", D(MMLU, choices="ABCD"), "choices='ABCD' must be a non-empty list"),
    ("truthfulqa_mc", tqa(choices="ab"), "mc1_targets.choices='ab'"),
    ("boolq", D(BOOLQ, passage=None), "passage=None has type NoneType"),
    ("boolq", D(BOOLQ, question=5), "question=5 has type int"),
    ("race_middle", D(RACE, article=None), "article=None"),
    ("race_middle", D(RACE, options=["a", None, "c", "d"]), "options="),
    ("mmlu", D(MMLU, question=None), "question=None"),
    ("truthfulqa_mc", D(TQA, question=123), "question=123 has type int"),
    ("nq_open", D(NQ, answer=[""]), "normalises to ''"),
    ("nq_open", D(NQ, answer=["the"]), "normalises to ''"),
    ("triviaqa", D(TRIVIA, answer={"value": "", "aliases": []}), "normalises to ''"),
    ("math", D(MATH_DOC, solution="So \\boxed{\\$}."), "empty after normalisation"),
    ("math", D(MATH_DOC, solution="So \\boxed{ a } hmm."), "empty after normalisation"),
    ("mbpp", D(MBPP_DOC, test_list=[""]), "has no assert"),
    ("mbpp", D(MBPP_DOC, test_list=["# x"]), "has no assert"),
    ("mbpp", D(MBPP_DOC, test_list=["assert ("]), "is not Python"),
    ("humaneval", D(PROBLEMS[0], test=""), "test='' has no assert"),
    ("humaneval", D(PROBLEMS[0], test="def check(c):\n    pass\n"), "has no assert"),
    ("mbpp", D(MBPP_DOC, test_setup_code=0), "test_setup_code=0"),
    ("mbpp", D(MBPP_DOC, test_setup_code=[]), "test_setup_code=[]"),
    # Raw tracebacks.
    ("boolq", D(BOOLQ, label="²"), "not an integer label"),
    ("boolq", D(BOOLQ, label="--1"), "not an integer label"),
    ("piqa", D(PIQA, sol1=None), "sol1=None"),
    ("siqa", D(SIQA, answerA=None), "answerA=None"),
    (
        "arc_easy",
        D(ARC_LETTERS, choices={"text": ["ice", None, "r"], "label": ["A", "B", "C"]}),
        "choices.text=",
    ),  # fmt: skip
    (
        "arc_easy",
        D(ARC_LETTERS, choices={"text": ["ice", "steam"], "label": ["A", "B", "C"]}),
        "2 texts but 3 labels",
    ),  # fmt: skip
    ("openbookqa", D(OBQA, question_stem=None), "question_stem=None"),
    ("winogrande", D(WINOGRANDE, option1=None), "option1=None"),
    ("hellaswag", D(HELLASWAG, endings=["x", None, "y", "z"]), "endings="),
    ("hellaswag", D(HELLASWAG, ctx_b=None), "ctx_b=None"),
    ("race_middle", D(RACE, question=None), "question=None"),
    ("mmlu", D(MMLU, subject=["x"]), "unknown subject"),
    ("crows_pairs", D(CROWS, sent_more=None), "sent_more=None"),
    ("winogender", {k: v for k, v in WINOG.items() if k != "occupation"}, "no 'occupation' field"),
    ("winogender", {k: v for k, v in WINOG.items() if k != "gender"}, "no 'gender' field"),
    ("winogender", D(WINOG, gender="other"), "gender='other' is not one of"),
    ("winogender", D(WINOG, pronoun=None), "pronoun=None"),
    ("winogender", D(WINOG, occupation=None), "occupation=None"),
    ("winogender", D(TEMPLATE, **{"occupation(0)": None}), "occupation(0)=None"),
    ("truthfulqa_mc", D(TQA, mc1_targets=["yes", "no"]), "mc1_targets=['yes', 'no'] must be"),
    ("truthfulqa_mc", D(TQA, mc2_targets={"choices": ["yes"]}), "mc2_targets="),
    ("truthfulqa_mc", tqa(choices=["yes", None]), "mc1_targets.choices="),
    ("realtoxicityprompts", {"prompt": {"text": None}}, "string 'text'"),
    ("realtoxicityprompts", {"prompt": "the text is here"}, "must be an object"),
    # Clear errors that did not say where.
    ("winogrande", D(WINOGRANDE, sentence="no blank here"), "exactly one '_'"),
    ("arc_easy", D(ARC_LETTERS, choices=["ice", "steam"]), "choices must be"),
    ("race_middle", D(RACE, answer="1"), "answer '1' is not a letter"),
    ("mmlu", D(MMLU, subject="cooking"), "unknown subject 'cooking'"),
    ("crows_pairs", D(CROWS, bias_type="colour"), "bias_type='colour'"),
    ("piqa", D(PIQA, sol1=""), "an empty choice"),
]
SPLIT = {"arc_easy": "test", "openbookqa": "test", "race_middle": "test", "mmlu": "test",
         "crows_pairs": "test", "winogender": "test", "realtoxicityprompts": "train",
         "math": "test", "mbpp": "test", "humaneval": "test"}  # fmt: skip


class NoModel(nn.Module):
    """Fails the test if anything is scored or generated."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(max_seq_len=4096, vocab_size=TOK.vocab_size)

    def forward(self, *args, **kwargs):
        raise AssertionError("the model was called before the bad record was refused")

    new_cache = forward  # generation starts here


class AnyTextTokenizer(ToyTokenizer):
    """The toy tokenizer, reading characters it lacks (WinoGender's quotes) as "?"."""

    def encode(self, text, bos=True, eos=False):
        return super().encode("".join(c if c in ALPHABET else "?" for c in text), bos, eos)


TOKENIZER = AnyTextTokenizer()


def _task(name):
    """The generation tasks as the gold-field tests make them (no sampling), RTP with a toy scorer."""
    if name == "realtoxicityprompts":
        return RealToxicityPrompts(scorer=WordListScorer(["x"]))
    return generation_task(name)


def _write(tmp_path, name, records):
    path = tmp_path / name / f"{SPLIT.get(name, 'validation')}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _evaluate(tmp_path, name, records, model=None):
    path = _write(tmp_path, name, records)
    task = _task(name)
    docs = load_docs(task, SPLIT.get(name, "validation"), data_dir=tmp_path)
    ctx = EvalContext(model or NoModel(), TOKENIZER, batch_size=2, progress=False)
    return path, lambda: task.evaluate(ctx, docs, [], 0)


@pytest.mark.parametrize(("name", "record", "message"), BAD)
def test_a_bad_record_is_named_by_file_and_line_before_scoring(
    tmp_path, monkeypatch, name, record, message
):
    monkeypatch.delenv("LLAMAFORGE_WINOGENDER_STATS", raising=False)
    path, run = _evaluate(tmp_path, name, [GOOD[name], record])
    with pytest.raises(DataError) as error:
        run()
    assert str(error.value).startswith(f"{path}:2: task {name}: "), str(error.value)
    assert message in str(error.value)
    assert "method='raw'" not in str(error.value)  # the CLI cannot choose a method


@pytest.mark.parametrize("name", sorted(GOOD))
def test_the_good_records_reach_the_model(tmp_path, monkeypatch, name):
    """So each refusal above is the bad record's, not the good one's."""
    monkeypatch.delenv("LLAMAFORGE_WINOGENDER_STATS", raising=False)
    _, run = _evaluate(tmp_path, name, [GOOD[name]])
    with pytest.raises(AssertionError, match="the model was called"):
        run()


@pytest.mark.parametrize("name", ["winogender", "crows_pairs", "truthfulqa_mc", "boolq"])
def test_an_empty_task_file_is_an_error_naming_it(tmp_path, name):
    path = _write(tmp_path, name, [])
    with pytest.raises(DataError, match="no records") as error:
        load_docs(get_task(name), SPLIT.get(name, "validation"), data_dir=tmp_path)
    assert str(error.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "name", ["winogender", "crows_pairs", "truthfulqa_mc", "realtoxicityprompts"]
)
def test_no_documents_is_an_error_not_a_division_by_zero(name):
    ctx = EvalContext(NoModel(), TOK, progress=False)
    with pytest.raises(DataError, match=f"task {name}: no documents"):
        _task(name).evaluate(ctx, [], [], 0)


def test_a_line_over_the_cap_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MAX_RECORD_BYTES", 1000)
    path = _write(tmp_path, "boolq", [BOOLQ, D(BOOLQ, passage="x" * 5000), BOOLQ])
    with pytest.raises(DataError) as error:
        load_docs(get_task("boolq"), "validation", data_dir=tmp_path)
    assert str(error.value).startswith(f"{path}:2: a line longer than 1,000 bytes")
    _write(tmp_path, "boolq", [BOOLQ, D(BOOLQ, passage="x" * 900)])  # under the cap: read
    assert len(load_docs(get_task("boolq"), "validation", data_dir=tmp_path)) == 2


def test_gold_aliases_that_normalise_to_nothing_are_dropped_when_others_remain():
    assert get_task("nq_open").gold_answers(D(NQ, answer=["the", "Darwin", ""])) == ["Darwin"]
    trivia = D(TRIVIA, answer={"value": "Sunset", "aliases": [".", "Sunset Blvd"]})
    assert get_task("triviaqa").gold_answers(trivia) == ["Sunset", "Sunset Blvd"]
    # An empty completion (a lone "," cut at the comma) no longer matches anything.
    assert get_task("nq_open").score([D(NQ, answer=["the", "Darwin"])], [","]) == 0.0


def test_a_gold_choice_equal_to_another_is_scored_warned_and_counted(tmp_path):
    same = D(PIQA, sol1="same", sol2="same", label=1)
    path, run = _evaluate(tmp_path, "piqa", [PIQA, same], model=ToyModel(max_seq_len=256))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run()
    assert metrics["choices_duplicated"] == 1 and metrics["n"] == 2
    assert any(str(w.message).startswith(f"{path}:2: task piqa: ") for w in caught)
    # The tie goes to the lower index, so gold 1 is wrong whatever the model says.
    assert metrics["acc"] <= 0.5
