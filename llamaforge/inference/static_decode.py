"""A static-shape single-token decoding step, for ``torch.compile`` (CUDA graphs on GPU).

The eager step (``Transformer.forward`` with a ``KVCache``) attends over
``cache[:, :, :filled]``, a shape that grows every token, and pays Python and
dispatch overhead per operator: at dim <= 256 that overhead, not arithmetic
or weight bandwidth, bounds decoding. Here every tensor keeps one shape for
the whole generation:

* the new key/value are written at a 0-d index tensor with ``index_copy_``
  into the cache's preallocated buffers (the same ``KVCache`` the prefill
  filled, so prefill stays the model's own forward);
* attention runs over the whole cache length with a boolean mask, True for
  real (non-padding) keys at positions <= the write index: masked keys get
  probability exactly 0, so the result equals attention over the filled
  prefix up to float summation order.

So the step compiles once per (batch, cache length) and, on CUDA with
``mode="reduce-overhead"``, is replayed as one CUDA graph per token. Cache
lengths are rounded up to a multiple of :data:`CACHE_BUCKET` positions
(capped at ``max_seq_len``) so generations of similar lengths reuse the
compiled step. The layer arithmetic mirrors ``llamaforge.model.layers``
(calling the same submodules, so LoRA-wrapped projections work too); a test
holds the compiled step's tokens equal to the eager decoder's.

Compiling costs time up front (tens of seconds with inductor on a CPU), so it
is opt-in: ``compile=True`` in ``decode_steps``/``generate_ids``/``generate``/
``stream`` and ``--compile`` on ``llamaforge generate``; it pays off for long
generations or many calls in one process.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llamaforge.model.layers import SKINNY_VOCAB_ROWS, apply_rotary, project, rotary_tables

CACHE_BUCKET = 256
_COMPILED: dict[tuple[str, str | None], Callable[..., torch.Tensor]] = {}


def bucketed_cache_len(needed: int, max_seq_len: int) -> int:
    """``needed`` rounded up to a multiple of :data:`CACHE_BUCKET`, at most ``max_seq_len``."""
    return min(max_seq_len, -(-needed // CACHE_BUCKET) * CACHE_BUCKET)


def decode_step(
    model: nn.Module,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    tokens: torch.Tensor,
    positions: torch.Tensor,
    index: torch.Tensor,
    real_keys: torch.Tensor,
) -> torch.Tensor:
    """Logits (batch, vocab) of one new token per sequence; writes its K/V at ``index``.

    ``tokens`` and ``positions`` are (batch, 1); ``index`` is a 1-element long
    tensor (the cache slot of this token); ``real_keys`` is (batch, 1, 1,
    cache_len), False at left padding. ``keys[i]``/``values[i]`` are layer i's
    (batch, heads, cache_len, head_dim) buffers, updated in place.
    """
    cfg = model.config
    batch = tokens.shape[0]
    slots = torch.arange(real_keys.shape[-1], device=tokens.device)
    allowed = real_keys & (slots <= index)
    cos, sin = rotary_tables(positions, cfg.head_dim, cfg.rope_theta)
    h = model.tok_embeddings(tokens)
    for layer, k_cache, v_cache in zip(model.layers, keys, values, strict=True):
        attention = layer.attention
        x = layer.attention_norm(h)
        q = project(attention.wq, x).view(batch, 1, -1, cfg.head_dim)
        k = project(attention.wk, x).view(batch, 1, -1, cfg.head_dim)
        v = project(attention.wv, x).view(batch, 1, -1, cfg.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        k_cache.index_copy_(2, index, k.to(k_cache.dtype))
        v_cache.index_copy_(2, index, v.to(v_cache.dtype))
        out = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=allowed)
        h = h + project(attention.wo, out.transpose(1, 2).reshape(batch, 1, -1))
        h = h + layer.feed_forward(layer.ffn_norm(h))
    return project(model.output, model.norm(h), SKINNY_VOCAB_ROWS)[:, -1]


def compiled_step(backend: str = "inductor", device_type: str = "cpu") -> Callable:
    """:func:`decode_step` compiled for ``backend`` (CUDA graphs with inductor on CUDA).

    One compiled function per (backend, mode) for the process: dynamo then
    keeps one graph per model and shape, reused across calls.
    """
    mode = "reduce-overhead" if backend == "inductor" and device_type == "cuda" else None
    key = (backend, mode)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(decode_step, backend=backend, mode=mode, dynamic=False)
    return _COMPILED[key]


class StaticStep:
    """Calls the (compiled) step with fixed-address inputs on the prefilled ``cache``."""

    def __init__(self, model: nn.Module, cache, pads: torch.Tensor, compile: bool | str) -> None:  # noqa: ANN001
        self.model = model
        self.keys = [layer.k for layer in cache.layers]
        self.values = [layer.v for layer in cache.layers]
        device = self.keys[0].device
        length = self.keys[0].shape[2]
        slots = torch.arange(length, device=device)
        self.real_keys = (slots[None, :] >= pads[:, None])[:, None, None, :]
        self.index = torch.tensor([cache.filled], device=device)
        backend = "inductor" if compile is True else str(compile)
        self.on_cuda = device.type == "cuda"
        for t in (*self.keys, *self.values):
            torch._dynamo.mark_static_address(t)
        self.fn = compiled_step(backend, device.type)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.on_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self.fn(
            self.model, self.keys, self.values, tokens, positions, self.index, self.real_keys
        )
        self.index += 1
        return logits.clone() if self.on_cuda else logits  # a CUDA graph reuses its output
