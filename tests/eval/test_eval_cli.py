"""``llamaforge eval`` end to end on a tiny real checkpoint and local task files."""

import json

import pytest
import torch

from llamaforge.cli import main
from llamaforge.eval.runner import evaluate_tasks
from tests.eval.tasks.test_commonsense import BOOLQ, PIQA, write_jsonl


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from llamaforge.formats import save_pretrained
    from llamaforge.model import ModelConfig, build_model
    from llamaforge.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("ckpt")
    lines = [f"Question: is the sky blue {i}?\nAnswer: yes, the jar opens {i}." for i in range(200)]
    tokenizer = train_tokenizer(
        folder / "tok.model", texts=lines, vocab_size=300, progress=False, num_threads=1
    )
    torch.manual_seed(0)
    config = ModelConfig(
        dim=32, n_layers=2, n_heads=4, vocab_size=tokenizer.vocab_size, max_seq_len=64,
        multiple_of=16, init_std=0.2,
    )  # fmt: skip
    return save_pretrained(
        build_model(config), folder / "tiny", tokenizer_path=folder / "tok.model"
    )


@pytest.fixture
def data_dir(tmp_path):
    docs = [BOOLQ, dict(BOOLQ, question="is grass red", label=0), dict(BOOLQ, label=0)]
    write_jsonl(tmp_path / "data" / "boolq" / "validation.jsonl", docs)
    piqa = [PIQA, dict(PIQA, goal="Close a door", label=0), dict(PIQA, sol1="x")]
    write_jsonl(tmp_path / "data" / "piqa" / "validation.jsonl", piqa)
    return tmp_path / "data"


def test_eval_writes_results_and_prints_the_table(checkpoint, data_dir, tmp_path, capsys):
    out, md = tmp_path / "res" / "results.json", tmp_path / "res" / "results.md"
    argv = ["eval", str(checkpoint), "--tasks", "boolq,piqa", "--data-dir", str(data_dir)]
    argv += ["--limit", "2", "--device", "cpu", "--dtype", "float32", "--batch-size", "3"]
    assert main([*argv, "--out", str(out), "--markdown", str(md), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed == md.read_text()
    assert "| Model | BoolQ | PIQA |" in printed
    assert "| tiny |" in printed
    results = json.loads(out.read_text())
    assert [results["results"][t]["n"] for t in ("boolq", "piqa")] == [2, 2]
    assert results["config"]["checkpoint"] == str(checkpoint)
    assert results["config"]["model"]["dim"] == 32

    # The same numbers as the Python API on the same checkpoint.
    from llamaforge.formats import load_any
    from llamaforge.tokenizer import Tokenizer

    model, tokenizer_path = load_any(checkpoint)
    direct = evaluate_tasks(
        model, Tokenizer(tokenizer_path), "boolq,piqa", limit=2, data_dir=data_dir,
        progress=False, batch_size=1,
    )  # fmt: skip
    for task in ("boolq", "piqa"):
        assert results["results"][task]["metrics"] == direct["results"][task]["metrics"]

    # An earlier run becomes an extra row.
    assert main([*argv, "--tasks", "piqa", "--compare", str(out), "--no-progress"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert len(rows) == 2 and rows[1].startswith("| tiny | - | ")  # this run has no BoolQ


def test_user_errors_are_reported_without_traceback(checkpoint, data_dir, tmp_path, capsys):
    base = ["eval", str(checkpoint), "--device", "cpu", "--no-progress"]
    assert main([*base, "--tasks", "boolq,nope", "--data-dir", str(data_dir)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main([*base, "--tasks", "siqa", "--data-dir", str(data_dir)]) == 2
    assert "siqa/validation.jsonl does not exist" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "none"), "--tasks", "boolq"]) == 2
    assert "no such model folder" in capsys.readouterr().err
