"""Cross-entropy over the output projection, a chunk of tokens at a time.

The full-vocabulary logits (tokens x 32000 in float32) and their gradient are
the largest activations of a LLaMA training step: the forward+backward peak
of the benchmark config is ~7x the logits tensor. Here the output projection
and the loss are fused and computed ``chunk_tokens`` rows at a time, as
torchtitan, litgpt and Liger do: each chunk's logits live only while its loss
and its gradients are computed, in the forward pass, and the backward pass
hands the stored gradients of ``hidden`` and ``output_weight`` to autograd
(the loss is a scalar). Peak extra memory is a two-buffer workspace of
``chunk_tokens x V`` float32 (logits and their softmax) plus the two
gradients, which backward would need anyway.

Why it is also faster than ``F.cross_entropy`` over full logits (the profile
of a CPU step, docs/performance.md): large fresh allocations cost page faults
on every step on a CPU (glibc returns blocks over 32 MiB to the kernel), so
the workspace is kept per thread and reused across chunks and steps; the
softmax is one fused row-wise kernel (a 32000-wide row stays in cache) instead
of logsumexp's separate max / subtract / exp / sum passes; the weight gradient
is accumulated in place by the matmul (``addmm_``); and the loss scale the
caller applies (1 / tokens / accumulation steps) is folded into the small
``hidden`` operands rather than multiplied over the V x D weight gradient.

Arithmetic: the matmuls run in the ambient autocast dtype (bf16 logits under
bf16 autocast, as the model's own output projection) with the weight cast once
per call; softmax and the loss are float32. The row loss is
``(max - picked) - log(p_max)``: exact log-sum-exp algebra that never takes the
log of an underflowed probability. Same value as ``F.cross_entropy(hidden @
W.T, targets, ignore_index, reduction="sum")`` up to float summation order; a
test holds loss and both gradients to the full computation.

:func:`model_loss_sum` is what ``train_step`` calls: the chunked loss for a
plain single-device ``Transformer`` (compiled or not), the full-logits loss
for anything else (a sharded DTensor output projection, a wrapped ``output``
layer such as LoRA's, a foreign model), which keeps their arithmetic as it was.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llamaforge.model.transformer import standalone_output

IGNORE = -100
CHUNK_BYTES = 32 * 2**20  # float32 logits of one chunk (the workspace holds two)

_workspace = threading.local()


def _buffers(rows: int, vocab: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Two float32 (rows, vocab) buffers, reused while the shape and device stay the same."""
    key = (rows, vocab, device)
    if getattr(_workspace, "key", None) != key:
        _workspace.key = None
        _workspace.buffers = None  # free the old pair before allocating a new one
        shape = (rows, vocab)
        _workspace.buffers = (
            torch.empty(shape, dtype=torch.float32, device=device),
            torch.empty(shape, dtype=torch.float32, device=device),
        )
        _workspace.key = key
    return _workspace.buffers


