import math

import pytest
import torch

from llamaforge.model import build_model, get_preset
from llamaforge.train.activation_checkpoint import apply_activation_checkpointing
from llamaforge.train.config import OptimConfig
from llamaforge.train.optim import apply_lr, build_optimizer, lr_at, param_groups


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(get_preset("tiny-1M", n_layers=1, vocab_size=64))


def test_schedule_values_match_the_formula():
    cfg = OptimConfig(lr=3e-4, warmup_steps=2000, min_lr_ratio=0.1)
    total = 12_000
    assert lr_at(0, cfg, total) == pytest.approx(3e-4 / 2000)
    assert lr_at(999, cfg, total) == pytest.approx(1.5e-4)  # half-way up the ramp
    assert lr_at(1999, cfg, total) == pytest.approx(3e-4)  # last warm-up step: the peak
    assert lr_at(2000, cfg, total) == pytest.approx(3e-4)  # cosine starts at the peak
    # Half-way through the cosine, cos(pi/2) = 0: the mean of peak and floor.
    assert lr_at(7000, cfg, total) == pytest.approx((3e-4 + 3e-5) / 2)
    # A quarter of the way: floor + (peak - floor) * (1 + cos(pi/4)) / 2.
    quarter = 3e-5 + 2.7e-4 * (1 + math.sqrt(0.5)) / 2
    assert lr_at(4500, cfg, total) == pytest.approx(quarter)
    assert lr_at(total, cfg, total) == pytest.approx(3e-5)  # 10 % of the peak
    assert lr_at(total + 500, cfg, total) == pytest.approx(3e-5)  # constant after


def test_schedule_shape():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.0)
    values = [lr_at(s, cfg, 100) for s in range(101)]
    assert all(b > a for a, b in zip(values[:10], values[1:10], strict=False))  # rises
    assert all(b <= a for a, b in zip(values[10:], values[11:], strict=False))  # falls
    assert values[-1] == 0.0
    no_warmup = OptimConfig(lr=1.0, warmup_steps=0)
    assert lr_at(0, no_warmup, 10) == 1.0
    with pytest.raises(ValueError):
        lr_at(-1, cfg, 100)


def test_apply_lr_sets_every_group():
    model = tiny_model()
    cfg = OptimConfig(lr=1e-3, warmup_steps=4)
    opt = build_optimizer(model, cfg)
    lr = apply_lr(opt, 1, cfg, 100)
    assert lr == pytest.approx(1e-3 * 2 / 4)
    assert [g["lr"] for g in opt.param_groups] == [lr] * len(opt.param_groups)


def test_groups_decay_matrices_and_embeddings_but_not_norm_gains():
    model = tiny_model()
    groups = {g["weight_decay"]: g for g in param_groups(model, OptimConfig(weight_decay=0.1))}
    decayed, kept = set(groups[0.1]["param_names"]), set(groups[0.0]["param_names"])
    names = {n for n, _ in model.named_parameters()}
    assert decayed | kept == names and not decayed & kept
    assert kept == {n for n, p in model.named_parameters() if p.ndim == 1}
    assert {"tok_embeddings.weight", "output.weight", "layers.0.attention.wq.weight"} <= decayed
    flipped = param_groups(model, OptimConfig(decay_embeddings=False, decay_norms=True))
    by_decay = {g["weight_decay"]: set(g["param_names"]) for g in flipped}
    assert by_decay[0.0] == {"tok_embeddings.weight"}
    opt = build_optimizer(model, OptimConfig(betas=(0.8, 0.9), eps=1e-6))
    assert opt.defaults["betas"] == (0.8, 0.9) and opt.defaults["eps"] == 1e-6
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)


def test_group_names_ignore_activation_checkpoint_wrappers():
    model = apply_activation_checkpointing(tiny_model(), "full")
    names = {n for g in param_groups(model, OptimConfig()) for n in g["param_names"]}
    assert "layers.0.attention.wq.weight" in names
    assert not any("_checkpoint_wrapped_module" in n for n in names)


def test_weight_decay_is_decoupled_and_skips_norms():
    """With zero gradients AdamW only decays: w <- w * (1 - lr * wd) on decayed groups."""
    model = tiny_model()
    cfg = OptimConfig(lr=0.5, weight_decay=0.1)
    opt = build_optimizer(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, param in model.named_parameters():
        factor = 1.0 if param.ndim == 1 else 1 - 0.5 * 0.1
        torch.testing.assert_close(param.detach(), before[name] * factor)


def _train_params(implementation: str, steps: int = 6) -> list[torch.Tensor]:
    """Parameters after ``steps`` AdamW steps on fixed random gradients."""
    model = tiny_model()
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1, implementation=implementation)
    opt = build_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_fused_and_foreach_adamw_match_the_for_loop_over_several_steps():
    reference = _train_params("for-loop")
    start = [p.detach() for p in tiny_model().parameters()]
    moved = max((a - b).abs().max().item() for a, b in zip(reference, start, strict=True))
    assert moved > 1e-3  # the steps really changed the weights
    for implementation in ("fused", "foreach"):
        got = _train_params(implementation)
        for a, b in zip(got, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_default_adamw_is_fused_on_cpu():
    opt = build_optimizer(tiny_model(), OptimConfig())
    assert opt.defaults["fused"] is True and not opt.defaults["foreach"]
    loop = build_optimizer(tiny_model(), OptimConfig(implementation="for-loop"))
    assert not loop.defaults["fused"] and not loop.defaults["foreach"]
