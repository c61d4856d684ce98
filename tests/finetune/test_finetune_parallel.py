"""Finetuning under FSDP2 and TP on 2 CPU ranks follows the single-process curve.

Ranks hold different numbers of scored (response) tokens, so this fails if a
rank's loss were its own mean (a mean of means) instead of its share of the
global token mean, or if the start weights were not loaded into the shards.
"""

from __future__ import annotations

import pytest
import torch

from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.finetune.test_finetune_run import base, finetune_config  # noqa: F401 (fixture)
from tests.train.parallel.launch import curve, run_ranks, train
from tests.train.test_trainer import one_thread  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("layout", [["parallel.dp=2"], ["parallel.tp=2"]], ids=["fsdp", "tp"])
def test_distributed_finetune_matches_one_process(base, tmp_path, layout) -> None:  # noqa: F811
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "single")
    steps = ["train.max_steps=4", "train.val_every_steps=2", "checkpoint.every_steps=4"]
    Trainer(load_train_config(config, steps), progress=False).run()
    run_dir = tmp_path / "dist"
    run_ranks(train, config, [*steps, *layout, f"train.run_dir={str(run_dir)!r}"], workdir=tmp_path)
    expected, got = curve(tmp_path / "single"), curve(run_dir)
    assert [s for s, _, _ in got] == [1, 2, 3, 4]
    torch.testing.assert_close(
        torch.tensor([(loss, norm) for _, loss, norm in got], dtype=torch.float64),
        torch.tensor([(loss, norm) for _, loss, norm in expected], dtype=torch.float64),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    val_expected, val_got = curve(tmp_path / "single", "val"), curve(run_dir, "val")
    torch.testing.assert_close(
        [v for _, v, _ in val_got], [v for _, v, _ in val_expected], rtol=1e-4, atol=1e-5
    )
