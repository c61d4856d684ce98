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


class _LogitsOnly(torch.nn.Module):
    """Hides the Transformer, so train_step takes the full-logits path."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, tokens, **kwargs):
        return self.inner(tokens, **kwargs)


@pytest.mark.parametrize("masked", [False, True])
def test_train_step_uses_the_chunked_loss_and_matches_the_logits_path(masked, monkeypatch):
    import copy

    from llamaforge.model import build_model, get_preset
    from llamaforge.train import chunked_loss
    from llamaforge.train.step import train_step

    torch.manual_seed(0)
    model = build_model(get_preset("tiny-1M", n_layers=2, vocab_size=300))
    twin = _LogitsOnly(copy.deepcopy(model))
    assert chunked_loss.chunkable_output(model) is model.output
    assert chunked_loss.chunkable_output(twin) is None
    monkeypatch.setattr(chunked_loss, "CHUNK_BYTES", 4 * 300 * 5)  # 128-row chunks (the floor)
    tokens = torch.randint(0, 300, (2, 200))
    targets = torch.randint(0, 300, (2, 200))
    if masked:
        targets[0, :50] = -100
    calls = []
    real = chunked_loss.chunked_cross_entropy
    monkeypatch.setattr(
        chunked_loss, "chunked_cross_entropy", lambda *a: calls.append(a[4]) or real(*a)
    )
    results = []
    for m in (model, twin):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        batch = [(tokens, targets)]
        results.append(train_step(m, opt, batch, 1, grad_clip=0.0, masked=masked))
    assert calls == [128]  # the Transformer went through the chunked loss, the twin did not
    assert results[0].loss == pytest.approx(results[1].loss, rel=1e-6)
    assert results[0].grad_norm == pytest.approx(results[1].grad_norm, rel=1e-5)
    for a, b in zip(model.parameters(), twin.inner.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_scale_is_applied_to_loss_and_both_gradients():
    hidden, weight, targets = _inputs(2)
    loss, _ = chunked_cross_entropy(hidden, weight, targets, chunk_tokens=4, scale=0.125)
    loss.backward()
    got = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    expected = _full(hidden, weight, targets) * 0.125
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[0], hidden.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-7)


def test_bf16_autocast_matches_full_bf16_logits():
    hidden, weight, targets = _inputs(3)
    h = hidden.detach().float().requires_grad_()
    w = weight.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = chunked_cross_entropy(h, w, targets, chunk_tokens=3)
    loss.backward()
    got = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = h @ w.t()  # bf16, as the model's own output projection
    expected = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
    expected.backward()
    assert got[0].dtype == got[1].dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(got[0], h.grad, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(got[1], w.grad, rtol=2e-2, atol=2e-2)


def test_workspace_is_reused_across_shapes_and_calls():
    """A cached buffer of another shape never leaks into the next result."""
    from llamaforge.train import chunked_loss

    for seed, chunk in [(4, 5), (5, 3), (4, 5), (6, 100)]:
        hidden, weight, targets = _inputs(seed)
        h, w = hidden.detach().float(), weight.detach().float()
        loss, _ = chunked_cross_entropy(h, w, targets, chunk_tokens=chunk)
        torch.testing.assert_close(
            loss.double(), _full(hidden, weight, targets).double(), rtol=1e-5, atol=1e-4
        )
    chunked_loss.release_workspace()
    assert getattr(chunked_loss._workspace, "buffers", None) is None


def test_second_backward_raises_and_frozen_weight_gets_no_gradient():
    hidden, weight, targets = _inputs(7)
    loss, _ = chunked_cross_entropy(hidden, weight, targets, chunk_tokens=4)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()
    frozen = weight.detach()  # e.g. a frozen output layer under LoRA
    h = hidden.detach().requires_grad_()
    loss, _ = chunked_cross_entropy(h, frozen, targets, chunk_tokens=4)
    loss.backward()
    expected_h = hidden.detach().requires_grad_()
    _full(expected_h, frozen, targets).backward()
    torch.testing.assert_close(h.grad, expected_h.grad, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        loss, count = chunked_cross_entropy(hidden, weight, targets, chunk_tokens=4)
    assert not loss.requires_grad and int(count) == 10
