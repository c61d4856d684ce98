"""``llamaforge eval`` end to end: bad input fails before the model loads, finished work is kept."""

import json

import pytest

from llamaforge.cli import main
from llamaforge.eval.tasks.commonsense import PIQA as PIQATask
from tests.eval.tasks.test_commonsense import BOOLQ, PIQA, SIQA, write_jsonl
from tests.eval.test_eval_cli import checkpoint  # noqa: F401 (the tiny model fixture)


@pytest.fixture
def data_dir(tmp_path):
    write_jsonl(tmp_path / "data" / "boolq" / "validation.jsonl", [BOOLQ, dict(BOOLQ, label=0)])
    write_jsonl(tmp_path / "data" / "piqa" / "validation.jsonl", [PIQA, dict(PIQA, label=0)])
    write_jsonl(tmp_path / "data" / "siqa" / "validation.jsonl", [SIQA])
    return tmp_path / "data"


@pytest.fixture
def argv(checkpoint, data_dir):  # noqa: F811
    return ["eval", str(checkpoint), "--data-dir", str(data_dir), "--device", "cpu",
            "--dtype", "float32", "--no-progress", "--tasks", "boolq,piqa"]  # fmt: skip


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the model is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("llamaforge.eval.cli.load_model_and_tokenizer", refuse)


def test_bad_output_paths_fail_before_the_model_loads(argv, tmp_path, capsys, no_model):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (tmp_path / "outdir").mkdir()
    cases = [
        (["--out", str(notes)], "not a results JSON"),
        (["--out", str(notes), "--overwrite"], "not a results JSON"),
        (["--markdown", str(notes), "--overwrite"], "not a Markdown report"),
        (["--out", str(tmp_path / "outdir")], "is a folder"),
        (["--out", str(notes / "r.json")], "is a file, not a folder"),
        (["--out", str(tmp_path / "x"), "--markdown", str(tmp_path / "x")], "both name"),
    ]
    for extra, message in cases:
        assert main([*argv, *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert notes.read_text() == "mine\n"


def test_bad_numbers_fail_before_the_model_loads(argv, capsys, no_model):
    for flag in ("--batch-size", "--limit"):
        assert main([*argv, flag, "0"]) == 2
        assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err


def test_a_bad_record_in_the_second_task_fails_before_the_model_loads(
    argv, data_dir, tmp_path, capsys, no_model
):
    bad = data_dir / "piqa" / "validation.jsonl"
    write_jsonl(bad, [PIQA, dict(PIQA, sol2=None)])
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err.startswith(f"llamaforge eval: error: {bad}:2: task piqa: ")
    assert not (tmp_path / "r.json").exists()


def test_a_damaged_compare_file_fails_before_the_model_loads(argv, tmp_path, capsys, no_model):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"results": {"boolq": {"metrics": {"acc": "high"}}}}))
    assert main([*argv, "--compare", str(earlier)]) == 2
    assert "earlier.json: results.boolq.metrics.acc must be a number" in capsys.readouterr().err


def test_reruns_need_overwrite_and_never_replace_the_compared_run(argv, tmp_path, capsys):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    assert main([*argv, "--out", str(out), "--markdown", str(md)]) == 0
    first = out.read_text()
    assert main([*argv, "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--compare", str(out), "--out", str(out), "--overwrite"]) == 2
    assert "also given to --compare" in capsys.readouterr().err
    assert out.read_text() == first
    link = tmp_path / "latest.json"
    link.symlink_to(out)
    assert main([*argv, "--tasks", "boolq", "--out", str(link), "--overwrite"]) == 0
    assert link.is_symlink() and list(json.loads(out.read_text())["results"]) == ["boolq"]
    assert main([*argv, "--markdown", str(md), "--overwrite"]) == 0
    assert md.read_text().startswith("## Table 3")


def fail_piqa(monkeypatch, error):
    def evaluate(self, ctx, docs, fewshot, shots):
        raise error

    monkeypatch.setattr(PIQATask, "evaluate", evaluate)


def test_a_task_failing_mid_run_keeps_the_finished_ones_marked_partial(
    argv, tmp_path, monkeypatch, capsys
):
    fail_piqa(monkeypatch, RuntimeError("CUDA out of memory"))
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    with pytest.raises(RuntimeError, match="out of memory"):
        main([*argv, "--tasks", "boolq,piqa,siqa", "--out", str(out), "--markdown", str(md)])
    saved = json.loads(out.read_text())
    assert list(saved["results"]) == ["boolq"]
    assert saved["results"]["boolq"]["n"] == 2
    assert saved["partial"] == {
        "failed_task": "piqa", "error": "RuntimeError: CUDA out of memory", "not_run": ["siqa"],
    }  # fmt: skip
    assert saved["config"]["tasks"] == ["boolq", "piqa", "siqa"]
    assert "Partial runs, stopped by an error: tiny (piqa failed; not run: siqa)." in md.read_text()
    assert "piqa failed; the finished tasks (boolq) are in" in capsys.readouterr().err
    # The partial file is ours: a rerun may replace it, and it reads back for --compare.
    monkeypatch.undo()
    assert main([*argv, "--compare", str(out), "--out", str(out.with_name("new.json"))]) == 0


def test_an_interrupted_run_without_outputs_prints_the_finished_tasks(argv, monkeypatch, capsys):
    fail_piqa(monkeypatch, KeyboardInterrupt())
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert "| Model | BoolQ |" in captured.out and "Partial runs" in captured.out
    assert "are printed above" in captured.err
