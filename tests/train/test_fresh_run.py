"""``resume = "never"`` over a folder that holds a run: refused, or with --fresh-run moved aside.

Either way the earlier run's checkpoints and metrics survive byte for byte,
and the new run's metrics.jsonl holds only its own rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamaforge.cli import main
from llamaforge.errors import ConfigError
from llamaforge.train.checkpoint import verify_checkpoint
from llamaforge.train.config import load_train_config
from llamaforge.train.fresh_run import move_earlier_run
from tests.train.test_checkpoint_damage import snapshot
from tests.train.test_trainer import (
    make_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    write_config,
)

ARGS = ["--quiet", "--no-report"]


@pytest.fixture
def finished_run(tmp_path) -> tuple[Path, Path]:
    """A finished 4-step run (checkpoints at 2 and 4, keep_last 1) and its config."""
    tokens = make_tokens(tmp_path / "tokens", n_tokens=8_000)
    config = write_config(
        tmp_path / "run.toml", tokens, tmp_path / "run",
        optim={"warmup_steps": 1}, train={"max_steps": 4, "val_every_steps": 0},
        checkpoint={"every_steps": 2, "keep_last": 1},
    )  # fmt: skip
    assert main(["train", str(config), *ARGS]) == 0
    return config, tmp_path / "run"


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_never_over_an_earlier_run_is_refused_with_one_line_and_nothing_changes(
    finished_run, capsys
) -> None:
    config, run_dir = finished_run
    (run_dir / "notes.txt").write_text("mine")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "never", "optim.lr=1e-2", *ARGS]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert f"{run_dir} already holds checkpoints" in line and "step_00000004" in line
    assert "--resume auto" in line and "--fresh-run" in line and "train.run_dir" in line
    assert "Traceback" not in err
    assert snapshot(run_dir) == before


def test_fresh_run_moves_the_earlier_run_aside_and_never_prunes_it(finished_run) -> None:
    config, run_dir = finished_run
    (run_dir / "notes.txt").write_text("mine")
    old_checkpoints = snapshot(run_dir / "checkpoints")
    old_metrics = (run_dir / "metrics.jsonl").read_bytes()
    old_summary = (run_dir / "summary.json").read_bytes()
    # Same steps, keep_last 1: without the move the new step_4 would replace the old one.
    assert main(["train", str(config), "--fresh-run", "optim.lr=1e-2", *ARGS]) == 0

    (previous,) = run_dir.glob("previous-*")
    assert snapshot(previous / "checkpoints") == old_checkpoints  # byte-identical, none pruned
    assert (previous / "metrics.jsonl").read_bytes() == old_metrics
    assert (previous / "summary.json").read_bytes() == old_summary
    assert (run_dir / "notes.txt").read_text() == "mine"  # not ours: neither moved nor deleted
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) == ["step_00000004"]
    verify_checkpoint(run_dir / "checkpoints" / "step_00000004")
    new = [row for row in rows(run_dir) if row["split"] == "train"]
    assert [row["step"] for row in new] == [1, 2, 3, 4]  # only the new run's rows
    assert max(row["lr"] for row in new) == pytest.approx(1e-2)
    saved = json.loads((run_dir / "checkpoints/step_00000004/config.json").read_text())
    assert saved["train"]["optim"]["lr"] == pytest.approx(1e-2)


def test_fresh_run_needs_resume_never(finished_run, capsys) -> None:
    config, run_dir = finished_run
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "auto", "--fresh-run", *ARGS]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert "checkpoint.fresh_run" in line and "checkpoint.resume = 'never'" in line
    assert snapshot(run_dir) == before


def test_move_covers_damaged_checkpoints_and_a_checkpoint_folder_outside_the_run(
    tmp_path,
) -> None:
    run_dir, ckpt_dir = tmp_path / "run", tmp_path / "elsewhere"
    for folder in ("step_00000003", "damaged-step_00000005", ".tmp-step_00000007-x"):
        (ckpt_dir / folder).mkdir(parents=True)
        (ckpt_dir / folder / "f").write_text(folder)
    (run_dir / "tensorboard").mkdir(parents=True)
    (run_dir / "tensorboard" / "events").write_text("tb")
    overrides = [
        f"train.run_dir={str(run_dir)!r}", f"checkpoint.dir={str(ckpt_dir)!r}",
        "checkpoint.resume='never'", "train.max_steps=1",
    ]  # fmt: skip
    config = write_config(tmp_path / "c.toml", tmp_path / "tokens", run_dir)
    with pytest.raises(ConfigError, match="step_00000003"):
        move_earlier_run(load_train_config(config, overrides))
    assert (ckpt_dir / "step_00000003" / "f").is_file()  # refused: nothing moved

    with pytest.warns(UserWarning, match="moved into"):
        (previous,) = move_earlier_run(load_train_config(config, [*overrides, "checkpoint.fresh_run=true"]))  # fmt: skip
    assert (previous / "checkpoints" / "step_00000003" / "f").read_text() == "step_00000003"
    assert (previous / "checkpoints" / "damaged-step_00000005" / "f").is_file()
    assert (previous / "tensorboard" / "events").read_text() == "tb"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [".tmp-step_00000007-x"]  # a crash's
    assert move_earlier_run(load_train_config(config, overrides)) == []  # now free


def test_auto_with_no_checkpoint_moves_the_outputs_there_aside(tmp_path) -> None:
    """Files under the names a run writes, with nothing to resume: kept byte for byte."""
    tokens = make_tokens(tmp_path / "tokens", n_tokens=8_000)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mine = {"summary.json": '{"my": "paper results"}', "report.md": "# my report",
            "metrics.jsonl": '{"step": 99}\n', "notes.txt": "not an output"}  # fmt: skip
    for name, text in mine.items():
        (run_dir / name).write_text(text)
    config = write_config(
        tmp_path / "run.toml", tokens, run_dir, optim={"warmup_steps": 1},
        train={"max_steps": 2, "val_every_steps": 0}, checkpoint={"every_steps": 2},
    )  # fmt: skip
    with pytest.warns(UserWarning, match="no checkpoint to resume.*moved into"):
        assert main(["train", str(config), "--quiet"]) == 0
    (previous,) = run_dir.glob("previous-*")
    for name in ("summary.json", "report.md", "metrics.jsonl"):
        assert (previous / name).read_text() == mine[name], name
    assert (run_dir / "notes.txt").read_text() == "not an output"  # not an output name: stays
    assert max(r["step"] for r in rows(run_dir)) == 2  # only the new run's rows (no step 99)


@pytest.mark.parametrize(
    "edit", [{"step": "abc"}, {"step": -5}, {"loader": "junk"}], ids=["str", "negative", "loader"]
)
def test_a_training_state_that_cannot_be_restored_is_one_line(finished_run, capsys, edit) -> None:
    """state.json rewritten with a matching checksum: the contents still cannot resume."""
    import hashlib

    config, run_dir = finished_run
    (ckpt,) = (run_dir / "checkpoints").glob("step_*")
    state = json.loads((ckpt / "state.json").read_text())
    state.update(edit)
    (ckpt / "state.json").write_text(json.dumps(state))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    data = (ckpt / "state.json").read_bytes()
    entry = manifest["files"]["state.json"]
    entry.update({k: v for k, v in (("size", len(data)), ("sha256", hashlib.sha256(data).hexdigest()))
                  if k in entry})  # fmt: skip
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["train", str(config), "train.max_steps=6", "--allow-config-change", *ARGS]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "training state cannot be restored" in err


@pytest.mark.parametrize("resume", ["never", "auto"])
def test_a_finetuning_runs_data_report_is_an_output_like_the_others(tmp_path, resume) -> None:
    """finetune_data.json: moved aside with the run it belongs to, or the user's, never overwritten."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step_00000003").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_00000003" / "f").write_text("old")
    (run_dir / "finetune_data.json").write_text('{"read": "the earlier run"}')
    config = write_config(tmp_path / "c.toml", tmp_path / "tokens", run_dir)
    overrides = [f"checkpoint.resume={resume!r}", "train.max_steps=1"]
    if resume == "auto":  # nothing to resume: only the outputs are there
        (run_dir / "checkpoints" / "step_00000003" / "f").unlink()
        (run_dir / "checkpoints" / "step_00000003").rmdir()
    else:
        with pytest.raises(ConfigError, match="already holds"):
            move_earlier_run(load_train_config(config, overrides))
        overrides.append("checkpoint.fresh_run=true")
    with pytest.warns(UserWarning, match="moved into"):
        (previous,) = move_earlier_run(
            load_train_config(config, overrides), outputs_only=resume == "auto"
        )
    assert (previous / "finetune_data.json").read_text() == '{"read": "the earlier run"}'
    assert not (run_dir / "finetune_data.json").exists()
