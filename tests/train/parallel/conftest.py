"""Runs shared by the distributed tests: one single-process reference, one dp=2 run.

Both train the same tiny config for 6 steps with checkpoints at steps 3 and 6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.train.parallel.launch import run_ranks, tiny_config, train


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread per process: forked ranks share 2 cores with everything else."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The config and run folder of one single-process fp32 run (no process group)."""
    root = tmp_path_factory.mktemp("reference")
    config = tiny_config(root)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = load_train_config(config, [f"train.run_dir={str(root / 'single')!r}"])
    Trainer(cfg, progress=False).run()
    torch.set_num_threads(before)
    return config, root / "single"


@pytest.fixture(scope="session")
def dp2_run(reference, tmp_path_factory) -> Path:
    """The same config trained with FSDP on 2 ranks; its checkpoints are sharded (DCP)."""
    config, _ = reference
    root = tmp_path_factory.mktemp("dp2")
    run_ranks(train, config, ["parallel.dp=2", f"train.run_dir={str(root / 'run')!r}"],
              workdir=root)  # fmt: skip
    return root / "run"
