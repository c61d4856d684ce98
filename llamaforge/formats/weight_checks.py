"""Checks of a state dict against itself and its config, shared by every format's reader.

They run before a model is built or a tensor copied, so that a mismatched or
hostile folder is refused with a message naming the file and the tensor
instead of failing (or allocating) deep inside torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from llamaforge.errors import CheckpointError
from llamaforge.model import ModelConfig, Transformer, build_model

WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_weights(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """``state`` if it is plain weights: names to dense floating-point tensors.

    ``torch.load(weights_only=True)`` accepts any container of tensors and
    numbers: a list, integer keys, nested dicts, strings, sparse or quantized
    or integer tensors would otherwise fail deep inside the merge or
    ``load_state_dict`` with a traceback.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (a {type(state).__name__})")
    for name, tensor in state.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: a weight name is a {type(name).__name__}, not a str")
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: {name} is a {type(tensor).__name__}, not a tensor")
        if tensor.layout != torch.strided or tensor.is_quantized or not tensor.is_floating_point():
            raise CheckpointError(
                f"{path}: {name} is a {tensor.dtype} {str(tensor.layout).split('.')[-1]} tensor; "
                "model weights are dense floating point"
            )
        if tensor.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(
                f"{path}: {name} is {tensor.dtype}; we read float32, bfloat16, float16 and "
                "float64 weights (float8 ones need their scales, which a plain state dict "
                "does not carry: dequantize them first)"
            )
    return state


_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")


def check_sizes_before_building(
    cfg: ModelConfig, state: Mapping[str, torch.Tensor | tuple[int, ...]], source
) -> None:
    """The config's layer count and widths against the weights (or their shapes), before building.

    Even a meta-device model costs Python objects per layer: a hostile
    ``config.json`` with ``n_layers = 10**7`` (or a 2**40 ``dim``) beside the
    weights of a tiny model would take gigabytes and minutes before the name
    check below could object.
    """
    layers = {int(m.group(1)) for name in state if (m := _LAYER_KEY.match(name))}
    held = max(layers) + 1 if layers else 0
    if held != cfg.n_layers:
        raise CheckpointError(
            f"{source}: the config says {cfg.n_layers} layers but the weights hold {held}; "
            "the config and weights come from different models"
        )
    checks = {
        "tok_embeddings.weight": (cfg.vocab_size, cfg.dim),
        "layers.0.feed_forward.w1.weight": (cfg.ffn_hidden_dim, cfg.dim),
    }
    for name, want in checks.items():
        if name not in state:
            continue
        held_shape = tuple(state[name].shape if torch.is_tensor(state[name]) else state[name])
        if held_shape != want:
            raise CheckpointError(
                f"{source}: {name} has shape {held_shape} but the config implies "
                f"{want}; the config and weights come from different models"
            )


def checked_meta_model(
    cfg: ModelConfig, shapes: Mapping[str, tuple[int, ...]], source: str | os.PathLike
) -> Transformer:
    """``cfg``'s model on the meta device, once ``shapes`` are exactly its weights' shapes.

    Nothing is allocated, so a reader can check names and shapes (Meta's
    merged shard shapes, say) before it concatenates or copies anything; the
    error names ``source`` and the offending tensor.
    """
    check_sizes_before_building(cfg, shapes, source)
    model = build_model(cfg, device="meta")
    match_shapes({name: t.shape for name, t in model.state_dict().items()}, shapes, source)
    return model


def match_shapes(
    expected: Mapping[str, tuple[int, ...]],
    stored: Mapping[str, tuple[int, ...]],
    source: str | os.PathLike,
) -> None:
    """The same names with the same shapes, or a CheckpointError naming ``source`` and the tensor."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match the config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}); the config and weights come from different models"
        )
    for name, want in expected.items():
        if tuple(stored[name]) != tuple(want):
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(stored[name])} but the config implies "
                f"{tuple(want)}; the config and weights come from different models"
            )


__all__ = [
    "WEIGHT_DTYPES",
    "check_sizes_before_building",
    "check_weights",
    "checked_meta_model",
    "match_shapes",
]
