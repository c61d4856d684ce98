"""Resuming with another config: curve fields refused unless allowed, the rest noted."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.train.config import TrainConfig, load_train_config
from llamaforge.train.config_change import (
    check_resume_config,
    config_changes,
    refuse_model_folder,
)
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


def _finetune_config(**sections) -> dict:
    tables = {"train": {"max_steps": 10}, "finetune": {"data": "x.jsonl"}}
    for name, table in sections.items():
        tables.setdefault(name, {}).update(table)
    return TrainConfig.from_dict(tables).to_dict()


def test_finetune_and_lora_fields_are_decided_one_by_one() -> None:
    """The per-field rule of config_change's docstring, field by field."""
    saved = _finetune_config(lora={"enabled": True})

    def changed(section: str, **fields) -> tuple[list[str], list[str]]:
        current = _finetune_config(lora={"enabled": True})
        current[section].update(fields)
        return config_changes(saved, current)

    for section, fields in [
        ("finetune", {"data": "y.jsonl"}), ("finetune", {"dataset_split": "test"}),
        ("finetune", {"schema": "alpaca"}), ("finetune", {"template": "chat"}),
        ("finetune", {"train_on_prompt": True}), ("finetune", {"packing": False}),
        ("finetune", {"overlong": "drop"}), ("finetune", {"val_fraction": 0.5}),
        ("finetune", {"warmup_ratio": 0.1}), ("lora", {"alpha": 400.0}),
        ("lora", {"dropout": 0.1}), ("lora", {"rank": 4}), ("lora", {"enabled": False}),
    ]:  # fmt: skip
        curve, free = changed(section, **fields)
        assert len(curve) == 1 and not free, (section, fields, curve, free)
    for section, fields in [
        ("finetune", {"init": "moved/base"}), ("finetune", {"skip_bad_examples": True}),
    ]:  # fmt: skip
        curve, free = changed(section, **fields)
        assert not curve and len(free) == 1, (section, fields, curve, free)


def test_a_finetuning_runs_length_is_compared_in_epochs() -> None:
    one = _finetune_config(train={"max_steps": 0}, finetune={"epochs": 1.0})
    two = _finetune_config(train={"max_steps": 0}, finetune={"epochs": 2.0})
    curve, _ = config_changes(one, two)
    assert curve == ["run length (train.max_steps/finetune.epochs) 1.0 -> 2.0 epochs"]
    curve, _ = config_changes(_finetune_config(train={"max_steps": 4}), one)
    assert curve == ["run length (train.max_steps/finetune.epochs) 4 steps -> 1.0 epochs"]
    assert config_changes(one, one) == ([], [])


def test_fields_of_a_section_that_is_off_in_both_runs_are_only_noted() -> None:
    saved = TrainConfig.from_dict({"train": {"max_steps": 10}}).to_dict()
    current = TrainConfig.from_dict({"train": {"max_steps": 10}}).to_dict()
    current["finetune"].update(template="chat", epochs=5.0)  # no finetune.data: pretraining
    current["lora"].update(alpha=400.0, rank=2)  # lora.enabled false in both
    curve, free = config_changes(saved, current)
    assert not curve and len(free) == 3, free  # finetune.epochs is never a field of its own


def fake_checkpoint(folder: Path, train: dict, manifest: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"format": "llamaforge", "train": train}))
    if manifest:
        (folder / "manifest.json").write_text("{}")
    return folder


def test_lora_shape_changes_are_refused_even_with_allow_config_change(tmp_path) -> None:
    """The weights only load into the saved shape: the message gives the saved values back."""
    saved = _finetune_config(lora={"enabled": True})
    checkpoint = fake_checkpoint(tmp_path / "step_00000004", saved)
    overrides = {"lora": {"enabled": True, "rank": 4, "target_modules": ["wq", "wk"]},
                 "checkpoint": {"allow_config_change": True}}  # fmt: skip
    cfg = TrainConfig.from_dict({**saved, **overrides})
    with pytest.raises(ConfigError) as refused:
        check_resume_config(cfg, checkpoint)
    message = str(refused.value)
    assert "lora.rank 8 -> 4 (use lora.rank=8)" in message
    assert "(use lora.target_modules=wq,wv)" in message and "new train.run_dir" in message
    assert "checkpoint's config.json" not in message and "\n" not in message
    off = TrainConfig.from_dict({**saved, "lora": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"use lora\.enabled=true"):
        check_resume_config(off, checkpoint)


@pytest.mark.parametrize("kind", ["hf", "meta", "native"])
def test_an_exported_model_folder_is_not_resumed_as_a_checkpoint(tmp_path, kind) -> None:
    folder = tmp_path / kind
    folder.mkdir()
    files = {
        "hf": {"config.json": '{"model_type": "llama"}'},
        "meta": {"params.json": "{}", "consolidated.00.pth": ""},
        "native": {"config.json": '{"format": "llamaforge", "model": {}}'},
    }[kind]
    for name, text in files.items():
        (folder / name).write_text(text)
    cfg = TrainConfig.from_dict({"train": {"max_steps": 10}})
    with pytest.raises(CheckpointError) as refused:
        check_resume_config(cfg, folder)
    message = str(refused.value)
    assert "model folder, not a training checkpoint" in message
    assert f"finetune.init={str(folder)!r}" in message and "incomplete" not in message


def test_a_save_cut_short_before_its_manifest_is_left_to_the_checkpoint_checks(tmp_path) -> None:
    folder = fake_checkpoint(tmp_path / "step_00000004", {"train": {}}, manifest=False)
    assert refuse_model_folder(folder) is None  # verify_checkpoint then says "incomplete"
