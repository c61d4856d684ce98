"""Incremental decoding with the KV cache: sampling, batched generation, streaming."""

from llamaforge.inference.generate import (
    TextDecoder,
    completion_text,
    decode_steps,
    generate,
    generate_ids,
    stream,
)
from llamaforge.inference.sampling import SamplingConfig, sample_next

__all__ = [
    "SamplingConfig",
    "TextDecoder",
    "completion_text",
    "decode_steps",
    "generate",
    "generate_ids",
    "sample_next",
    "stream",
]
