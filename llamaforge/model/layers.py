"""The building blocks of a LLaMA layer (paper §2.2).

Parameter names follow Meta's original release (``attention.wq``,
``feed_forward.w1`` ...), so the Meta checkpoint converter only has to undo
the rotary layout; see ``rotary`` below for that layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llamaforge.model.config import ModelConfig

# Row counts (batch x positions) up to which ``project`` computes ``weight @ x.T`` on a CPU.
SKINNY_ROWS = 8
SKINNY_VOCAB_ROWS = 64  # for the (vocab, dim) output projection, where the gap is widest
SKINNY_MIN_WEIGHT = 256 * 256  # smaller weights stay in cache, where F.linear is as fast


def project(linear: nn.Module, x: torch.Tensor, max_rows: int = SKINNY_ROWS) -> torch.Tensor:
    """``linear(x)``; for the few rows of a decoding step on a CPU, as ``weight @ x.T``.

    Why: with a weight stored (out, in), the CPU BLAS behind ``F.linear``
    (MKL in torch's x86 wheels) runs a product with 2-8 rows far below the
    memory bandwidth, while the same dot products as ``weight @ x.T`` stream
    the weight about twice as fast: one decoding step's eight layers at dim
    256 and batch 4 take 2.8 ms as ``F.linear`` and 1.3 ms this way, and the
    (32000, 256) output projection 4.9 vs 1.2 ms (the output keeps the gain
    up to 64 rows, the layer weights lose it beyond ~8 rows, and weights
    under 256 x 256 that stay in cache gain nothing; measured on the 2-core
    development CPU, docs/performance.md). The values are the same dot
    products, summation order aside; the result is a transposed view. Only
    inference (no autograd) on a CPU with a plain ``nn.Linear`` and an
    ordinary weight takes this path: training, GPUs, LoRA-wrapped or sharded
    layers keep ``linear(x)``.
    """
    if (
        x.device.type != "cpu"
        or torch.is_grad_enabled()
        or type(linear) is not nn.Linear
        or linear.bias is not None
        or x.shape[:-1].numel() > max_rows
        or linear.weight.numel() < SKINNY_MIN_WEIGHT
        or type(linear.weight) not in (nn.Parameter, torch.Tensor)
    ):
        return linear(x)
    flat = x.reshape(-1, x.shape[-1])
    return (linear.weight @ flat.t()).t().reshape(*x.shape[:-1], -1)


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich 2019), pre-normalisation.

    The statistics are computed in float32 even under bf16 autocast: the
    mean of squares of a 4096-wide bf16 vector loses enough precision to
    hurt long runs, and the cost is negligible.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight.type_as(x)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


def rotary_tables(
    positions: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 cos/sin of shape ``positions.shape + (head_dim,)``, half-split layout.

    Rotary embeddings rotate pairs of channels by position-dependent angles.
    Meta's code pairs channels (2i, 2i+1); we pair (i, i + head_dim/2), the
    layout Hugging Face uses, because it needs no complex numbers and runs as
    two fused multiply-adds. The two are equivalent up to a fixed permutation
    of the rows of wq and wk, which the Meta converter applies.

    The tables are computed per call rather than stored as buffers: it costs
    a few microseconds, keeps them float32 whatever dtype the model is cast
    to, and leaves nothing to rebuild after meta-device initialisation.
    """
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32)
    inv_freq = 1.0 / (theta ** (exponents / head_dim))
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape (batch, seq, heads, head_dim); cos/sin are (batch|1, seq, head_dim).

    Under inference the rotation is one product and two in-place
    multiply-adds on the halves, instead of building ``rotate_half(x)`` (a
    negation and a concatenation) and a second full product: three passes
    over ``x`` instead of six, the same values to float rounding. With
    autograd on, the out-of-place form keeps the backward simple.
    """
    cos = cos.unsqueeze(2).to(x.dtype)
    sin = sin.unsqueeze(2).to(x.dtype)
    if torch.is_grad_enabled():
        return x * cos + _rotate_half(x) * sin
    half = x.shape[-1] // 2
    out = x * cos
    out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1)
    out[..., half:].addcmul_(x[..., :half], sin[..., half:])
    return out


class QueryRows:
    """Some positions of a (batch, seq) input, for a layer that needs outputs there only.

    ``flat`` holds indices ``row * seq + column`` in increasing order. Layers
    take those rows of a (batch, seq, ...) tensor as one flat (n, ...)
    tensor for their linear parts, and attention lays them out again as
    (batch, width, ...) with ``width`` the most positions any row has, the
    other slots padding that sees every key (no empty softmax row) and is
    dropped afterwards.
    """

    def __init__(self, flat: torch.Tensor, batch: int, seq: int) -> None:
        if flat.dim() != 1 or (len(flat) > 1 and not bool((flat[1:] > flat[:-1]).all())):
            raise ValueError("query positions must be a 1-D tensor of increasing flat indices")
        if len(flat) and not 0 <= int(flat[0]) <= int(flat[-1]) < batch * seq:
            raise ValueError(f"query positions must lie in [0, {batch * seq})")
        self.flat, self.batch, self.seq = flat, batch, seq
        self.row = torch.div(flat, seq, rounding_mode="floor")
        self.column = flat - self.row * seq
        counts = torch.bincount(self.row, minlength=batch)
        self.slot = (
            torch.arange(len(flat), device=flat.device) - (counts.cumsum(0) - counts)[self.row]
        )
        self.width = int(counts.max()) if len(flat) else 0

    def __len__(self) -> int:
        return len(self.flat)

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of a (batch, seq, ...) tensor at these positions: (n, ...)."""
        return x[self.row, self.column]

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        """(n, ...) rows laid out as (batch, width, ...), zeros in the padding slots."""
        out = rows.new_zeros(self.batch, self.width, *rows.shape[1:])
        out[self.row, self.slot] = rows
        return out

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`pad`: (batch, width, ...) back to (n, ...)."""
        return padded[self.row, self.slot]

    def mask(self, mask: torch.Tensor | None, seq: int) -> torch.Tensor:
        """Attention mask (batch, heads|1, width, seq) of the queries: causal if ``mask`` is None."""
        if mask is None:
            keys = torch.arange(seq, device=self.flat.device)
            allowed = keys[None, :] <= self.column[:, None]  # (n, seq)
        else:
            mask = mask.reshape((1,) * (4 - mask.dim()) + mask.shape)  # SDPA's broadcasting
            full = mask.expand(self.batch, mask.shape[1], mask.shape[2], seq)
            allowed = full[self.row, :, self.column]  # (n, heads|1, seq)
        # Padding slots may attend everywhere: True for a boolean mask, 0 for an additive one.
        fill = True if allowed.dtype == torch.bool else 0.0
        shape = (self.batch, self.width, *allowed.shape[1:])
        out = torch.full(shape, fill, dtype=allowed.dtype, device=allowed.device)
        out[self.row, self.slot] = allowed
        return out.unsqueeze(1) if mask is None else out.transpose(1, 2)


class LayerKVCache(nn.Module):
    """Pre-allocated keys/values of one layer for incremental decoding."""

    def __init__(
        self,
        batch: int,
        n_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        shape = (batch, n_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(
        self, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(
                f"KV cache overflow: position {end} exceeds the cache length {self.k.shape[2]}"
            )
        self.k[:, :, start:end] = k.to(self.k.dtype)
        self.v[:, :, start:end] = v.to(self.v.dtype)
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    """Multi-head causal self-attention with rotary embeddings and no biases.

    Training calls SDPA with ``is_causal=True`` so the fused (flash /
    memory-efficient) kernels run and no seq x seq mask is ever built; an
    explicit mask is used only by incremental decoding with padded prompts.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.head_dim = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: LayerKVCache | None = None,
        cache_start: int = 0,
        queries: QueryRows | None = None,
    ) -> torch.Tensor:
        """(batch, seq, dim); with ``queries``, only their rows: (len(queries), dim)."""
        batch, seq, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds n_heads / tp of them.
        k = project(self.wk, x).view(batch, seq, -1, self.head_dim)
        v = project(self.wv, x).view(batch, seq, -1, self.head_dim)
        k = apply_rotary(k, cos, sin).transpose(1, 2)
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache.update(cache_start, k, v)
        if queries is not None:
            return self._attend_from(queries, x, cos, sin, mask, k, v)
        q = apply_rotary(project(self.wq, x).view(batch, seq, -1, self.head_dim), cos, sin)
        q = q.transpose(1, 2)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=seq > 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return project(self.wo, out.transpose(1, 2).reshape(batch, seq, -1))

    def _attend_from(
        self,
        queries: QueryRows,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        k: torch.Tensor,
        v: torch.Tensor,
    ) -> torch.Tensor:
        """Attention output of the ``queries`` positions only, keys and values from all."""
        batch, seq, dim = x.shape
        q = project(self.wq, queries.take(x))
        q = q.view(1, len(queries), q.shape[-1] // self.head_dim, self.head_dim)
        cos, sin = (queries.take(t.expand(batch, *t.shape[1:]))[None] for t in (cos, sin))
        q = queries.pad(apply_rotary(q, cos, sin)[0]).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=queries.mask(mask, seq))
        return project(self.wo, queries.unpad(out.transpose(1, 2)).flatten(1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x) (Shazeer 2020)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.ffn_hidden_dim
        self.w1 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = project(self.w1, x)
        if torch.is_grad_enabled():
            return project(self.w2, F.silu(gate) * project(self.w3, x))
        # Inference: in place, one (tokens, hidden) buffer fewer to allocate and fill.
        return project(self.w2, F.silu(gate, inplace=True).mul_(project(self.w3, x)))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then h + ffn(norm(h))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: LayerKVCache | None = None,
        cache_start: int = 0,
        queries: QueryRows | None = None,
    ) -> torch.Tensor:
        """(batch, seq, dim); with ``queries`` only their rows, (len(queries), dim).

        Keys and values come from every position either way; the queries, the
        attention output, the residual and the feed-forward run on the rows
        asked for, which is all the last layer of a scorer needs.
        """
        attended = self.attention(
            self.attention_norm(x), cos, sin, mask, cache, cache_start, queries
        )
        residual = x if queries is None else queries.take(x)
        if torch.is_grad_enabled():
            h = residual + attended
            return h + self.feed_forward(self.ffn_norm(h))
        # Inference: the sums go into the fresh outputs of the sublayers, two buffers fewer.
        h = attended.add_(residual)
        return self.feed_forward(self.ffn_norm(h)).add_(h)
