"""Every task's records are checked before the model loads: a bad one fails, nothing is scored.

The bad records are the task-level cases of ``tests/eval/tasks/test_record_fields.py``:
:func:`prepare_tasks` must refuse each one, with the same message, without a
model, and as the *second* task of a run, so the first is never scored.
"""

import json

import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.precheck import check_docs, prepare_tasks
from llamaforge.eval.tasks.base import DatasetSpec
from llamaforge.eval.tasks.choice_task import MultipleChoiceTask
from tests.eval.tasks.test_closed_book import NQ_SHOT
from tests.eval.tasks.test_commonsense import BOOLQ, PIQA
from tests.eval.tasks.test_math_reasoning import GSM
from tests.eval.tasks.test_record_fields import BAD, GOOD, SPLIT


def write(data_dir, name, records, split=None):
    path = data_dir / name / f"{split or SPLIT.get(name, 'validation')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def prepare(data_dir, names, **kwargs):
    options = {"shots": 0, "limit": None, "data_dir": data_dir, "seed": 1234, **kwargs}
    return prepare_tasks(names, **options)


@pytest.mark.parametrize(("name", "record", "message"), BAD)
def test_a_bad_record_of_a_later_task_fails_before_any_task_is_scored(
    tmp_path, monkeypatch, name, record, message
):
    monkeypatch.delenv("LLAMAFORGE_WINOGENDER_STATS", raising=False)
    write(tmp_path, "boolq", [BOOLQ])
    path = write(tmp_path, name, [GOOD[name], record])
    first = ["boolq"] if name != "boolq" else []
    with pytest.raises(DataError) as error:
        prepare(tmp_path, [*first, name])
    assert str(error.value).startswith(f"{path}:2: task {name}: "), str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_records_pass_and_are_kept_for_the_run(tmp_path, monkeypatch, name):
    monkeypatch.delenv("LLAMAFORGE_WINOGENDER_STATS", raising=False)
    write(tmp_path, name, [GOOD[name], GOOD[name]])
    (item,) = prepare(tmp_path, [name])
    assert (item.name, item.shots, len(item.docs), item.fewshot) == (name, 0, 2, [])


def test_the_redteam_piqa_record_with_a_null_choice_is_named(tmp_path):
    write(tmp_path, "boolq", [BOOLQ])
    path = write(tmp_path, "piqa", [PIQA, PIQA, dict(PIQA, sol2=None)])
    with pytest.raises(DataError, match="sol2") as error:
        prepare(tmp_path, ["boolq", "piqa"])
    assert str(error.value).startswith(f"{path}:3: task piqa: ")


def test_the_few_shot_examples_the_run_draws_are_checked_too(tmp_path):
    write(tmp_path, "nq_open", [NQ_SHOT])
    write(tmp_path, "nq_open", [dict(NQ_SHOT, question=None)], split="train")
    with pytest.raises(DataError, match="question=None"):
        prepare(tmp_path, ["nq_open"], shots=1)
    write(
        tmp_path, "gsm8k", [GSM], split="test"
    )  # 8 shots: GSM8k's fixed exemplars, no train split read
    (item,) = prepare(tmp_path, ["gsm8k"], shots=None)
    assert (item.shots, item.fewshot, item.needs_pool) == (8, [], False)


def test_too_few_few_shot_examples_and_a_missing_pool_fail_early(tmp_path):
    write(tmp_path, "boolq", [BOOLQ, BOOLQ])
    write(tmp_path, "boolq", [BOOLQ], split="train")
    with pytest.raises(ConfigError, match="lower --shots"):
        prepare(tmp_path, ["boolq"], shots=3)
    write(tmp_path, "crows_pairs", [GOOD["crows_pairs"]])
    with pytest.raises(ConfigError, match="crows_pairs has no few-shot split"):
        prepare(tmp_path, ["crows_pairs"], shots=1)


class Fragile(MultipleChoiceTask):
    """A task whose reader crashes on a record (a raw TypeError, as PIQA's ``" " + None`` did)."""

    name = "fragile"
    dataset = DatasetSpec("x/fragile", split="validation", fewshot_split=None)

    def doc_to_text(self, doc):
        return "Q: " + doc["q"]

    def doc_to_choices(self, doc):
        return [" a", " b"]

    def doc_to_gold(self, doc):
        return 0


def test_a_raw_error_of_a_task_reader_becomes_a_data_error_naming_the_record(tmp_path):
    from llamaforge.eval.tasks.base import load_docs

    write(tmp_path, "fragile", [{"q": "fine"}, {"q": None}])
    docs = load_docs(Fragile(), "validation", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"fragile/validation.jsonl:2: task fragile: .*TypeError"):
        check_docs(Fragile(), docs, [], 0, 1234)
    check_docs(Fragile(), docs[:1], [], 0, 1234)  # the good record alone passes


def test_a_task_may_bring_its_own_check(tmp_path):
    seen = []

    class Custom(Fragile):
        def check_docs(self, docs, fewshot, shots, seed):
            seen.append((len(docs), shots, seed))

    check_docs(Custom(), [{"q": None}], [], 0, 7)  # the built-in check would refuse it
    assert seen == [(1, 0, 7)]
