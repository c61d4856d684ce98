"""The Markdown report: one table per paper table, tasks as columns, one row per model."""

import json

import pytest

from llamaforge.errors import DataError
from llamaforge.eval.report import markdown_report, read_results

T3 = "Table 3: Common sense reasoning"
T9 = "Table 9: Massive Multitask Language Understanding (MMLU)"
MMLU_COLUMNS = [
    ["acc_humanities", "Humanities"],
    ["acc_stem", "STEM"],
    ["acc_social_sciences", "Social Sciences"],
    ["acc_other", "Other"],
    ["acc", "Average"],
]


def entry(title, table, metrics, shots=0, columns=None):
    result = {"metrics": metrics, "n": 10, "shots": shots, "title": title, "table": table}
    if columns:
        result["columns"] = columns
    return result


def run(checkpoint, results, limit=None):
    return {"results": results, "config": {"checkpoint": checkpoint, "limit": limit, "model": {}}}


MMLU = entry(
    "MMLU",
    T9,
    {"acc": 0.3512, "acc_micro": 0.3, "acc_humanities": 0.3, "acc_stem": 0.25,
     "acc_social_sciences": 0.4, "acc_other": 0.456, "n": 10},
    shots=5,
    columns=MMLU_COLUMNS,
)  # fmt: skip


def test_one_model_layout_and_percentages():
    results = {
        "mmlu": MMLU,  # listed first, reported after Table 3: tables follow the paper
        "boolq": entry("BoolQ", T3, {"acc": 0.7654, "acc_raw": 0.5, "n": 10}),
        "piqa": entry("PIQA", T3, {"acc": 0.5, "acc_raw": 0.25, "n": 10}),
    }
    assert markdown_report(run("/runs/llama-7b", results)) == (
        f"## {T3}\n"
        "\n"
        "| Model | BoolQ | PIQA |\n"
        "| --- | ---: | ---: |\n"
        "| llama-7b | 76.5 | 50.0 |\n"
        "\n"
        f"## {T9}\n"
        "\n"
        "| Model | Humanities | STEM | Social Sciences | Other | Average |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        "| llama-7b | 30.0 | 25.0 | 40.0 | 45.6 | 35.1 |\n"
    )


def test_several_models_are_rows_missing_cells_dashed_and_limited_runs_flagged():
    first = run("/ckpt/step_100", {"boolq": entry("BoolQ", T3, {"acc": 0.5, "n": 3})}, limit=3)
    second = run(
        "/ckpt/step_200",
        {
            "boolq": entry("BoolQ", T3, {"acc": 0.625, "n": 8}),
            "hellaswag": entry("HellaSwag", T3, {"acc": 0.25, "n": 8}),
        },
    )
    text = markdown_report([first, second])
    assert text.splitlines()[2:6] == [
        "| Model | BoolQ | HellaSwag |",
        "| --- | ---: | ---: |",
        "| step_100 | 50.0 | - |",
        "| step_200 | 62.5 | 25.0 |",
    ]
    assert text.rstrip().endswith("not comparable with the paper: step_100 (--limit 3).")
    labelled = markdown_report([first, second], labels=["small", "big"])
    assert "| small | 50.0 | - |" in labelled and "| big | 62.5 | 25.0 |" in labelled


def test_same_task_with_different_shots_gets_a_column_per_shot_count():
    t4 = "Table 4: NaturalQuestions"
    zero = run("/c/a", {"nq": entry("NQ", t4, {"exact_match": 0.1, "n": 5}, shots=0)})
    five = run("/c/b", {"nq": entry("NQ", t4, {"exact_match": 0.2, "n": 5}, shots=5)})
    lines = markdown_report([zero, five]).splitlines()
    assert lines[2] == "| Model | NQ exact_match (0-shot) | NQ exact_match (5-shot) |"
    assert lines[4:6] == ["| a | 10.0 | - |", "| b | - | 20.0 |"]


def test_prompts_that_lost_shots_are_noted_under_the_tables():
    crowded = dict(MMLU, metrics={**MMLU["metrics"], "prompts_fewer_shots": 3,
                                  "prompts_truncated": 0})  # fmt: skip
    clean = dict(MMLU, metrics={**MMLU["metrics"], "prompts_fewer_shots": 0})
    text = markdown_report([run("/ck/tight", {"mmlu": crowded}), run("/ck/wide", {"mmlu": clean})])
    assert "MMLU (tight, 5-shot): 3 of 10 with fewer shots, 0 cut from the left" in text
    assert "(wide" not in text
    assert "did not fit" not in markdown_report(run("/ck/wide", {"mmlu": clean}))


def test_read_results_rejects_other_json(tmp_path):
    good = tmp_path / "r.json"
    good.write_text(json.dumps(run("/c/x", {"mmlu": MMLU})))
    assert "| x | 30.0 | 25.0 | 40.0 | 45.6 | 35.1 |" in markdown_report(read_results(good))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="bad.json: not a results file"):
        read_results(bad)
    with pytest.raises(DataError, match="missing.json"):
        read_results(tmp_path / "missing.json")
