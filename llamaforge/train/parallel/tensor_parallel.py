"""Tensor parallelism with sequence parallelism (Megatron-LM, Korthikanti et al. 2022).

Written with DTensor's ``parallelize_module`` plans, after torchtitan's
``parallelize_llama`` (our own code, same layout):

* Attention: ``wq``/``wk``/``wv`` column-wise (each rank computes
  ``n_heads / tp`` whole heads; ``Attention.forward`` views with ``-1`` heads,
  so it runs on the local heads unchanged, rotary included since the tables
  depend on the position only), ``wo`` row-wise. SwiGLU: ``w1``/``w3``
  column-wise, ``w2`` row-wise. One all-gather in and one reduce-scatter out
  per sub-layer, nothing in between.
* Sequence parallel: between sub-layers the residual stream is sharded on the
  sequence dimension (``Shard(1)``), so the RMSNorms, residual adds and the
  activations stored for backward are ``1/tp`` the size. The norms are
  ``SequenceParallel`` (replicated gains, sharded inputs);
  ``PrepareModuleInput`` all-gathers the normed sequence before the
  column-wise projections; the row-wise projections reduce-scatter back to
  ``Shard(1)``.
* Embedding row-wise (vocabulary-sharded table, output sharded on the
  sequence); the output projection column-wise with its logits gathered
  (``Replicate``), so the loss is the ordinary cross-entropy on every rank.
  A vocabulary-parallel loss would save the logits' all-gather; with LLaMA's
  32k vocabulary that is a small share of the step, and this keeps ``lm_loss``
  one function for every layout.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

# Attention.forward's positional arguments: x, cos, sin, mask, cache, cache_start,
# queries.
_ATTENTION_ARGS = 7


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Shard ``model`` (a plain :class:`Transformer`, not yet wrapped) over ``tp_mesh`` in place."""
    parallelize_module(
        model,
        tp_mesh,
        {
            "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
            "norm": SequenceParallel(),
            "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
        },
    )
    no_layout = (None,) * (_ATTENTION_ARGS - 1)
    for block in model.layers:
        parallelize_module(
            block,
            tp_mesh,
            {
                "attention_norm": SequenceParallel(),
                "attention": PrepareModuleInput(
                    input_layouts=(Shard(1), *no_layout),
                    desired_input_layouts=(Replicate(), *no_layout),
                ),
                "attention.wq": ColwiseParallel(),
                "attention.wk": ColwiseParallel(),
                "attention.wv": ColwiseParallel(),
                "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
                "ffn_norm": SequenceParallel(),
                "feed_forward": PrepareModuleInput(
                    input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)
                ),
                "feed_forward.w1": ColwiseParallel(),
                "feed_forward.w3": ColwiseParallel(),
                "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
            },
        )
