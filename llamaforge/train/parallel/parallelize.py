"""Turn a freshly built model into its distributed form, in torchtitan's order.

Order: tensor parallelism, then activation checkpointing, then
``torch.compile``, then FSDP. TP must see the plain linears to replace their
weights with DTensors; checkpointing wraps whole (already TP-sharded) blocks;
compiling per block (``nn.Module.compile``, in place, so parameter names keep
no ``_orig_mod.``) lets FSDP's per-block hooks stay outside the compiled
graphs; FSDP goes last since it shards whatever parameters it finds.

Activation checkpointing uses the same policy as the single-process
``CheckpointedBlock`` (selective: matmul and attention outputs saved) but
PyTorch's own ``checkpoint_wrapper``: it forwards attribute access to the
block, which the distributed state-dict helpers need to map parameter names
(``get_state_dict`` walks ``layers.0.attention...`` through the wrapper).

The model is built in full on every rank from the same seed before being
sharded, so every layout starts from exactly the single-process weights (the
equivalence tests rely on it). That needs host/device memory for one full
float32 copy per process while starting, fine up to a few billion
parameters per GPU; beyond that, build on the meta device and load a
checkpoint instead.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl,
    checkpoint_wrapper,
)
from torch.utils.checkpoint import create_selective_checkpoint_contexts

from llamaforge.errors import ConfigError
from llamaforge.train.activation_checkpoint import MODES, selective_policy
from llamaforge.train.parallel.fsdp import apply_fsdp
from llamaforge.train.parallel.mesh import ParallelContext
from llamaforge.train.parallel.tensor_parallel import apply_tensor_parallel


def parallelize(
    model: nn.Module,
    ctx: ParallelContext,
    *,
    precision: str,
    activation_checkpointing: str = "none",
    compile: bool = False,
) -> nn.Module:
    """Apply TP (when ``tp > 1``), activation checkpointing, compile and FSDP in place."""
    if ctx.tp > 1:
        apply_tensor_parallel(model, ctx.mesh["tp"])
    checkpoint_blocks(model, activation_checkpointing)
    if compile:
        for block in model.layers:
            block.compile()
    apply_fsdp(model, ctx.mesh["dp"], precision)
    return model


def _selective_contexts() -> object:
    return create_selective_checkpoint_contexts(selective_policy)


def checkpoint_blocks(model: nn.Module, mode: str) -> None:
    """Wrap every block of ``model.layers`` for recomputation (``none``: leave them)."""
    if mode not in MODES:
        raise ConfigError(
            f"train.activation_checkpointing must be one of {', '.join(MODES)}, got {mode!r}"
        )
    if mode == "none":
        return
    extra = {"context_fn": _selective_contexts} if mode == "selective" else {}
    for index, block in enumerate(model.layers):
        model.layers[index] = checkpoint_wrapper(
            block, checkpoint_impl=CheckpointImpl.NO_REENTRANT, **extra
        )
