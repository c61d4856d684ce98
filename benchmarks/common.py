"""What the benchmarks share: the transformers twin of our model.

The twin is built through our own Hugging Face export (``formats.huggingface.
to_hf``), so every comparison also exercises the converter, and it is pinned
to the same SDPA attention kernel we call: the comparison then measures the
code around the kernels, not a kernel choice.
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn


def hf_twin(model: nn.Module) -> nn.Module:
    """A transformers ``LlamaForCausalLM`` holding exactly our weights, on our device."""
    from transformers import LlamaForCausalLM

    from llamaforge.formats.huggingface import to_hf

    with tempfile.TemporaryDirectory() as folder:
        to_hf(model, folder)
        twin = LlamaForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="sdpa"
        )
    return twin.to(next(model.parameters()).device)
