"""Initialise a model that was built on the meta device and then sharded (torchtitan's start-up).

The distributed trainer builds the model on ``meta`` (no memory), applies TP
and FSDP, materialises only each rank's shards (``to_empty``) and fills them
here, so no rank ever holds the whole model.

Decision: the shards get exactly the single-process initial weights. DTensor's
own sharded RNG (``nn.init.normal_`` on a DTensor) would draw different
numbers for every layout (and on CPU it draws the full tensor anyway), which
would make "dp=2 follows the single-process run" untestable and make a run's
start depend on its layout. Instead every rank walks
:meth:`~llamaforge.model.transformer.Transformer.init_plan` in order, draws
each parameter in full from a generator seeded with ``train.seed`` (exactly
the draws the single-process trainer makes), keeps its own shard and frees
the rest. Peak extra memory is one full parameter (the largest is the
embedding or output matrix: 0.5 GB in float32 for 7B, 1 GB for 65B), and
every rank spends the time of drawing all the model's numbers, a fraction
of a second per billion parameters on a GPU. No communication is needed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from llamaforge.model.transformer import init_tensor


def init_generator(device: torch.device, seed: int) -> torch.Generator:
    """The generator both trainers draw initial weights from (on the parameters' device)."""
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def materialize_and_init(model: nn.Module, device: torch.device, seed: int) -> None:
    """Allocate the shards of a meta-device (sharded) ``model`` on ``device`` and initialise them.

    ``model`` must provide ``init_plan()`` (attribute access reaches through
    the activation-checkpoint and FSDP wrappers). Non-DTensor parameters (a
    model that is not sharded) are filled directly.
    """
    model.to_empty(device=device)
    generator = init_generator(device, seed)
    for param, std in model.init_plan():
        full = torch.empty(param.shape, dtype=param.dtype, device=device)
        init_tensor(full, std, generator)
        if isinstance(param, DTensor):
            # src_data_rank=None: every rank holds the same full tensor, so each
            # just slices its own shard (no scatter from rank 0).
            shard = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
            param.to_local().copy_(shard.to_local())
        else:
            param.copy_(full)
        del full
