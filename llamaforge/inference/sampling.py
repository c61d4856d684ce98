"""Sampling settings and the choice of the next token from the last logits.

The paper does not describe decoding. The defaults follow what users of Meta's
``example.py``, Hugging Face ``generate`` and vLLM expect: temperature 0 means
greedy (arg-max, ties to the lowest id, exactly what a full forward pass would
pick), and filters apply in the order temperature -> top-k -> top-p, as in
``transformers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llamaforge.errors import ConfigError


@dataclass
class SamplingConfig:
    """How to decode.

    ``max_new_tokens`` counts generated tokens, EOS excluded; generation also
    ends at the model's ``max_seq_len``. ``top_k = 0`` and ``top_p = 1`` switch
    those filters off. ``stop`` holds strings matched on the decoded
    completion; a single string is accepted and wrapped in a tuple, because
    iterating ``stop="\\n"`` character by character is never what anyone means.
    ``seed = None`` draws from torch's global generator (so an outer
    ``torch.manual_seed`` still applies); an int makes sampling reproducible
    independently of everything else that consumes random numbers.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ConfigError(
                f"sampling.max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}"
            )
        if not (self.temperature >= 0.0 and math.isfinite(self.temperature)):
            raise ConfigError(
                f"sampling.temperature must be a finite number >= 0 (0 = greedy), "
                f"got {self.temperature!r}"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"sampling.top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(
                f"sampling.top_k must be an integer >= 0 (0 = off), got {self.top_k!r}"
            )
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(f"sampling.stop must hold non-empty strings, got {self.stop!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ConfigError(f"sampling.seed must be an integer or None, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


# Below this temperature ``logits / temperature`` could overflow float32 (a logit
# of 1e3 does below ~3e-36), so the shifted form is used; 1e-6 is far below any
# useful temperature, and above it the arithmetic is the plain division.
TINY_TEMPERATURE = 1e-6


def make_generator(cfg: SamplingConfig, device: torch.device) -> torch.Generator | None:
    """A generator seeded from ``cfg.seed`` on ``device``, or None for the global one."""
    if cfg.seed is None or cfg.greedy:
        return None
    return torch.Generator(device=device).manual_seed(cfg.seed)


def sample_next(
    logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Next token ids of shape (batch,) from logits of shape (batch, vocab).

    Probabilities are computed in float32 whatever the model dtype: bf16
    softmax over 32k entries rounds the tail that top-p sums over. Only the
    kept candidates are sorted (``topk`` when ``top_k`` is set), and without
    any filter we sample straight from the softmax, so plain temperature
    sampling pays for no sort.
    """
    if cfg.greedy:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if cfg.temperature < TINY_TEMPERATURE:
        # logits / 1e-45 overflows to inf and softmax to NaN. Shifted by the
        # maximum first, every logit becomes <= 0, the best one exactly 0, so
        # the division gives 0 or -inf: sampling among the tied best, the
        # limit of temperature -> 0. The temperature is clamped to float32's
        # smallest normal number so that it never rounds to 0 (0 / 0).
        shifted = logits - logits.amax(dim=-1, keepdim=True)
        scaled = shifted / max(cfg.temperature, torch.finfo(torch.float32).tiny)
    else:
        scaled = logits / cfg.temperature
    if cfg.top_k == 0 and cfg.top_p >= 1.0:
        probs = torch.softmax(scaled, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if cfg.top_k:
        values, indices = scaled.topk(min(cfg.top_k, scaled.shape[-1]), dim=-1)
    else:
        values, indices = scaled.sort(dim=-1, descending=True)
    probs = torch.softmax(values, dim=-1)
    if cfg.top_p < 1.0:
        # Nucleus (Holtzman et al. 2020): the smallest prefix of the sorted
        # distribution whose mass reaches top_p; the first token always stays.
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill(mass_before >= cfg.top_p, 0.0)
    choice = torch.multinomial(probs, 1, generator=generator)
    return indices.gather(-1, choice).squeeze(-1)
