"""Chunked cross-entropy equals the full computation: loss, count and both gradients."""

import pytest
import torch
import torch.nn.functional as F

from llamaforge.train.chunked_loss import chunked_cross_entropy


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 7, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (2, 7), generator=g)
    targets[0, :3] = -100  # a masked prompt
    targets[1, -1] = -100
    return hidden, weight, targets


def _full(hidden, weight, targets):
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")


@pytest.mark.parametrize("chunk", [1, 3, 5, 14, 100])
def test_loss_count_and_gradients_equal_full_cross_entropy(chunk):
    hidden, weight, targets = _inputs()
    loss, count = chunked_cross_entropy(hidden, weight, targets, chunk_tokens=chunk)
    (2.5 * loss).backward()  # a non-unit incoming gradient, as a 1/count scale gives
    got = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    expected = _full(hidden, weight, targets)
    (2.5 * expected).backward()
    assert int(count) == 14 - 4
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(got[0], hidden.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-6)
    assert hidden.grad[0, :3].abs().max() == 0  # ignored positions get no gradient


def test_float32_and_bad_shapes():
    hidden, weight, targets = _inputs(1)
    h32 = hidden.detach().float().requires_grad_()
    w32 = weight.detach().float().requires_grad_()
    loss, _ = chunked_cross_entropy(h32, w32, targets, chunk_tokens=4)
    loss.backward()
    expected = _full(hidden, weight, targets)
    expected.backward()
    torch.testing.assert_close(loss.double(), expected.double(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(h32.grad.double(), hidden.grad, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        chunked_cross_entropy(h32, w32, targets[:, :-1])
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_cross_entropy(h32, w32, targets, chunk_tokens=0)
