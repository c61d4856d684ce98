"""The runner: task name expansion, per-task results, run metadata, atomic JSON."""

import datetime as dt
import json

import pytest
import torch

import llamaforge
from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.runner import evaluate_tasks, resolve_task_names, write_results
from llamaforge.eval.tasks.base import EvalContext, get_task
from tests.eval.tasks.test_commonsense import BOOLQ, PIQA, RuleModel, write_jsonl
from tests.eval.test_generation import ScriptedModel
from tests.eval.toy import TOK

COMMONSENSE = [
    "boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa",
]  # fmt: skip


def test_groups_and_all_expand_in_paper_order_without_duplicates():
    assert resolve_task_names("commonsense") == COMMONSENSE
    assert resolve_task_names("piqa, commonsense,reading") == [
        "piqa", *[t for t in COMMONSENSE if t != "piqa"], "race_middle", "race_high",
    ]  # fmt: skip
    everything = resolve_task_names("all")
    assert set(COMMONSENSE + ["race_middle", "race_high", "mmlu"]) <= set(everything)
    with pytest.raises(ConfigError, match="unknown task 'boolqq'"):
        resolve_task_names("boolq,boolqq")
    with pytest.raises(ConfigError, match="no task"):
        resolve_task_names(" , ")


@pytest.fixture
def data_dir(tmp_path):
    write_jsonl(tmp_path / "boolq" / "validation.jsonl", [BOOLQ, dict(BOOLQ, label=0), BOOLQ])
    write_jsonl(tmp_path / "piqa" / "validation.jsonl", [PIQA, dict(PIQA, label=0)])
    write_jsonl(tmp_path / "piqa" / "train.jsonl", [dict(PIQA, goal=f"g{i}") for i in range(3)])
    return tmp_path


MODEL_RULES = [("^Answer: ", "n", 6.0), ("Answer: ", "c", 3.0)]


def test_results_hold_metrics_and_protocol_per_task(data_dir):
    model = RuleModel(MODEL_RULES)
    out = evaluate_tasks(
        model, TOK, "boolq,piqa", limit=2, data_dir=data_dir, progress=False, seed=5, batch_size=2
    )
    boolq, piqa = out["results"]["boolq"], out["results"]["piqa"]
    # BoolQ: first doc gold "yes" (right by the "Answer:" rule), second gold "no" (wrong)
    assert boolq["metrics"] == {"acc": 0.5, "acc_raw": 0.5, "n": 2}
    assert piqa["metrics"] == {"acc": 0.5, "acc_raw": 0.5, "n": 2}
    for entry in (boolq, piqa):
        assert entry["n"] == 2 and entry["shots"] == 0 and entry["fewshot_split"] is None
        assert entry["split"] == "validation"
        assert entry["table"] == "Table 3: Common sense reasoning"
    assert boolq["dataset"] == "aps/super_glue/boolq" and boolq["title"] == "BoolQ"
    config = out["config"]
    assert config["seed"] == 5 and config["limit"] == 2 and config["tasks"] == ["boolq", "piqa"]
    assert config["llamaforge_version"] == llamaforge.__version__
    assert config["torch_version"] == torch.__version__
    assert config["model"]["max_seq_len"] == 1024 and config["model"]["parameters"] == 1
    assert dt.datetime.fromisoformat(config["date"]).tzinfo is not None
    json.dumps(out)  # plain JSON


def test_metrics_equal_the_task_run_directly_and_shots_are_applied(data_dir):
    model = RuleModel(MODEL_RULES)
    out = evaluate_tasks(model, TOK, ["piqa"], shots=2, data_dir=data_dir, progress=False)
    task = get_task("piqa")
    docs = [PIQA, dict(PIQA, label=0)]
    pool = [dict(PIQA, goal=f"g{i}") for i in range(3)]
    direct = task.evaluate(EvalContext(model, TOK, progress=False), docs, pool, 2)
    assert out["results"]["piqa"]["metrics"] == direct
    assert out["results"]["piqa"]["shots"] == 2
    assert out["results"]["piqa"]["fewshot_split"] == "train"


def test_missing_few_shot_split_and_bad_options_are_user_errors(data_dir):
    model = RuleModel()
    with pytest.raises(DataError, match="boolq/train.jsonl does not exist"):
        evaluate_tasks(model, TOK, "boolq", shots=1, data_dir=data_dir, progress=False)
    with pytest.raises(ConfigError, match="--limit"):
        evaluate_tasks(model, TOK, "boolq", limit=0, data_dir=data_dir, progress=False)
    with pytest.raises(ConfigError, match="--shots"):
        evaluate_tasks(model, TOK, "boolq", shots=-1, data_dir=data_dir, progress=False)


def test_write_results_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out" / "results.json"
    write_results({"results": {"a": 1}}, path)
    assert json.loads(path.read_text()) == {"results": {"a": 1}}

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_results({"results": {"a": 2}}, path)
    assert json.loads(path.read_text()) == {"results": {"a": 1}}  # old file intact
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp left


def test_task_default_shots_and_report_columns_reach_the_results(tmp_path):
    from tests.eval.tasks.test_mmlu import record

    write_jsonl(tmp_path / "mmlu" / "dev.jsonl", [record("anatomy", f"D{i}?", 0) for i in range(5)])
    write_jsonl(tmp_path / "mmlu" / "test.jsonl", [record("anatomy", "Q?", 0)])
    out = evaluate_tasks(RuleModel(), TOK, "mmlu", data_dir=tmp_path, progress=False)
    mmlu = out["results"]["mmlu"]
    assert mmlu["shots"] == 5 and mmlu["split"] == "test" and mmlu["fewshot_split"] == "dev"
    assert mmlu["metrics"]["acc"] == 1.0  # all letters tie: "A", the gold, is picked
    assert [c[1] for c in mmlu["columns"]] == [
        "Humanities", "STEM", "Social Sciences", "Other", "Average",
    ]  # fmt: skip


def test_gsm8k_with_its_published_exemplars_needs_no_train_split(tmp_path):
    """8-shot GSM8k uses the built-in Wei et al. exemplars: only test.jsonl is needed."""
    doc = {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [doc])
    task = get_task("gsm8k")
    assert not task.needs_fewshot_docs(8) and task.needs_fewshot_docs(9)
    model = ScriptedModel(lambda prompt: " 2 + 2 = 4. The answer is 4.\n\n", max_seq_len=4096)
    out = evaluate_tasks(model, TOK, "gsm8k", limit=1, data_dir=tmp_path, progress=False)
    entry = out["results"]["gsm8k"]
    assert entry["shots"] == 8 and entry["fewshot_split"] is None and entry["n"] == 1
    assert entry["metrics"]["maj1@1"] == 1.0
    with pytest.raises(DataError, match="gsm8k/train.jsonl"):
        evaluate_tasks(model, TOK, "gsm8k", shots=9, data_dir=tmp_path, progress=False)
