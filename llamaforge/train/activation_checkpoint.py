"""Activation checkpointing of the transformer blocks (paper §2.4).

The paper cuts memory by recomputing activations in the backward pass, but
not all of them: it saves "the activations that are expensive to compute,
such as the outputs of linear layers", and recomputes the rest. Modes:

* ``none``: autograd saves everything (fastest, most memory).
* ``full``: each block keeps only its inputs and reruns its whole forward in
  the backward pass (least memory, about one extra forward of compute).
* ``selective``: the paper's trick, written with PyTorch's selective
  checkpoint API: matmul outputs (``mm``/``addmm``/``bmm``, i.e. every linear
  layer) and the attention kernel's outputs are saved, everything cheap and
  element-wise (RMSNorm, rotary, SiLU, the SwiGLU product, residual adds,
  reshapes) is recomputed. Backward then never reruns a matmul, and the
  memory of the many element-wise intermediates is not held.

Each block is wrapped in :class:`CheckpointedBlock` (non-reentrant
``torch.utils.checkpoint``, the only variant that composes with
``torch.compile``, FSDP2, tensor parallelism and keyword arguments). It is
the one implementation for single-process and distributed runs
(``llamaforge.train.parallel.parallelize`` wraps the TP-sharded blocks with
it before FSDP). Two properties make the wrapper invisible to checkpoint code:

* ``state_dict`` keys are those of the plain model (no
  ``_checkpoint_wrapped_module.`` fragment), so checkpoints and converters
  see the plain model and a wrapped model loads an unwrapped one's weights;
* attribute access falls through to the block (``layers[0].attention``),
  which PyTorch's distributed state-dict helpers (``get_state_dict``, used
  by DCP) need: they strip the fragment from ``named_parameters`` names, as
  PyTorch's own ``checkpoint_wrapper`` spells it, then walk the attributes.

``named_parameters`` does show the fragment, as with ``checkpoint_wrapper``;
``llamaforge.model.naming.plain_name`` removes it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from llamaforge.errors import ConfigError

MODES = ("none", "full", "selective")
_WRAPPED = "_checkpoint_wrapped_module"

_aten = torch.ops.aten
# The expensive ops whose outputs selective mode keeps. The attention
# overloads are whatever SDPA dispatches to on each backend (flash, memory
# efficient, cuDNN, the CPU flash kernel); the math fallback decomposes into
# bmm, which is covered too.
_SAVE_NAMES = (
    "mm",
    "addmm",
    "bmm",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
)
SAVE_OPS = frozenset(getattr(_aten, name).default for name in _SAVE_NAMES if hasattr(_aten, name))


def selective_policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    """Save matmul and attention outputs, recompute everything else."""
    return CheckpointPolicy.MUST_SAVE if op in SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _selective_contexts() -> Any:
    return create_selective_checkpoint_contexts(selective_policy)


class CheckpointedBlock(nn.Module):
    """A transformer block whose activations are recomputed in the backward pass.

    Without gradients (evaluation, generation with a KV cache) it runs the
    block directly: there is nothing to save, and recomputation must never
    write the cache twice.
    """

    def __init__(self, block: nn.Module, mode: str) -> None:
        super().__init__()
        if mode not in ("full", "selective"):
            raise ValueError(f"CheckpointedBlock mode must be 'full' or 'selective', got {mode!r}")
        self.mode = mode
        setattr(self, _WRAPPED, block)
        self.register_state_dict_post_hook(_drop_wrapper_prefix)
        self.register_load_state_dict_pre_hook(_add_wrapper_prefix)

    @property
    def block(self) -> nn.Module:
        return self._modules[_WRAPPED]

    def __getattr__(self, name: str) -> Any:
        """Fall through to the block for what the wrapper itself lacks (``attention``, ...)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if _WRAPPED not in self.__dict__.get("_modules", {}):
                raise  # no block yet (mid-construction, unpickling): nothing to fall through to
            return getattr(self.block, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        block = self.block
        if not torch.is_grad_enabled():
            return block(*args, **kwargs)
        extra = {"context_fn": _selective_contexts} if self.mode == "selective" else {}
        return checkpoint(block, *args, use_reentrant=False, **extra, **kwargs)


def _drop_wrapper_prefix(module: nn.Module, state_dict: dict, prefix: str, _meta: Any) -> None:
    inner = f"{prefix}{_WRAPPED}."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def _add_wrapper_prefix(module: nn.Module, state_dict: dict, prefix: str, *_args: Any) -> None:
    inner = f"{prefix}{_WRAPPED}."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix) :]] = state_dict.pop(key)


def apply_activation_checkpointing(model: nn.Module, mode: str) -> nn.Module:
    """Wrap (or, for ``none``, unwrap) every block of ``model.layers`` in place.

    Re-applying with another mode replaces the previous wrapping, so the
    setting can be changed on a live model. Apply before ``torch.compile``
    and before building the optimizer (parameters are the same objects
    either way, so an existing optimizer keeps working). Returns ``model``.
    """
    if mode not in MODES:
        raise ConfigError(
            f"train.activation_checkpointing must be one of {', '.join(MODES)}, got {mode!r}"
        )
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no `layers` ModuleList of blocks to wrap")
    for index, layer in enumerate(layers):
        block = layer.block if isinstance(layer, CheckpointedBlock) else layer
        layers[index] = block if mode == "none" else CheckpointedBlock(block, mode)
    return model
