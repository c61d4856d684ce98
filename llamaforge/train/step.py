"""One optimizer step with gradient accumulation, and held-out loss.

Kept apart from the trainer's bookkeeping so the benchmark, the tests and the
distributed trainer run exactly the same arithmetic.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llamaforge.train import batches as B
from llamaforge.train.chunked_loss import model_loss_sum


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast over float32 master weights (the paper trains in bf16), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in float32 (bf16 logits lose too much in log-softmax)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@dataclass
class StepResult:
    loss: float  # mean over the accumulated micro-batches
    grad_norm: float  # before clipping
    skipped: bool  # non-finite loss or gradient: no update was applied
    tokens: int


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    accumulation_steps: int,
    grad_clip: float,
    precision: str = "fp32",
    clip_fn: Callable[..., torch.Tensor] = nn.utils.clip_grad_norm_,
    loss_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    masked: bool = False,
    count_reduce: Callable[[int], float] | None = None,
    dp: int = 1,
) -> StepResult:
    """Accumulate ``accumulation_steps`` micro-batches, clip, and step unless non-finite.

    The loss of a plain ``Transformer`` is the chunked cross-entropy of
    :mod:`llamaforge.train.chunked_loss` (the full logits and their gradient
    are never built; same value up to float summation order); other models
    (sharded, LoRA-wrapped output, foreign) go through their logits.

    Each micro-batch loss is divided by the number of micro-batches, so the
    accumulated gradient equals that of one big batch of the same tokens
    (all micro-batches hold the same number of tokens). A non-finite loss or
    gradient norm skips the update entirely and zeroes the gradients: the
    weights stay those of the last good step.

    Distributed runs pass a ``clip_fn`` that reduces the norm over the mesh
    and a ``loss_reduce`` that averages the loss over ranks, so every rank
    reports the global loss and takes the same skip decision.

    ``masked`` (finetuning data, see :mod:`llamaforge.train.batches`): the
    loss is the sum of token losses over all scored targets of the global batch
    divided by their number; ``count_reduce`` sums a rank's scored-token count
    over the data-parallel ranks and ``dp`` is their number. A step with no
    scored token at all has loss NaN and is skipped like a non-finite one.
    """
    if masked:
        return _masked_step(
            model, optimizer, micro_batches, accumulation_steps, grad_clip, precision,
            clip_fn, loss_reduce, count_reduce, dp,
        )  # fmt: skip
    device = next(model.parameters()).device
    total_loss = torch.zeros((), device=device)
    tokens = 0
    for index, (inputs, targets) in enumerate(micro_batches):
        if index >= accumulation_steps:
            break
        # lm_loss's token mean, as a scale applied inside the loss (see chunked_loss).
        scored = B.scored_tokens(targets)  # on the host tensor: no device sync
        scale = 1.0 / (scored * accumulation_steps) if scored else float("nan")
        inputs, targets = (
            inputs.to(device, non_blocking=True),
            targets.to(device, non_blocking=True),
        )
        with autocast_context(device, precision):
            loss, _ = model_loss_sum(model, inputs, targets, scale=scale)
        loss.backward()
        total_loss += loss.detach()
        tokens += targets.numel()
    grad_norm = clip_fn(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if loss_reduce is not None:
        total_loss = loss_reduce(total_loss)
    loss_value, norm_value = float(total_loss), float(grad_norm)
    skipped = not (math.isfinite(loss_value) and math.isfinite(norm_value))
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss_value, grad_norm=norm_value, skipped=skipped, tokens=tokens)


def _masked_step(
    model, optimizer, micro_batches, accumulation_steps, grad_clip, precision,
    clip_fn, loss_reduce, count_reduce, dp,
) -> StepResult:  # fmt: skip
    device = next(model.parameters()).device
    # Token ids are small: fetch every micro-batch first to know the global count.
    batches = [b for _, b in zip(range(accumulation_steps), micro_batches, strict=False)]
    local = sum(B.scored_tokens(b[1]) for b in batches)
    global_count = count_reduce(local) if count_reduce is not None else float(local)
    scale = B.masked_step_scale(global_count, dp)
    total_loss = torch.zeros((), device=device)
    tokens = 0
    for batch in batches:
        inputs, targets, documents = B.unpack(batch, device)
        with autocast_context(device, precision):
            loss, _ = model_loss_sum(model, inputs, targets, documents, scale=scale)
        loss.backward()
        total_loss += loss.detach()
        tokens += targets.numel()
    grad_norm = clip_fn(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if loss_reduce is not None:
        total_loss = loss_reduce(total_loss)
    loss_value = float(total_loss) if global_count > 0 else float("nan")
    norm_value = float(grad_norm)
    skipped = not (math.isfinite(loss_value) and math.isfinite(norm_value))
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss_value, grad_norm=norm_value, skipped=skipped, tokens=tokens)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    precision: str = "fp32",
    max_batches: int | None = None,
) -> tuple[float, int]:
    """Token-weighted mean loss over ``batches`` and the number of tokens scored.

    Masked targets (:data:`~llamaforge.train.batches.IGNORE`) are not scored,
    so finetuning's validation loss is over response tokens only.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for index, batch in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        inputs, targets, documents = B.unpack(batch, device)
        with autocast_context(device, precision):
            logits = B.forward(model, inputs, documents)
        if documents is None and B.scored_tokens(targets) == targets.numel():
            total += float(lm_loss(logits, targets)) * targets.numel()  # pretraining, unchanged
            count += targets.numel()
        else:
            summed, scored = B.token_loss_sum(logits, targets)
            total += float(summed)
            count += scored
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_loss received no batches")
    return total / count, count
