"""Resuming with another config: curve fields refused unless allowed, the rest noted."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from llamaforge.errors import ConfigError
from llamaforge.train.config import TrainConfig, load_train_config
from llamaforge.train.config_change import config_changes
from llamaforge.train.optim import lr_at
from llamaforge.train.report import read_metrics
from llamaforge.train.rng import CheckpointWarning
from llamaforge.train.trainer import Trainer
from tests.train.test_trainer import (
    make_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    write_config,
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def finished_run(tmp_path: Path) -> tuple[Path, Path]:
    """A config and its run folder after 4 steps, checkpointed at 2 and 4."""
    tokens = make_tokens(tmp_path / "tokens", n_tokens=8_000)
    config = write_config(
        tmp_path / "run.toml", tokens, tmp_path / "run",
        optim={"warmup_steps": 1}, train={"max_steps": 4, "val_every_steps": 0},
        checkpoint={"every_steps": 2},
    )  # fmt: skip
    Trainer(load_train_config(config), progress=False).run()
    return config, tmp_path / "run"


def resume(config: Path, *overrides: str) -> tuple[Trainer, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(load_train_config(config, overrides), progress=False)
        trainer.run()
    return trainer, [str(w.message) for w in caught if w.category is CheckpointWarning]


def test_a_changed_learning_rate_is_refused_and_nothing_is_written(finished_run) -> None:
    config, run_dir = finished_run
    before = snapshot(run_dir)
    with pytest.raises(ConfigError) as refused:
        resume(config, "optim.lr=0.01", "train.max_steps=6")
    message = str(refused.value)
    assert "optim.lr 0.003 -> 0.01" in message and "4 -> 6 steps" in message
    assert "--allow-config-change" in message and "\n" not in message
    assert snapshot(run_dir) == before  # no row, no checkpoint, nothing set aside


def test_with_the_flag_the_changed_run_continues_with_a_warning(finished_run) -> None:
    config, run_dir = finished_run
    trainer, notes = resume(
        config, "optim.lr=0.01", "train.max_steps=6", "checkpoint.allow_config_change=true"
    )
    assert trainer.step == 6
    assert len([n for n in notes if "optim.lr 0.003 -> 0.01" in n]) == 1
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    new = load_train_config(config, ["optim.lr=0.01", "train.max_steps=6"])
    assert rows[4]["lr"] == pytest.approx(lr_at(4, new.optim, 6))  # the new schedule from step 5


def test_fields_that_do_not_change_the_curve_may_change_with_a_note(finished_run) -> None:
    config, run_dir = finished_run
    trainer, notes = resume(config, "log.every_steps=3", "checkpoint.keep_last=1")
    assert trainer.step == 4  # resumed the finished run: nothing refused
    (note,) = [n for n in notes if "changed since it was saved" in n]
    assert "log.every_steps 1 -> 3" in note and "checkpoint.keep_last 3 -> 1" in note


def test_which_fields_count_as_changing_the_curve() -> None:
    saved = TrainConfig.from_dict({"train": {"max_steps": 10}}).to_dict()

    def changed(section: str, **fields) -> tuple[list[str], list[str]]:
        current = TrainConfig.from_dict({"train": {"max_steps": 10}}).to_dict()
        current[section].update(fields)
        return config_changes(saved, current)

    for section, fields in [
        ("model", {"dim": 8192}), ("optim", {"warmup_steps": 3}), ("data", {"seq_len": 1024}),
        ("data", {"sources": [{"path": "a", "weight": 1.0}]}), ("data", {"seed": 1}),
        ("data", {"micro_batch_size": 2}), ("train", {"seed": 1}),
        ("train", {"precision": "fp32"}), ("train", {"max_steps": 11}),
    ]:  # fmt: skip
        curve, free = changed(section, **fields)
        assert len(curve) == 1 and not free, (section, fields, curve, free)
    for section, fields in [
        ("log", {"every_steps": 9}), ("checkpoint", {"every_steps": 9}), ("parallel", {"dp": 2}),
        ("train", {"device": "cpu"}), ("train", {"val_every_steps": 5}),
        ("data", {"tokenizer": "t.model"}), ("train", {"activation_checkpointing": "full"}),
    ]:  # fmt: skip
        curve, free = changed(section, **fields)
        assert not curve and len(free) == 1, (section, fields, curve, free)
    for section, fields in [
        ("checkpoint", {"resume": "never"}), ("checkpoint", {"allow_config_change": True}),
        ("train", {"total_tokens": 5}),  # max_steps > 0 wins: the run length is the same
    ]:  # fmt: skip
        assert changed(section, **fields) == ([], []), (section, fields)
