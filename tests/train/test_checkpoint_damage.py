"""Damaged checkpoints: refused or set aside, never counted toward keep_last, never deleted.

Also a save that fails half-way (disk full): one line, and the previous
checkpoint survives byte for byte.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import pytest

from llamaforge.cli import main
from llamaforge.train import checkpoint as checkpoint_module
from llamaforge.train.checkpoint import CheckpointManager, CheckpointWarning, verify_checkpoint
from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.train.test_checkpoint import save, trained
from tests.train.test_trainer import (
    make_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    write_config,
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def truncate(folder: Path, name: str = "model.safetensors") -> None:
    file = folder / name
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def flip_byte(folder: Path, name: str = "optimizer.pt") -> None:
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / name).write_bytes(bytes(data))


def steps(checkpoints: Path, prefix: str = "step_") -> list[str]:
    return sorted(p.name for p in checkpoints.iterdir() if p.name.startswith(prefix))


def finished_run(tmp_path: Path) -> tuple[Path, Path]:
    """A finished 6-step run; keep_last = 2 kept checkpoints 4 and 6."""
    tokens = make_tokens(tmp_path / "tokens", n_tokens=8_000)
    config = write_config(
        tmp_path / "run.toml", tokens, tmp_path / "run",
        optim={"warmup_steps": 1}, train={"max_steps": 6, "val_every_steps": 0},
        checkpoint={"every_steps": 2, "keep_last": 2},
    )  # fmt: skip
    Trainer(load_train_config(config), progress=False).run()
    assert steps(tmp_path / "run" / "checkpoints") == ["step_00000004", "step_00000006"]
    return config, tmp_path / "run"


@pytest.fixture
def damaged_run(tmp_path: Path) -> tuple[Path, Path]:
    """:func:`finished_run` with both of its checkpoints damaged (two different ways)."""
    config, run_dir = finished_run(tmp_path)
    truncate(run_dir / "checkpoints" / "step_00000006")
    flip_byte(run_dir / "checkpoints" / "step_00000004")
    return config, run_dir


def test_every_checkpoint_damaged_refuses_to_start_over_and_changes_nothing(
    damaged_run, capsys
) -> None:
    config, run_dir = damaged_run
    before = snapshot(run_dir)
    assert main(["train", str(config), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert "every checkpoint in" in line and "damaged (2;" in line
    assert "--restart-over-damaged" in line and "Traceback" not in err
    assert snapshot(run_dir) == before  # not restarted, nothing renamed or deleted


def test_restart_over_damaged_sets_them_aside_and_keeps_keep_last_valid_ones(damaged_run) -> None:
    config, run_dir = damaged_run
    checkpoints = run_dir / "checkpoints"
    damaged = {name: snapshot(checkpoints / name) for name in steps(checkpoints)}
    metrics_before = (run_dir / "metrics.jsonl").read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_train_config(config, ["checkpoint.restart_over_damaged=true"])
        result = Trainer(cfg, progress=False).run()
    assert result.steps == 6
    notes = [str(w.message) for w in caught if w.category is CheckpointWarning]
    assert len(notes) == 2, notes  # the damage once (not once per save), and the move below
    assert notes[0].count("skipping checkpoint") == 2 and "not deleted" in notes[0]
    # starting over at step 0: the earlier run's outputs are moved aside, byte for byte
    assert "moved into" in notes[1]
    (previous,) = run_dir.glob("previous-*")
    assert (previous / "metrics.jsonl").read_bytes() == metrics_before
    appended = (run_dir / "metrics.jsonl").read_text().splitlines()
    train_rows = [json.loads(line) for line in appended if '"train"' in line]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]  # started from step 0
    # keep_last = 2 counts only intact checkpoints: the two newest of the new run...
    assert steps(checkpoints) == ["step_00000004", "step_00000006"]
    for name in steps(checkpoints):
        verify_checkpoint(checkpoints / name)
    # ...and the damaged ones are kept, byte for byte, under another name.
    assert steps(checkpoints, "damaged-") == ["damaged-step_00000004", "damaged-step_00000006"]
    for name, files in damaged.items():
        assert snapshot(checkpoints / f"damaged-{name}") == files


def test_a_damaged_newest_is_set_aside_not_replaced_when_falling_back(tmp_path) -> None:
    config, run_dir = finished_run(tmp_path)
    checkpoints = run_dir / "checkpoints"
    truncate(checkpoints / "step_00000006")
    damaged = snapshot(checkpoints / "step_00000006")
    with pytest.warns(CheckpointWarning, match="skipping checkpoint .*step_00000006.*set aside"):
        trainer = Trainer(load_train_config(config), progress=False)
        trainer.run()
    assert trainer.step == 6  # redid steps 5 and 6 from step 4
    verify_checkpoint(checkpoints / "step_00000006")  # the new one
    assert snapshot(checkpoints / "damaged-step_00000006") == damaged  # the old one, kept


def test_pruning_counts_only_intact_checkpoints(tmp_path: Path) -> None:
    model, optimizer = trained()
    for step in (1, 2, 3):
        save(CheckpointManager(tmp_path, keep_last=2), step, model, optimizer)
    flip_byte(tmp_path / "step_00000003")
    damaged = snapshot(tmp_path / "step_00000003")
    manager = CheckpointManager(tmp_path, keep_last=2)  # a new process: nothing verified yet
    with pytest.warns(CheckpointWarning, match="step_00000003.*sha256.*set aside"):
        save(manager, 4, model, optimizer)
    assert steps(tmp_path) == ["step_00000002", "step_00000004"]  # two intact ones kept
    assert snapshot(tmp_path / "damaged-step_00000003") == damaged


def test_the_newer_checkpoints_warning_is_printed_once(tmp_path: Path) -> None:
    model, optimizer = trained()
    save(CheckpointManager(tmp_path, keep_last=0), 100, model, optimizer)
    manager = CheckpointManager(tmp_path, keep_last=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2, 3):
            save(manager, step, model, optimizer)
    assert len([w for w in caught if "newer than" in str(w.message)]) == 1


def test_a_full_disk_mid_save_is_one_line_and_the_previous_checkpoint_survives(
    tmp_path, capsys, monkeypatch
) -> None:
    tokens = make_tokens(tmp_path / "tokens", n_tokens=8_000)
    config = write_config(
        tmp_path / "run.toml", tokens, tmp_path / "run",
        optim={"warmup_steps": 1}, train={"max_steps": 4, "val_every_steps": 0},
        checkpoint={"every_steps": 2},
    )  # fmt: skip
    real_save_file, calls = checkpoint_module.save_safetensors, []

    def disk_fills_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 1:
            return real_save_file(tensors, path, metadata=metadata)
        Path(path).write_bytes(b"\0" * 1000)  # what fitted
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint_module, "save_safetensors", disk_fills_up)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert main(["train", str(config), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert "step_00000004" in line and "No space left on device" in line
    assert "previous checkpoints are unchanged" in line and "Traceback" not in err
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000002"]  # no temporaries
    verify_checkpoint(checkpoints / "step_00000002")

    monkeypatch.setattr(checkpoint_module, "save_safetensors", real_save_file)  # space freed
    assert main(["train", str(config), "--quiet", "--no-report"]) == 0
    assert steps(checkpoints) == ["step_00000002", "step_00000004"]
