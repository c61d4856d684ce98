"""The benchmark hook the trainer calls, and the Figure 2 panel in the training report."""

import json

import pytest

from llamaforge.errors import ConfigError
from llamaforge.eval.during_training import TaskEvalHook, flatten_results
from llamaforge.train.report import task_curves, write_report
from tests.eval.tasks.test_commonsense import BOOLQ, RuleModel, write_jsonl
from tests.eval.toy import TOK


def test_hook_scores_like_the_runner_and_restores_train_mode(tmp_path):
    write_jsonl(tmp_path / "boolq" / "validation.jsonl", [BOOLQ, dict(BOOLQ, label=0)])
    model = RuleModel([("^Answer: ", "n", 6.0), ("Answer: ", "c", 3.0)])
    model.train()
    hook = TaskEvalHook("boolq", TOK, data_dir=tmp_path)
    metrics = hook(model)
    # Gold "yes" is right by the "Answer:" rule, gold "no" wrong: 1 of 2.
    assert metrics == {"boolq/acc": 0.5, "boolq/acc_raw": 0.5}
    assert model.training
    with pytest.raises(ConfigError, match="unknown task"):
        TaskEvalHook("boolqq", TOK)


def test_flatten_keeps_numeric_metrics_only():
    results = {"results": {"t": {"metrics": {"acc": 1, "n": 4, "ok": True, "note": "x"}}}}
    assert flatten_results(results) == {"t/acc": 1.0}


def test_report_plots_each_tasks_main_metric_against_tokens(tmp_path):
    rows = [
        {"step": 0, "tokens": 0, "split": "val", "loss": 5.0},
        {"step": 10, "tokens": 100, "split": "train", "loss": 4.0},
        {"step": 10, "tokens": 100, "split": "tasks", "piqa/acc_raw": 0.4, "piqa/acc": 0.5,
         "gsm8k/maj1@1": 0.0},
        {"step": 20, "tokens": 200, "split": "tasks", "piqa/acc_raw": 0.5, "piqa/acc": 0.75,
         "gsm8k/maj1@1": 0.25},
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    curves = task_curves(rows)
    assert curves["piqa"][0] == "acc" and curves["piqa"][1].values == [0.5, 0.75]
    assert curves["gsm8k"][0] == "maj1@1" and curves["gsm8k"][1].tokens == [100.0, 200.0]
    report = write_report(tmp_path, {"params": 1}).read_text()
    assert (tmp_path / "tasks.png").stat().st_size > 0
    assert "| piqa acc (last) | 75.0 % |" in report and "| gsm8k maj1@1 (last) | 25.0 % |" in report


def test_report_without_task_rows_has_no_benchmark_section(tmp_path):
    row = {"step": 1, "tokens": 10, "split": "train", "loss": 3.0}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    report = write_report(tmp_path, {}).read_text()
    assert "Figure 2" not in report and not (tmp_path / "tasks.png").exists()
