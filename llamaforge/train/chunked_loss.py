"""Cross-entropy over the output projection, a chunk of tokens at a time.

The full-vocabulary logits (tokens x 32000 in float32) and their gradient are
the largest activations of a LLaMA training step: the forward+backward peak
of the benchmark config is ~7x the logits tensor. Here the output projection
and the loss are fused and computed ``chunk_tokens`` rows at a time, as
torchtitan, litgpt and Liger do: each chunk's logits live only while its loss
and its gradients are computed, in the forward pass, and the backward pass
just scales the stored gradients of ``hidden`` and ``output_weight`` by the
incoming gradient (the loss is a scalar). Peak extra memory is one chunk's
logits (``chunk_tokens x V`` float32) plus the two gradients, which backward
would need anyway.

Arithmetic: the matmuls follow the ambient autocast (bf16 logits under bf16
autocast, as the model's own output projection), log-softmax is in float32.
Same value as ``F.cross_entropy(hidden @ W.T, targets, ignore_index,
reduction="sum")`` up to float summation order; a test holds loss and both
gradients to the full computation.

:func:`model_loss_sum` is what ``train_step`` calls: the chunked loss for a
plain single-device ``Transformer`` (compiled or not), the full-logits loss
for anything else (a sharded DTensor output projection, a wrapped ``output``
layer such as LoRA's, a foreign model), which keeps their arithmetic as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llamaforge.model import Transformer

IGNORE = -100
CHUNK_BYTES = 64 * 2**20  # float32 logits of one chunk


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, chunk_tokens):  # noqa: ANN001, ANN205
        h = hidden.reshape(-1, hidden.shape[-1])
        t = targets.reshape(-1)
        grad_h = torch.zeros_like(h) if hidden.requires_grad else None
        grad_w = torch.zeros_like(weight) if weight.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        count = (t != ignore_index).sum()
        for start in range(0, h.shape[0], chunk_tokens):
            hc, tc = h[start : start + chunk_tokens], t[start : start + chunk_tokens]
            logits = (hc @ weight.t()).float()
            valid = tc != ignore_index
            safe = torch.where(valid, tc, torch.zeros_like(tc))
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, safe[:, None])[:, 0]
            total += torch.where(valid, lse - picked, torch.zeros_like(lse)).sum()
            if grad_h is None and grad_w is None:
                continue
            # d(sum of losses)/d logits = softmax - one_hot(target), 0 on ignored rows.
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(grad.shape[0], device=grad.device), safe] -= 1.0
            grad.mul_(valid[:, None])
            grad = grad.to(hc.dtype)
            if grad_h is not None:
                grad_h[start : start + chunk_tokens] = grad @ weight.to(grad.dtype)
            if grad_w is not None:
                grad_w += (grad.t() @ hc).to(grad_w.dtype)
        ctx.hidden_shape = hidden.shape
        ctx.save_for_backward(
            grad_h if grad_h is not None else torch.empty(0),
            grad_w if grad_w is not None else torch.empty(0),
        )
        ctx.has = (grad_h is not None, grad_w is not None)
        ctx.mark_non_differentiable(count)
        return total, count

    @staticmethod
    def backward(ctx, grad_total, _grad_count):  # noqa: ANN001, ANN205
        grad_h, grad_w = ctx.saved_tensors
        out_h = (grad_h * grad_total).reshape(ctx.hidden_shape) if ctx.has[0] else None
        out_w = grad_w * grad_total if ctx.has[1] else None
        return out_h, out_w, None, None, None


def chunked_cross_entropy(
    hidden: Tensor,
    output_weight: Tensor,
    targets: Tensor,
    ignore_index: int = -100,
    chunk_tokens: int = 1024,
) -> tuple[Tensor, Tensor]:
    """``(loss_sum, n_tokens)`` of next-token cross-entropy of ``hidden @ output_weight.T``.

    ``hidden`` is (B, T, D), the final-norm output; ``output_weight`` (V, D);
    ``targets`` (B, T), ``ignore_index`` where not scored. ``loss_sum`` is a
    float32 scalar (differentiable in ``hidden`` and ``output_weight``),
    ``n_tokens`` the count of scored targets: divide by the global count for
    the token mean. Never materialises more than ``chunk_tokens`` rows of logits.
    """
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be > 0, got {chunk_tokens}")
    if hidden.shape[:-1] != targets.shape or hidden.shape[-1] != output_weight.shape[-1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)}, output_weight {tuple(output_weight.shape)} and "
            f"targets {tuple(targets.shape)} do not fit (B, T, D), (V, D), (B, T)"
        )
    return _ChunkedCrossEntropy.apply(hidden, output_weight, targets, ignore_index, chunk_tokens)


def chunk_tokens_for(vocab_size: int) -> int:
    """Rows per chunk so one chunk's float32 logits take about :data:`CHUNK_BYTES`."""
    return max(128, CHUNK_BYTES // (4 * vocab_size))


def chunkable_output(model: nn.Module) -> nn.Linear | None:
    """The output projection of a plain llamaforge ``Transformer``, else None (full logits)."""
    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    if not isinstance(inner, Transformer) or type(inner.output) is not nn.Linear:
        return None
    from torch.distributed.fsdp import FSDPModule

    if any(isinstance(m, FSDPModule) for m in (inner, inner.output)):
        return None  # FSDP2 swaps sharded and gathered weights around forward
    weight = inner.output.weight
    if type(weight) is not nn.Parameter and type(weight) is not torch.Tensor:
        return None  # a DTensor (FSDP2/TP shard) or another tensor subclass
    return inner.output


def model_loss_sum(
    model: nn.Module, inputs: Tensor, targets: Tensor, documents: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(sum of float32 token losses, scored-token count)`` of ``model`` on one micro-batch."""
    extra = {} if documents is None else {"documents": documents}
    output = chunkable_output(model)
    if output is None:
        logits = model(inputs, **extra)
        flat = targets.flatten()
        total = F.cross_entropy(
            logits.float().flatten(0, 1), flat, ignore_index=IGNORE, reduction="sum"
        )
        return total, (flat != IGNORE).sum()
    hidden = model(inputs, hidden_only=True, **extra)
    chunk = chunk_tokens_for(output.weight.shape[0])
    return chunked_cross_entropy(hidden, output.weight, targets, IGNORE, chunk)
