"""Model hyper-parameters and the paper's presets (Table 2 of Touvron et al. 2023).

One dataclass is the single source of truth for a model's shape. The paper's
four sizes are reproduced exactly (their parameter counts are checked in the
tests against the released checkpoints' counts); the tiny presets exist so the
same code runs end to end on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from llamaforge.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a LLaMA model.

    ``ffn_hidden_dim`` is derived, never stored: SwiGLU uses three matrices
    instead of two, so the paper shrinks the hidden size to 2/3 of 4d to keep
    the FLOPs of a classic 4d MLP, then rounds up to ``multiple_of`` (256) for
    efficient kernels. For 7B that is int(2*16384/3)=10922 -> 11008.
    """

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    vocab_size: int = 32000
    multiple_of: int = 256
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    # Initialisation (see llamaforge.model.transformer.init_weights for why).
    init_std: float = 0.02
    depth_scaled_init: bool = True
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for key in ("dim", "n_layers", "n_heads", "vocab_size", "multiple_of", "max_seq_len"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ConfigError(
                f"model.dim ({self.dim}) must be divisible by model.n_heads ({self.n_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"model.dim / model.n_heads = {self.head_dim} must be even for RoPE")
        values = (self.norm_eps, self.init_std, self.rope_theta)
        if not all(v > 0 and math.isfinite(v) for v in values):  # NaN fails "> 0" too
            raise ConfigError(
                "model.norm_eps, model.init_std and model.rope_theta must be finite and > 0"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden_dim(self) -> int:
        hidden = int(2 * 4 * self.dim / 3)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)

    def num_params(self, include_embedding: bool = True) -> int:
        """Exact parameter count, computed from the shapes (no allocation)."""
        d, h = self.dim, self.ffn_hidden_dim
        per_layer = 4 * d * d + 3 * d * h + 2 * d
        total = self.n_layers * per_layer + d + self.vocab_size * d  # + final norm + lm head
        if include_embedding:
            total += self.vocab_size * d
        return total

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N (non-embedding) plus causal attention.

        The attention term is 6 * n_layers * seq_len * dim (forward 2*L*T*d for
        QK^T and AV each, halved for the causal mask, times 3 for backward),
        the PaLM appendix B accounting with the causal halving.
        """
        n = self.num_params(include_embedding=False)
        return 6.0 * n + 6.0 * self.n_layers * seq_len * self.dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown model field(s) {unknown}; allowed fields are {sorted(known)}"
            )
        return cls(**data)


# Paper shapes (Table 2). Learning rates and batch sizes live in configs/*.toml.
PRESETS: dict[str, ModelConfig] = {
    "7B": ModelConfig(dim=4096, n_layers=32, n_heads=32, name="7B"),
    "13B": ModelConfig(dim=5120, n_layers=40, n_heads=40, name="13B"),
    "33B": ModelConfig(dim=6656, n_layers=60, n_heads=52, name="33B"),
    "65B": ModelConfig(dim=8192, n_layers=80, n_heads=64, name="65B"),
    # CPU presets, named by their approximate parameter count (embeddings
    # included) with the vocabulary given here; the vocabulary is overridable.
    "tiny-1M": ModelConfig(
        dim=128,
        n_layers=2,
        n_heads=4,
        vocab_size=2048,
        multiple_of=32,
        max_seq_len=256,
        name="tiny-1M",
    ),
    "tiny-10M": ModelConfig(
        dim=256,
        n_layers=6,
        n_heads=8,
        vocab_size=8192,
        multiple_of=64,
        max_seq_len=512,
        name="tiny-10M",
    ),
    "tiny-100M": ModelConfig(
        dim=768,
        n_layers=8,
        n_heads=12,
        vocab_size=32000,
        multiple_of=256,
        max_seq_len=1024,
        name="tiny-100M",
    ),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """Return a preset, optionally with fields replaced (e.g. a demo vocabulary)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
