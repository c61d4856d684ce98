"""The masked loss is the mean over scored tokens of the whole global batch."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from llamaforge.model import ModelConfig, build_model
from llamaforge.train.batches import IGNORE, token_loss_sum
from llamaforge.train.step import evaluate_loss, train_step


def test_token_loss_sum_is_the_hand_computed_response_loss() -> None:
    logits = torch.randn(1, 4, 6, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[IGNORE, 2, IGNORE, 5]])
    total, count = token_loss_sum(logits, targets)
    logp = logits[0].log_softmax(-1)
    hand = -(logp[1, 2] + logp[3, 5])
    assert count == 2
    torch.testing.assert_close(total, hand)


class Capture(torch.optim.SGD):
    """Records the gradients the step saw (train_step zeroes them afterwards)."""

    def step(self, closure=None):
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]
        return super().step(closure)


def model_and_batches():
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=1, n_heads=4, vocab_size=40, multiple_of=16, max_seq_len=16)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(3)
    inputs = [torch.randint(0, 40, (2, 8), generator=g) for _ in range(2)]
    targets = [torch.randint(0, 40, (2, 8), generator=g) for _ in range(2)]
    targets[0][:, :7] = IGNORE  # micro-batch 0 scores 2 tokens, micro-batch 1 scores 16
    return model, list(zip(inputs, targets, strict=True))


def test_masked_step_is_the_global_token_mean_not_a_mean_of_means() -> None:
    model, batches = model_and_batches()
    reference = copy.deepcopy(model)
    opt = Capture(model.parameters(), lr=0.0)
    result = train_step(model, opt, iter(batches), 2, 0.0, masked=True)
    # Hand computation: one sum over all 18 scored tokens, divided by 18.
    losses = [
        F.cross_entropy(
            reference(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        for x, y in batches
    ]
    expected = sum(losses) / 18
    assert math.isclose(result.loss, expected.item(), rel_tol=1e-5)
    mean_of_means = float(
        sum(loss / int((y != IGNORE).sum()) for loss, (_, y) in zip(losses, batches, strict=True))
        / 2
    )
    assert not math.isclose(result.loss, mean_of_means, rel_tol=1e-3)
    # The gradient is that of the global mean too.
    expected.backward()
    for got, param in zip(opt.grads, reference.parameters(), strict=True):
        torch.testing.assert_close(got, param.grad, rtol=1e-4, atol=1e-6)


def test_validation_scores_only_unmasked_targets() -> None:
    model, batches = model_and_batches()
    loss, count = evaluate_loss(model, batches)
    assert count == 18
    with torch.no_grad():
        total = sum(
            F.cross_entropy(
                model(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum"
            )
            for x, y in batches
        )
    assert math.isclose(loss, float(total) / 18, rel_tol=1e-5)
