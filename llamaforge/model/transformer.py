"""The LLaMA decoder-only transformer and its initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from llamaforge.model.config import ModelConfig
from llamaforge.model.layers import (
    SKINNY_VOCAB_ROWS,
    LayerKVCache,
    QueryRows,
    RMSNorm,
    TransformerBlock,
    project,
    rotary_tables,
)


class KVCache(nn.Module):
    """Keys/values of every layer plus the number of positions already filled.

    All sequences of a batch share the fill position: prompts of different
    lengths are left-padded and the padding is masked out, so one write index
    serves the whole batch.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        batch: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if max_len > cfg.max_seq_len:
            raise ValueError(
                f"KV cache length {max_len} exceeds model.max_seq_len {cfg.max_seq_len}"
            )
        self.layers = nn.ModuleList(
            LayerKVCache(batch, cfg.n_heads, max_len, cfg.head_dim, dtype, device)
            for _ in range(cfg.n_layers)
        )
        self.filled = 0

    @property
    def max_len(self) -> int:
        return self.layers[0].k.shape[2]


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.init_weights()

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
        documents: torch.Tensor | None = None,
        hidden_only: bool = False,
        outputs_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of shape (batch, seq, vocab), or (batch, 1, vocab) with ``last_only``.

        ``hidden_only`` returns the final-norm output (batch, seq, dim) instead,
        for a loss that applies ``output`` itself (the chunked cross-entropy of
        training never builds the full logits).

        Pretraining passes only ``tokens``: plain causal attention through
        SDPA's ``is_causal`` kernels, no mask built. Incremental decoding passes a
        ``cache`` (advanced by ``seq`` positions here), per-sequence rotary
        ``positions`` (batch, seq) and a boolean ``mask`` (batch, 1, seq,
        cache.filled + seq) with True where attention is allowed.

        Packed finetuning passes ``documents`` (batch, seq): an id per token,
        equal within each example, different between neighbours. Attention is
        then block-diagonal causal (a token sees only earlier tokens of its own
        example) and, unless ``positions`` are given, rotary positions restart at
        0 for every example, so each example is computed exactly as if it sat
        alone at the start of a sequence.

        ``outputs_at`` (1-D, increasing flat indices ``row * seq + column``)
        asks for the outputs at those positions only, shape (n, vocab) or
        (n, dim) with ``hidden_only``: a scorer needs the distributions at
        the continuation's positions, not the context's. The last layer then
        computes keys and values everywhere but queries, attention output and
        feed-forward only there (the earlier layers need every position, for
        the keys of the next); the same numbers as slicing the full output, to
        float rounding. Not with a KV cache or ``last_only``.
        """
        _, seq = tokens.shape
        if documents is not None:
            if cache is not None or mask is not None:
                raise ValueError("documents cannot be combined with a KV cache or a mask")
            mask = document_mask(documents)
            if positions is None:
                positions = document_positions(documents)
        if outputs_at is not None and (cache is not None or last_only):
            raise ValueError("outputs_at cannot be combined with a KV cache or last_only")
        start = cache.filled if cache is not None else 0
        if start + seq > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {start + seq} positions is longer than model.max_seq_len "
                f"{self.config.max_seq_len}"
            )
        if positions is None:
            positions = torch.arange(start, start + seq, device=tokens.device).unsqueeze(0)
        if mask is None and start > 0 and seq > 1:
            # Chunked prefill: causal within the chunk, full view of the cache.
            mask = torch.ones(seq, start + seq, dtype=torch.bool, device=tokens.device).tril(start)
        cos, sin = rotary_tables(positions, self.config.head_dim, self.config.rope_theta)
        h = self.tok_embeddings(tokens)
        queries = None if outputs_at is None else QueryRows(outputs_at, len(tokens), seq)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            layer_cache = cache.layers[i] if cache is not None else None
            h = layer(h, cos, sin, mask, layer_cache, start, queries if i == last else None)
        if cache is not None:
            cache.filled = start + seq
        if last_only:  # decoding needs the next-token distribution only
            h = h[:, -1:]
        h = self.norm(h)
        return h if hidden_only else project(self.output, h, SKINNY_VOCAB_ROWS)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter (see :meth:`init_plan` for the distributions).

        ``generator`` (on the parameters' device) makes the draws independent of
        the global RNG: the trainer seeds one so that a sharded model, which draws
        the same tensors in the same order (``llamaforge.train.parallel.init``),
        starts from exactly these weights. Called again after materialising a
        meta-device model.
        """
        for param, std in self.init_plan():
            init_tensor(param, std, generator)

    def init_plan(self) -> list[tuple[nn.Parameter, float | None]]:
        """Every parameter with its initial std (``None``: ones), in drawing order.

        The paper does not state its initialisation. We use the practice of
        GPT-2 and Megatron that LLaMA-style training code has converged on:
        every matrix ~ N(0, init_std = 0.02) and, with ``depth_scaled_init``,
        the two matrices that write into the residual stream (``wo``, ``w2``)
        get std 0.02 / sqrt(2 * n_layers). Each of the 2L residual branches
        then adds variance O(1/L), so the residual stream keeps the same scale
        at initialisation whether the model has 2 layers or 80 (65B) and the
        early loss spikes of deep pre-norm models are damped. RMSNorm gains
        start at 1. The order is part of the contract: it fixes which random
        numbers each tensor gets from a seeded generator.
        """
        cfg = self.config
        std = cfg.init_std
        out_std = std / math.sqrt(2 * cfg.n_layers) if cfg.depth_scaled_init else std
        plan: list[tuple[nn.Parameter, float | None]] = [
            (self.tok_embeddings.weight, std),
            (self.output.weight, std),
        ]
        for layer in self.layers:
            attention, ffn = layer.attention, layer.feed_forward
            for lin in (attention.wq, attention.wk, attention.wv, ffn.w1, ffn.w3):
                plan.append((lin.weight, std))
            for lin in (attention.wo, ffn.w2):
                plan.append((lin.weight, out_std))
            plan += [(layer.attention_norm.weight, None), (layer.ffn_norm.weight, None)]
        plan.append((self.norm.weight, None))
        return plan

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(
        self, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        param = self.output.weight
        return KVCache(
            self.config,
            batch,
            max_len or self.config.max_seq_len,
            dtype or param.dtype,
            param.device,
        )


def standalone_output(model: nn.Module) -> nn.Module | None:
    """The output layer of a single-device llamaforge ``Transformer``, else None.

    Losses and scorers that call ``model(..., hidden_only=True)`` and then the
    output layer on the rows they need (the chunked training loss, eval's
    scored positions) may do so only where that layer works on its own:
    not under FSDP2 (which gathers sharded weights only around the root
    forward), not with DTensor (FSDP2/TP) or other tensor-subclass
    parameters. ``torch.compile``'s wrapper is looked through; a wrapped
    output layer (LoRA) is returned as it is.
    """
    inner = getattr(model, "_orig_mod", model)
    if not isinstance(inner, Transformer):
        return None
    from torch.distributed.fsdp import FSDPModule

    if any(isinstance(m, FSDPModule) for m in (inner, inner.output)):
        return None
    if any(type(p) not in (nn.Parameter, torch.Tensor) for p in inner.output.parameters()):
        return None
    return inner.output


def document_positions(documents: torch.Tensor) -> torch.Tensor:
    """Per-token offset from the start of its run of equal ``documents`` ids (batch, seq)."""
    seq = documents.shape[-1]
    index = torch.arange(seq, device=documents.device).expand_as(documents)
    starts = torch.ones_like(documents, dtype=torch.bool)
    starts[..., 1:] = documents[..., 1:] != documents[..., :-1]
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - first


def document_mask(documents: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, 1, seq, seq) mask: causal and within the same document only."""
    seq = documents.shape[-1]
    same = documents.unsqueeze(-1) == documents.unsqueeze(-2)
    causal = torch.ones(seq, seq, dtype=torch.bool, device=documents.device).tril()
    return (same & causal).unsqueeze(1)


@torch.no_grad()
def init_tensor(
    tensor: torch.Tensor, std: float | None, generator: torch.Generator | None = None
) -> None:
    """One entry of :meth:`Transformer.init_plan`: N(0, std), or ones for ``None``."""
    if std is None:
        nn.init.ones_(tensor)
    else:
        nn.init.normal_(tensor, mean=0.0, std=std, generator=generator)


def build_model(
    cfg: ModelConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Transformer:
    """Build a model; on ``meta`` it allocates nothing (shape/param-count checks)."""
    with torch.device(device):
        model = Transformer(cfg)
    return model.to(dtype=dtype) if dtype != torch.float32 else model
