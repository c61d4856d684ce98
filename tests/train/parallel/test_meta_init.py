"""Meta-device start-up: each rank allocates only its shards, yet starts from the same weights.

The distributed trainer builds the model on ``meta``, shards it, then fills
its shards (``llamaforge.train.parallel.meta_init``). The gathered weights
must equal those of a single-process trainer with the same seed, exactly,
in every layout, including the 2-D dp=2 x tp=2 mesh (4 forked ranks; only
start-up runs, a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.train.parallel.launch import run_ranks, tiny_config


def start_and_gather(config: Path, overrides: list[str], out: Path) -> None:
    """Build the distributed trainer; save the gathered weights and each rank's share."""
    trainer = Trainer(load_train_config(config, overrides), progress=False)
    try:
        local = sum(p.to_local().numel() for p in trainer.model.parameters())
        torch.save(local, out / f"local_{trainer.dist.ctx.rank}.pt")
        full = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True))
        if trainer.is_main:
            torch.save(full, out / "weights.pt")
    finally:
        trainer.close()


@pytest.mark.parametrize(
    ("layout", "world"),
    [(["parallel.dp=2"], 2), (["parallel.tp=2"], 2), (["parallel.dp=2", "parallel.tp=2"], 4)],
    ids=["dp2", "tp2", "dp2xtp2"],
)
def test_sharded_start_equals_the_single_process_weights(tmp_path, layout, world) -> None:
    config = tiny_config(tmp_path)
    overrides = [f"train.run_dir={str(tmp_path / 'run')!r}", "train.seed=7"]
    single = Trainer(load_train_config(config, overrides), progress=False)
    expected = single.model.state_dict()
    total = single.model.num_params()

    run_ranks(start_and_gather, config, [*layout, *overrides], tmp_path, world=world,
              workdir=tmp_path)  # fmt: skip
    gathered = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert list(gathered) == list(expected)
    for name, tensor in expected.items():
        assert torch.equal(gathered[name], tensor), name
    # No rank holds the model: every matrix is split, only the tiny RMSNorm gains may repeat.
    for rank in range(world):
        local = torch.load(tmp_path / f"local_{rank}.pt", weights_only=True)
        assert local < 0.6 * total, (rank, local, total)


def test_the_seed_decides_the_initial_weights(tmp_path) -> None:
    config = tiny_config(tmp_path)
    run = f"train.run_dir={str(tmp_path / 'run')!r}"
    weights = {
        seed: Trainer(
            load_train_config(config, [run, f"train.seed={seed}"]), progress=False
        ).model.state_dict()["layers.0.attention.wq.weight"]
        for seed in (0, 0, 1)
    }
    first = Trainer(load_train_config(config, [run, "train.seed=0"]), progress=False)
    torch.testing.assert_close(first.model.state_dict()["layers.0.attention.wq.weight"],
                               weights[0], rtol=0, atol=0)  # fmt: skip
    assert not torch.equal(weights[0], weights[1])
    # The paper's std (0.02), and wo scaled by 1/sqrt(2 * layers) = 1/2 for 2 layers.
    state = first.model.state_dict()
    assert state["layers.0.attention.wq.weight"].std().item() == pytest.approx(0.02, rel=0.1)
    assert state["layers.0.attention.wo.weight"].std().item() == pytest.approx(0.01, rel=0.1)
