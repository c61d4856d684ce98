"""``read_results`` refuses, naming the file and field, every shape ``markdown_report`` cannot use."""

import json

import pytest

from llamaforge.errors import DataError
from llamaforge.eval.report import markdown_report, read_results

ENTRY = {"metrics": {"acc": 0.5, "n": 2}, "shots": 0, "title": "BoolQ", "table": "Table 3: x"}
RUN = {"results": {"boolq": ENTRY}, "config": {"checkpoint": "ck/tiny", "limit": None}}


def entry(**fields):
    return {"results": {"boolq": {**ENTRY, **fields}}}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"results": {"boolq": 5}}, "results.boolq must be an object"),
        (entry(shots=[1]), "results.boolq.shots must be a whole number"),
        (entry(shots=-1), "results.boolq.shots must be a whole number"),
        (entry(shots=True), "results.boolq.shots must be a whole number"),
        (entry(metrics=[0.5]), "results.boolq.metrics must be an object"),
        (entry(metrics={"acc": "0.5"}), "results.boolq.metrics.acc must be a number"),
        (entry(metrics={"acc": None}), "results.boolq.metrics.acc must be a number"),
        (entry(columns=[["a"]]), "results.boolq.columns must be [metric, header] pairs"),
        (entry(columns=[["acc", 1]]), "results.boolq.columns must be [metric, header] pairs"),
        (entry(columns="acc"), "results.boolq.columns must be a list"),
        (entry(title=3), "results.boolq.title must be a string"),
        (entry(table=None), "results.boolq.table must be a string"),
        ({"results": {}, "config": "x"}, "config must be an object"),
        ({"results": {}, "config": {"checkpoint": 3}}, "config.checkpoint must be a string"),
        ({"results": {}, "config": {"model": []}}, "config.model must be an object"),
        ({"results": {}, "config": {"model": {"name": 1}}}, "config.model.name must be a"),
        ({"results": {}, "config": {"limit": "2"}}, "config.limit must be a whole number"),
        ({"results": {}, "partial": "yes"}, "partial must be an object"),
        ({"results": {}, "partial": {"not_run": "piqa"}}, "partial.not_run must be a list"),
    ],
)
def test_each_field_the_report_reads_is_checked(tmp_path, data, field):
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as error:
        read_results(path)
    assert str(error.value).startswith(f"{path}: {field}"), str(error.value)
    assert "run `llamaforge eval --out` again" in str(error.value)


def test_a_valid_file_reads_back_and_reports(tmp_path):
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({**RUN, "partial": {"failed_task": "piqa", "not_run": []}}))
    data = read_results(path)
    table = markdown_report(data)
    assert "| tiny | 50.0 |" in table
    assert "tiny (piqa failed)" in table
