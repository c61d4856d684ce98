"""LoRA under FSDP2: frozen base and trainable adapters in one FSDP unit, on 2 gloo ranks.

torch 2.13's ``fully_shard`` groups every parameter of a block into one
all-gather/reduce-scatter unit and reduce-scatters only the gradients that
exist, so frozen base weights and trainable adapters may share a unit. The
check: 3 AdamW steps on 2 ranks (each on half of the batch) give the same
adapters as one process on the whole batch, the base shards never change and
never get a gradient.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from llamaforge.finetune.lora import (
    LoRAConfig,
    apply_lora,
    lora_state_dict,
    reset_lora_parameters,
    trainable_state_dict,
)
from llamaforge.train.config import OptimConfig
from llamaforge.train.optim import build_optimizer
from tests.formats.conftest import random_model
from tests.train.parallel.launch import run_ranks

CFG = LoRAConfig(rank=4, alpha=8, target_modules=("wq", "wv", "w2"))
BATCH = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))


def train(model: nn.Module, batches: list[torch.Tensor]) -> None:
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2, warmup_steps=1))
    for batch in batches:
        logits = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def reference() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model = random_model()
    apply_lora(model, CFG)
    reset_lora_parameters(model, torch.Generator().manual_seed(4))
    start = copy.deepcopy(model)
    train(model, [BATCH, BATCH.flip(0), BATCH.roll(1, 1)])
    return start, {k: v.detach().clone() for k, v in lora_state_dict(model).items()}


def on_rank(out: Path) -> None:
    from llamaforge.train.parallel import init_parallel
    from llamaforge.train.parallel.fsdp import apply_fsdp

    ctx = init_parallel(2, 1, "cpu")
    start, expected = reference()
    model = random_model()
    apply_lora(model, CFG)
    apply_fsdp(model, ctx.mesh["dp"], "fp32")
    reset_lora_parameters(model, torch.Generator().manual_seed(4))  # DTensor shards
    base_before = {
        k: v.to_local().clone() for k, v in model.state_dict().items() if "lora" not in k
    }
    half = slice(2 * ctx.rank, 2 * ctx.rank + 2)
    train(model, [BATCH[half], BATCH.flip(0)[half], BATCH.roll(1, 1)[half]])
    trainable = trainable_state_dict(model)
    assert set(trainable) == set(expected)
    for key, param in trainable.items():
        assert isinstance(param, DTensor)
        torch.testing.assert_close(param.full_tensor(), expected[key], rtol=1e-5, atol=1e-6)
    for key, param in model.named_parameters():
        if "lora" not in key:
            assert not param.requires_grad and param.grad is None, key
            assert torch.equal(param.to_local(), base_before[key]), key
    started = {k: v for k, v in lora_state_dict(start).items() if k.endswith("lora_a")}
    assert not any(torch.equal(expected[k], v) for k, v in started.items())  # it did train
    (out / f"ok{ctx.rank}").write_text("ok")


def test_lora_under_fsdp2_matches_one_process(tmp_path) -> None:
    run_ranks(on_rank, tmp_path, workdir=tmp_path)
    assert (tmp_path / "ok0").is_file() and (tmp_path / "ok1").is_file()
