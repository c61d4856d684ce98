"""Launch checks and parallel settings that need no process group."""

from __future__ import annotations

import pytest
import torch

from llamaforge.errors import ConfigError
from llamaforge.train.config import load_train_config
from llamaforge.train.parallel import init_parallel, wants_distributed
from llamaforge.train.parallel.fsdp import mixed_precision_policy
from tests.train.parallel.launch import tiny_config


def test_distributed_only_under_torchrun_or_when_asked(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not wants_distributed(1, 1)
    assert wants_distributed(2, 1) and wants_distributed(1, 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert wants_distributed(1, 1)


def test_dp_times_tp_must_equal_the_world_size(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match=r"torchrun --nproc_per_node 4 -m llamaforge train"):
        init_parallel(2, 2, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match=r"2 \* 1 = 2.*WORLD_SIZE=4.*product is 4"):
        init_parallel(2, 1, "cpu")
    assert not torch.distributed.is_initialized()  # checked before joining anything


@pytest.mark.parametrize(
    ("override", "field"),
    [("model.vocab_size=301", "model.vocab_size"), ("model.n_heads=2", None)],
)
def test_tensor_parallel_shapes_must_split_evenly(tmp_path, override, field) -> None:
    config = tiny_config(tmp_path)
    if field is None:  # 2 heads split over tp=2, not over tp=4
        load_train_config(config, ["parallel.tp=2", override])
        with pytest.raises(ConfigError, match="model.n_heads"):
            load_train_config(config, ["parallel.tp=4", override])
        return
    with pytest.raises(ConfigError, match=rf"{field} \(301\) must be divisible by parallel.tp"):
        load_train_config(config, ["parallel.tp=2", override])


def test_bf16_means_bf16_compute_and_fp32_gradient_reduction() -> None:
    bf16, fp32 = mixed_precision_policy("bf16"), mixed_precision_policy("fp32")
    assert (bf16.param_dtype, bf16.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert (fp32.param_dtype, fp32.reduce_dtype) == (torch.float32, torch.float32)
