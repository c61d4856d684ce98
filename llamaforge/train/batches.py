"""What a training batch is, and the loss of one with masked targets.

A micro-batch is ``(inputs, targets)`` (pretraining windows) or ``(inputs,
targets, documents)``: ``targets`` equal to :data:`IGNORE` (-100, PyTorch's
``ignore_index``) are not scored, which is how finetuning keeps the loss on
response tokens only and how padding is left out; ``documents`` (or ``None``)
gives each token an example id so packed examples attend only to themselves
(see :meth:`llamaforge.model.Transformer.forward`).

With masks, micro-batches hold different numbers of scored tokens, so a mean
of per-micro-batch means would weight a token in a short batch more than one
in a long batch. A masked step's loss is instead the sum of token losses over
the whole global batch (every micro-batch of every data-parallel rank)
divided by the number of scored tokens in it: :func:`masked_step_scale`.
Unmasked data (pretraining) keeps the old arithmetic exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


def unpack(batch: Sequence[torch.Tensor | None], device: torch.device) -> tuple:
    """``(inputs, targets, documents_or_None)`` on ``device``."""
    inputs, targets, *rest = batch
    documents = rest[0] if rest else None
    inputs = inputs.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    if documents is not None:
        documents = documents.to(device, non_blocking=True)
    return inputs, targets, documents


def forward(model: nn.Module, inputs: torch.Tensor, documents: torch.Tensor | None):
    """Logits; the ``documents`` keyword only when present, so pretraining calls are unchanged."""
    return model(inputs) if documents is None else model(inputs, documents=documents)


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of float32 cross-entropy over scored targets, and how many there were."""
    flat = targets.flatten()
    total = F.cross_entropy(
        logits.float().flatten(0, 1), flat, ignore_index=IGNORE, reduction="sum"
    )
    return total, int((flat != IGNORE).sum())


def scored_tokens(targets: torch.Tensor) -> int:
    return int((targets != IGNORE).sum())


def masked_step_scale(global_count: float, dp: int) -> float:
    """Factor turning a rank's summed token loss into its share of the global mean.

    Data-parallel gradient reduction averages over the ``dp`` ranks, so each
    rank scales by ``dp / global_count``: the averaged gradient is then that of
    sum(all token losses) / global_count. A global batch with no scored token
    gets 0 (the step reports NaN and is skipped).
    """
    return dp / global_count if global_count > 0 else 0.0
