"""AdamW with decoupled weight decay and the paper's learning-rate schedule (§2.2).

Weight decay groups. The paper decays "0.1" without saying what. We decay
every matrix, the token embedding and the (untied) output projection
included, and leave the RMSNorm gains undecayed (nanoGPT's rule: decay
``ndim >= 2``). Why: a gain multiplies a normalised vector, so decaying it
only pulls the layer's output scale towards 0 and fights the normalisation,
while the embedding is just another matrix whose rows grow without bound
under Adam if nothing shrinks them (rare tokens get large, noisy updates).
Both choices are switchable (``optim.decay_embeddings``, ``optim.decay_norms``)
for those who follow torchtitan/litgpt, which decay every parameter.

The schedule is a pure function of the step, not a ``torch.optim.lr_scheduler``
object: the trainer sets the learning rate before each step with
:func:`apply_lr`, so resuming needs no scheduler state and cannot drift.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from llamaforge.model.naming import plain_name
from llamaforge.train.config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Two AdamW groups, ``decay`` and ``no_decay`` (empty groups are left out).

    Each group carries ``param_names`` (PyTorch's own key for named groups,
    saved in the optimizer state) with wrapper prefixes removed, so a
    checkpoint tells which tensors were decayed whatever wrapped the model.
    """
    groups: dict[str, dict[str, list]] = {
        "decay": {"params": [], "param_names": []},
        "no_decay": {"params": [], "param_names": []},
    }
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue  # frozen, or tied and already placed
            seen.add(id(param))
            if isinstance(module, nn.Embedding):
                decay = cfg.decay_embeddings
            elif param.ndim < 2:  # RMSNorm gains (the model has no biases)
                decay = cfg.decay_norms
            else:
                decay = True
            group = groups["decay" if decay else "no_decay"]
            group["params"].append(param)
            full = f"{module_name}.{param_name}" if module_name else param_name
            group["param_names"].append(plain_name(full))
    weight_decay = {"decay": cfg.weight_decay, "no_decay": 0.0}
    return [{**g, "weight_decay": weight_decay[name]} for name, g in groups.items() if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, starting at the schedule's step-0 rate.

    ``cfg.implementation`` picks PyTorch's kernel. The default, ``"fused"``,
    updates all parameters in one kernel; PyTorch has it on CPU and CUDA (and
    a few more devices), where it is 5-6x faster than the per-parameter loop
    that ``fused=None, foreach=None`` resolves to on CPU. On a device without
    it the optimizer falls back to ``foreach`` (said once, as a warning). The
    three agree to float rounding (a test holds them within 1e-6 over several
    steps), not bit for bit, so a run resumes with the implementation it chose
    unless its config changes it. ``lr`` is set to the peak and overwritten by
    :func:`apply_lr` before every step.
    """
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    choice = cfg.implementation
    if choice == "fused":
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices())
        devices = {p.device.type for g in groups for p in g["params"]}
        if not devices <= supported:
            warnings.warn(
                f"optim.implementation = 'fused': no fused AdamW on {sorted(devices - supported)}; "
                "using 'foreach'",
                stacklevel=2,
            )
            choice = "foreach"
    return torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=choice == "fused",
        foreach=choice == "foreach",
    )


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a ``max_steps`` run.

    Linear warm-up: step ``s < warmup_steps`` uses ``lr * (s + 1) / warmup_steps``,
    so the first step is small but not wasted at 0 and the last warm-up step
    reaches the peak. Then a half cosine from ``lr`` at ``warmup_steps`` to
    ``min_lr_ratio * lr`` at ``max_steps`` (10 % in the paper), constant after
    (extra steps past the planned end train at the final rate).
    """
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step >= max_steps:
        return floor
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / (max_steps - cfg.warmup_steps)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_lr(
    optimizer: torch.optim.Optimizer, step: int, cfg: OptimConfig, max_steps: int
) -> float:
    """Set every group's learning rate for ``step``; return it (for logging)."""
    lr = lr_at(step, cfg, max_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
