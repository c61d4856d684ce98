"""Turn a freshly built model into its distributed form, in torchtitan's order.

Order: tensor parallelism, then activation checkpointing, then
``torch.compile``, then FSDP. TP must see the plain linears to replace their
weights with DTensors; checkpointing wraps whole (already TP-sharded) blocks;
FSDP goes last since it shards whatever parameters it finds.

Activation checkpointing is the single-process implementation,
:class:`~llamaforge.train.activation_checkpoint.CheckpointedBlock` (selective:
matmul and attention outputs saved): it forwards attribute access to the
block and keeps plain state-dict keys, which is all PyTorch's distributed
state-dict helpers need.

Compile is per transformer block, as torchtitan does: ``nn.Module.compile``
in place (parameter names keep no ``_orig_mod.``), with the checkpoint wrapper
inside the compiled region, so Dynamo sees the selective-recompute policy.
FSDP2's per-block all-gather/reduce-scatter hooks are not traced (Dynamo skips
FSDP hooks by default, ``torch._dynamo.config.skip_fsdp_hooks``): they run
eagerly between the compiled blocks, which is what lets FSDP overlap its
communication with compute. The embedding, final norm and output projection
stay eager (one matmul and a gather each; not worth a graph); under TP the
embedding's pending reduce-scatter is resolved before the first compiled
block (see :func:`_resolve_async_collective`).

One combination is refused with a ``ConfigError``: ``full`` checkpointing of
compiled TP blocks fails in torch 2.13's AOT autograd at the first forward
("expected all tensors_saved_with_vc_check to be Tensors": a DeviceMesh ends
up among the tensors saved for backward), also when "full" is written as a
recompute-everything selective policy. Seen on CPU/gloo with aot_eager; the
failure is in tracing, not in a collective, but GPU was not tried.
``selective`` (the paper's mode) with TP, and ``full`` with ``tp = 1``, trace
and match eager.

``train.compile_backend`` picks the backend: ``inductor`` (default, generated
kernels) or ``aot_eager``/``eager`` (Dynamo and AOT autograd tracing only,
seconds instead of minutes on CPU: the tests, and a quick check that a model
change still traces).

The model may arrive on the meta device: FSDP and TP shard meta parameters
without allocating; ``meta_init`` then allocates and fills the shards.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.distributed._functional_collectives import AsyncCollectiveTensor

from llamaforge.errors import ConfigError
from llamaforge.train.activation_checkpoint import apply_activation_checkpointing
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
    compile_backend: str = "inductor",
) -> nn.Module:
    """Apply TP (when ``tp > 1``), activation checkpointing, compile and FSDP in place."""
    if compile and ctx.tp > 1 and activation_checkpointing == "full":
        raise ConfigError(
            "train.activation_checkpointing = 'full' with train.compile = true and "
            "parallel.tp > 1 fails in torch 2.13's AOT autograd (the recomputed tensor-"
            "parallel region saves a DeviceMesh for backward); use "
            "train.activation_checkpointing = 'selective', or train.compile = false"
        )
    if ctx.tp > 1:
        apply_tensor_parallel(model, ctx.mesh["tp"])
    apply_activation_checkpointing(model, activation_checkpointing)
    if compile:
        compile_blocks(model, compile_backend)
    apply_fsdp(model, ctx.mesh["dp"], precision)
    return model


def compile_blocks(model: nn.Module, backend: str) -> None:
    """``torch.compile`` every block of ``model.layers`` in place (names unchanged)."""
    model.tok_embeddings.register_forward_hook(_resolve_async_collective)
    for block in model.layers:
        block.compile(backend=backend)


def _resolve_async_collective(_module: nn.Module, _inputs: Any, output: Any) -> Any:
    """Hand the first compiled block a plain tensor, not an ``AsyncCollectiveTensor``.

    Under tensor parallelism the embedding's output is the local part of a
    reduce-scatter not yet waited on (an ``AsyncCollectiveTensor``). As an input
    of a compiled graph, torch 2.13's AOT autograd records that wrapper type for
    the input's gradient, then receives a plain tensor: the embedding's gradient
    comes back as zeros under FSDP (silently), and without FSDP the backward
    fails. ``clone`` goes through the wrapper's ``__torch_dispatch__``, which
    waits for the collective, and autograd records an ordinary copy. Cost: one
    (batch, seq / tp, dim) copy per forward. The other blocks get plain tensors
    already (the reduce-scatters inside a block are traced into its graph).
    """
    return output.clone() if isinstance(output, AsyncCollectiveTensor) else None