def release_workspace() -> None:
    """Free this thread's cached chunk buffers (``2 x CHUNK_BYTES``)."""
    _workspace.key = None
    _workspace.buffers = None


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, chunk_tokens, scale):  # noqa: ANN001, ANN205
        h = hidden.reshape(-1, hidden.shape[-1])
        t = targets.reshape(-1)
        n, vocab = h.shape[0], weight.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        device = h.device
        compute = (
            torch.get_autocast_dtype(device.type)
            if torch.is_autocast_enabled(device.type)
            else weight.dtype
        )
        valid = t != ignore_index
        count = valid.sum()
        # On a CPU, skip the masking pass when nothing is ignored; elsewhere asking would sync.
        has_ignored = bool(count != n) if device.type == "cpu" else True
        safe = torch.where(valid, t, torch.zeros_like(t))
        w = weight.to(compute)  # once per call, not per chunk
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.empty_like(weight) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=device)
        rows = min(chunk_tokens, n)
        logits_buf, probs_buf = _buffers(rows, vocab, device)
        with torch.autocast(device.type, enabled=False):
            for start in range(0, n, chunk_tokens):
                end = min(start + chunk_tokens, n)
                hc = h[start:end].to(compute)
                tc, vc = safe[start:end], valid[start:end]
                logits = logits_buf[: end - start]
                if compute == torch.float32:
                    torch.mm(hc, w.t(), out=logits)
                else:
                    logits.copy_(hc @ w.t())
                best, where = logits.max(dim=-1)
                picked = logits.gather(1, tc[:, None])[:, 0]
                probs = probs_buf[: end - start]
                torch.softmax(logits, dim=-1, out=probs)  # one fused row-wise pass
                p_best = probs.gather(1, where[:, None])[:, 0]
                row_loss = (best - picked) - torch.log(p_best)
                total += torch.where(vc, row_loss, torch.zeros_like(row_loss)).sum()
                if not (need_h or need_w):
                    continue
                # d(sum of losses)/d logits = softmax - one_hot(target), 0 on ignored rows.
                probs[torch.arange(end - start, device=device), tc] -= 1.0
                if has_ignored:
                    probs.masked_fill_(~vc[:, None], 0.0)
                grad = probs if compute == torch.float32 else probs.to(compute)
                if need_h:
                    if compute == torch.float32 and grad_h.dtype == torch.float32:
                        torch.mm(grad, w, out=grad_h[start:end])
                        grad_h[start:end].mul_(scale)
                    else:
                        grad_h[start:end] = (grad @ w).mul_(scale)
                if need_w:
                    hs = hc * scale  # the caller's scale, on the small operand
                    if grad_w.dtype == compute:
                        if start == 0:
                            torch.mm(grad.t(), hs, out=grad_w)
                        else:
                            grad_w.addmm_(grad.t(), hs)
                    elif start == 0:
                        grad_w.copy_(grad.t() @ hs)
                    else:
                        grad_w.add_(grad.t() @ hs)
        ctx.hidden_shape = hidden.shape
        ctx.grad_h, ctx.grad_w = grad_h, grad_w  # not saved tensors: autograd may adopt them
        ctx.mark_non_differentiable(count)
        return total * scale, count

    @staticmethod
    def backward(ctx, grad_total, _grad_count):  # noqa: ANN001, ANN205
        grad_h, grad_w = ctx.grad_h, ctx.grad_w
        if grad_h is None and grad_w is None and any(ctx.needs_input_grad[:2]):
            raise RuntimeError(
                "chunked cross-entropy: backward ran twice through one forward "
                "(retain_graph is not supported; recompute the loss)"
            )
        ctx.grad_h = ctx.grad_w = None
        unit = grad_total.device.type == "cpu" and float(grad_total) == 1.0
        if grad_h is not None:
            grad_h = grad_h.reshape(ctx.hidden_shape)
            if not unit:
                grad_h.mul_(grad_total)
        if grad_w is not None and not unit:
            grad_w.mul_(grad_total)
        return grad_h, grad_w, None, None, None, None


def chunked_cross_entropy(
    hidden: Tensor,
    output_weight: Tensor,
    targets: Tensor,
    ignore_index: int = -100,
    chunk_tokens: int = 1024,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """``(scale * loss_sum, n_tokens)`` of next-token cross-entropy of ``hidden @ output_weight.T``.

    ``hidden`` is (B, T, D), the final-norm output; ``output_weight`` (V, D);
    ``targets`` (B, T), ``ignore_index`` where not scored. The loss is a
    float32 scalar (differentiable in ``hidden`` and ``output_weight``),
    ``n_tokens`` the count of scored targets. ``scale`` (e.g. 1 / tokens /
    accumulation steps) is applied inside, which is cheaper than scaling the
    result: backward of the returned loss with gradient 1 then copies nothing.
    Never materialises more than ``chunk_tokens`` rows of logits. Backward may
    run once per forward (no ``retain_graph``).
    """
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be > 0, got {chunk_tokens}")
    if hidden.shape[:-1] != targets.shape or hidden.shape[-1] != output_weight.shape[-1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)}, output_weight {tuple(output_weight.shape)} and "
            f"targets {tuple(targets.shape)} do not fit (B, T, D), (V, D), (B, T)"
        )
    return _ChunkedCrossEntropy.apply(
        hidden, output_weight, targets, ignore_index, chunk_tokens, float(scale)
    )


def chunk_tokens_for(vocab_size: int) -> int:
    """Rows per chunk so one chunk's float32 logits take about :data:`CHUNK_BYTES`."""
    return max(128, CHUNK_BYTES // (4 * vocab_size))


def chunkable_output(model: nn.Module) -> nn.Linear | None:
    """The plain ``nn.Linear`` output projection of a single-device ``Transformer``, else None."""
    output = standalone_output(model)
    return output if type(output) is nn.Linear else None


def model_loss_sum(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    documents: Tensor | None = None,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """``(scale * sum of float32 token losses, scored-token count)`` on one micro-batch."""
    extra = {} if documents is None else {"documents": documents}
    output = chunkable_output(model)
    if output is None:
        logits = model(inputs, **extra)
        flat = targets.flatten()
        total = F.cross_entropy(
            logits.float().flatten(0, 1), flat, ignore_index=IGNORE, reduction="sum"
        )
        return total * scale, (flat != IGNORE).sum()
    hidden = model(inputs, hidden_only=True, **extra)
    chunk = chunk_tokens_for(output.weight.shape[0])
    return chunked_cross_entropy(hidden, output.weight, targets, IGNORE, chunk, scale)
