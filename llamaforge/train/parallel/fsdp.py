"""FSDP2 (``fully_shard``) over the data-parallel mesh, and clipping of sharded gradients.

Decisions (torchtitan's, for the same reasons):

* Each transformer block is its own FSDP unit, then the root (embedding,
  final norm, output): a block's parameters are all-gathered just before it
  runs and freed after, so peak memory holds one unsharded block at a time.
  The root keeps its parameters after forward (``reshard_after_forward=False``)
  since backward needs the output projection first anyway.
* bf16 is FSDP's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``:
  float32 master weights and optimizer state, bf16 all-gathers and compute,
  gradients reduced in float32 (summing bf16 across hundreds of ranks loses
  bits). Autocast is then not used; the loss is still computed in float32
  (``lm_loss``) and RMSNorm statistics stay float32 (``RMSNorm.forward``).
  ``fp32`` keeps every dtype float32, which is what the CPU tests compare.
* FSDP is applied even when ``dp == 1`` (pure tensor parallelism): a 1-rank
  shard costs nothing and gives every layout the same mixed precision and
  the same DCP state dict.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor


def mixed_precision_policy(precision: str) -> MixedPrecisionPolicy:
    param_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)


def apply_fsdp(model: nn.Module, dp_mesh: DeviceMesh, precision: str) -> None:
    """``fully_shard`` every block of ``model.layers`` then ``model`` itself, in place."""
    # The root returns logits that are a view (of the output matmul); FSDP warns
    # that an in-place op on them would skip its backward hook. ``lm_loss``
    # never modifies logits in place, so the warning is noise on every step.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    policy = mixed_precision_policy(precision)
    for block in model.layers:
        fully_shard(block, mesh=dp_mesh, mp_policy=policy)
    fully_shard(model, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=False)


@torch.no_grad()
def clip_grad_norm(parameters: object, max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` for DTensor gradients sharded over any mesh.

    The per-tensor norms of sharded gradients are partial results;
    ``full_tensor()`` reduces them over the mesh, so every rank gets the same
    global norm (the one a single process computes) and takes the same
    skip/clip decision.
    """
    params = [p for p in parameters if p.grad is not None]  # type: ignore[attr-defined]
    grads = [p.grad for p in params]
    total = torch.nn.utils.get_total_norm(grads, 2.0, error_if_nonfinite=False)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
