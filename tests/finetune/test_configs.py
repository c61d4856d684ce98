"""The shipped finetuning configs load and carry the recipes they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaforge.errors import ConfigError
from llamaforge.finetune.templates import load_template
from llamaforge.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_finetune_config_loads(path: Path) -> None:
    cfg = load_train_config(path)
    assert cfg.finetune.enabled and cfg.finetune.init and cfg.finetune.epochs > 0
    assert cfg.train.max_steps == 0  # the step count comes from the epochs
    load_template(cfg.finetune.template)


def test_alpaca_recipe() -> None:
    cfg = load_train_config(CONFIGS / "alpaca-7b.toml")
    rows = cfg.data.batch_tokens // cfg.data.seq_len
    assert (cfg.finetune.epochs, cfg.optim.lr, rows, cfg.data.seq_len) == (3, 2e-5, 128, 512)
    assert (cfg.finetune.warmup_ratio, cfg.optim.weight_decay, cfg.optim.min_lr_ratio) == (
        0.03, 0.0, 0.0,
    )  # fmt: skip
    assert not cfg.finetune.packing and not cfg.finetune.train_on_prompt


def test_finetune_and_lora_fields_are_checked(tmp_path: Path) -> None:
    path = CONFIGS / "tiny-cpu.toml"
    cfg = load_train_config(path, ["lora.target_modules=wq,wk,wo", "lora.rank=4"])
    assert cfg.lora.target_modules == ["wq", "wk", "wo"] and cfg.lora.rank == 4
    for override, match in [
        ("finetune.schema=sharegpt", "finetune.schema"),
        ("finetune.val_fraction=1.5", "finetune.val_fraction"),
        ("finetune.overlong=wrap", "finetune.overlong"),
        ("lora.rank=0", "lora.rank"),
        ("lora.dropout=1", "lora.dropout"),
        ("finetune.colour=red", "finetune.colour"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_train_config(path, [override])


def test_finetune_cli_rejects_a_pretraining_config_and_bad_data(tmp_path, capsys, tokenizer):
    from llamaforge.cli import main

    pretrain = CONFIGS.parent / "tiny-1m.toml"
    assert main(["finetune", str(pretrain)]) == 2
    assert "finetune.data is not set" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": ""}\n', encoding="utf-8")
    overrides = [f"finetune.data={bad}", "finetune.init=", f"data.tokenizer={tokenizer.model_path}",
                 f"train.run_dir={tmp_path / 'run'}", "train.device=cpu"]  # fmt: skip
    assert main(["finetune", str(CONFIGS / "tiny-cpu.toml"), *overrides, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl:1: empty response" in err  # one line, no traceback
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_a_finetuning_runs_length_is_one_explicit_field() -> None:
    """Epochs or steps, never both, never pretraining's token budget; neither: 3 epochs."""
    from llamaforge.finetune.config import DEFAULT_EPOCHS

    path = CONFIGS / "tiny-cpu.toml"  # max_steps = 0, epochs = 2
    assert load_train_config(path).finetune.epochs == 2
    cfg = load_train_config(path, ["finetune.epochs=0"])
    assert cfg.finetune.epochs == DEFAULT_EPOCHS == 3 and cfg.train.max_steps == 0
    assert cfg.to_dict()["finetune"]["epochs"] == 3  # checkpoints record it
    steps = load_train_config(path, ["finetune.epochs=0", "train.max_steps=7"])
    assert (steps.train.max_steps, steps.finetune.epochs, steps.max_steps) == (7, 0, 7)
    with pytest.raises(ConfigError) as both:
        load_train_config(path, ["train.max_steps=4"])
    assert "train.max_steps = 4 and finetune.epochs = 2 both set the run length" in str(both.value)
    assert "train.max_steps=0" in str(both.value) and "finetune.epochs=0" in str(both.value)
    with pytest.raises(ConfigError, match=r"train\.total_tokens = 5000 does not apply"):
        load_train_config(path, ["train.total_tokens=5000"])
    pretraining = load_train_config(CONFIGS.parent / "tiny-1m.toml")
    assert pretraining.finetune.epochs == 0  # nothing changes without finetune.data
