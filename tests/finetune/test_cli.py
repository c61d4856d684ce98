"""``llamaforge finetune``: the run-control flags of ``train``, the run length it reports."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import llamaforge.train
from llamaforge.cli import build_parser, main, parse
from llamaforge.train.cli import run_flag_overrides
from tests.finetune import test_finetune_run as runs
from tests.train.test_config_change import snapshot
from tests.train.test_trainer import one_thread  # noqa: F401 (autouse fixture)

base = runs.base  # the tiny HF base model and instruction file (a module fixture)
finetune_config = runs.finetune_config

ARGS = ["--quiet", "--no-report"]


def flags_in_messages(folder: Path) -> set[str]:
    """``--flag`` names in the string literals (not docstrings) of the trainer's modules."""
    flags = set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body
            and isinstance(node.body[0], ast.Expr)
        }  # fmt: skip
        for node in ast.walk(tree):
            text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if text and id(node) not in docstrings:
                flags.update(re.findall(r"--[a-z][a-z-]+", node.value))
    return flags


def options(command: str) -> set[str]:
    _, parser = build_parser(command)
    return {flag for action in parser._actions for flag in action.option_strings}


def test_finetune_accepts_every_flag_the_shared_trainers_errors_name() -> None:
    trainer_modules = Path(llamaforge.train.__file__).parent
    own = options("eval-loss") | options("carbon")  # commands of their own in train/
    named = flags_in_messages(trainer_modules) - own - {"--nproc"}  # torchrun's
    assert {"--fresh-run", "--allow-config-change", "--restart-over-damaged"} <= named
    assert named <= options("train") and named <= options("finetune"), named - options("finetune")
    args = parse(["finetune", "c.toml", "--fresh-run", "--allow-config-change",
                  "--restart-over-damaged", "--skip-memory-check", "x.y=1"])  # fmt: skip
    assert run_flag_overrides(args) == [
        "x.y=1", "checkpoint.resume='never'", "checkpoint.allow_config_change=true",
        "checkpoint.restart_over_damaged=true", "checkpoint.fresh_run=true",
        "train.check_memory=false",
    ]  # fmt: skip


def test_an_epochs_run_reports_its_real_length_and_refuses_other_epochs_on_resume(
    base, tmp_path, capsys
) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run")
    epochs = ["train.max_steps=0", "optim.warmup_steps=0"]
    assert main(["finetune", str(config), *epochs, "finetune.epochs=1", *ARGS]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    steps = max(row["step"] for row in rows)
    assert steps < 20  # 1 epoch of ~38 examples, not pretraining's total_tokens
    assert f"finished: step {steps}/{steps}," in capsys.readouterr().out
    before = snapshot(tmp_path / "run")
    assert main(["finetune", str(config), *epochs, "finetune.epochs=2", *ARGS]) == 2
    err = capsys.readouterr().err
    assert "run length (train.max_steps/finetune.epochs) 1.0 -> 2.0 epochs" in err
    assert "--allow-config-change" in err and snapshot(tmp_path / "run") == before
    command = ["finetune", str(config), *epochs, "finetune.epochs=2", "--allow-config-change"]
    assert main([*command, *ARGS]) == 0  # the flag the message names works here
    assert f"finished: step {2 * steps}/{2 * steps}," in capsys.readouterr().out


def test_fresh_run_keeps_the_earlier_runs_data_report(base, tmp_path) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run")
    assert main(["finetune", str(config), "train.max_steps=2", *ARGS]) == 0
    report = (tmp_path / "run" / "finetune_data.json").read_bytes()
    command = ["finetune", str(config), "train.max_steps=2", "finetune.val_fraction=0.5"]
    assert main([*command, "--fresh-run", *ARGS]) == 0
    (previous,) = (tmp_path / "run").glob("previous-*")
    assert (previous / "finetune_data.json").read_bytes() == report
    assert (tmp_path / "run" / "finetune_data.json").read_bytes() != report  # the new run's


def test_resuming_an_exported_model_folder_says_to_start_from_it(base, tmp_path, capsys) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run")
    assert main(["finetune", str(config), "--resume", str(base["hf"]), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "Hugging Face model folder, not a training checkpoint" in err
    assert "finetune.init=" in err and "manifest.json is missing" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
