"""``[benchmarks]``: tasks scored on the live model during ``llamaforge train`` (Figure 2)."""

from __future__ import annotations

import pytest

from llamaforge.cli import main
from llamaforge.errors import ConfigError
from llamaforge.eval.runner import evaluate_tasks
from llamaforge.formats.native import load_pretrained
from llamaforge.tokenizer import Tokenizer, train_tokenizer
from llamaforge.train.report import read_metrics
from tests.eval.tasks.test_commonsense import BOOLQ, write_jsonl
from tests.train.test_trainer import (
    make_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    write_config,
)


@pytest.fixture
def setup(tmp_path):
    lines = [f"is the answer to question {i} yes or no? {i * 7} cats" for i in range(300)]
    tok = tmp_path / "tok.model"
    train_tokenizer(tok, texts=lines, vocab_size=320, progress=False, num_threads=1)
    tasks = tmp_path / "tasks"
    write_jsonl(tasks / "boolq" / "validation.jsonl", [BOOLQ, dict(BOOLQ, label=0)])
    tokens = make_tokens(tmp_path / "tokens", n_tokens=8_000)
    return tmp_path, tok, tasks, tokens


def test_benchmarks_are_logged_at_start_every_n_steps_and_end(setup):
    tmp_path, tok, tasks, tokens = setup
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "cfg.toml", tokens, run_dir,
        model={"vocab_size": 320},
        data={"tokenizer": str(tok)},
        train={"max_steps": 5, "val_every_steps": 0},
        benchmarks={"tasks": "boolq", "every_steps": 2, "data_dir": str(tasks)},
    )  # fmt: skip
    assert main(["train", str(config), "--quiet"]) == 0
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "tasks"]
    assert [r["step"] for r in rows] == [0, 2, 4, 5]
    assert all(set(r) >= {"boolq/acc", "boolq/acc_raw", "tokens"} for r in rows)
    assert [r["tokens"] for r in rows] == sorted(r["tokens"] for r in rows) and rows[0][
        "tokens"
    ] == 0
    # The last logged number is what `llamaforge eval` gives for the final checkpoint.
    model, _ = load_pretrained(run_dir / "checkpoints" / "step_00000005")
    again = evaluate_tasks(model, Tokenizer(str(tok)), "boolq", data_dir=tasks, progress=False)
    assert again["results"]["boolq"]["metrics"]["acc"] == rows[-1]["boolq/acc"]
    assert "Benchmarks during training" in (run_dir / "report.md").read_text()
    assert (run_dir / "tasks.png").is_file()


def test_benchmarks_need_the_tokenizer(setup):
    tmp_path, _, tasks, tokens = setup
    config = write_config(
        tmp_path / "cfg.toml", tokens, tmp_path / "run", model={"vocab_size": 320},
        benchmarks={"tasks": "boolq", "data_dir": str(tasks)},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="data.tokenizer"):
        from llamaforge.train.cli import benchmark_hooks
        from llamaforge.train.config import load_train_config

        benchmark_hooks(load_train_config(config))
