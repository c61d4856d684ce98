"""``Transformer.forward(outputs_at=...)``: outputs at some positions, last layer pruned."""

import pytest
import torch

from llamaforge.model import ModelConfig, build_model
from llamaforge.model.layers import FeedForward, QueryRows, apply_rotary, rotary_tables

CFG = ModelConfig(dim=64, n_layers=3, n_heads=4, vocab_size=97, multiple_of=16, max_seq_len=64)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(CFG).eval()


def _flat(full: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    return full.reshape(-1, full.shape[-1])[at]


# Positions spread unevenly over the rows (row 1 has none, row 2 many), ends included.
AT = torch.tensor([0, 5, 19, 40, 41, 42, 47, 58, 59])


def test_causal_outputs_equal_the_slices_of_the_full_output(model):
    tokens = torch.randint(0, CFG.vocab_size, (3, 20))
    with torch.inference_mode():
        full = model(tokens)
        part = model(tokens, outputs_at=AT)
        hidden = model(tokens, outputs_at=AT, hidden_only=True)
        full_hidden = model(tokens, hidden_only=True)
    assert part.shape == (len(AT), CFG.vocab_size)
    torch.testing.assert_close(part, _flat(full, AT), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden, _flat(full_hidden, AT), atol=1e-5, rtol=1e-5)


def test_masked_outputs_with_positions_equal_the_full_output(model):
    torch.manual_seed(1)
    tokens = torch.randint(0, CFG.vocab_size, (3, 20))
    mask = (torch.rand(3, 1, 20, 20) > 0.5) | torch.eye(20, dtype=torch.bool)
    positions = torch.randint(0, 40, (3, 20))
    with torch.inference_mode():
        full = model(tokens, positions=positions, mask=mask)
        part = model(tokens, positions=positions, mask=mask, outputs_at=AT)
    torch.testing.assert_close(part, _flat(full, AT), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", ["2d", "float"])
def test_shared_2d_and_additive_masks(model, shape):
    """A (seq, seq) mask broadcast over the batch, and an additive float mask, as SDPA takes them."""
    torch.manual_seed(2)
    tokens = torch.randint(0, CFG.vocab_size, (3, 20))
    allowed = (torch.rand(20, 20) > 0.5) | torch.eye(20, dtype=torch.bool)
    mask = allowed
    if shape == "float":
        mask = torch.zeros(3, 1, 20, 20).masked_fill(~allowed, float("-inf"))
    with torch.inference_mode():
        full = model(tokens, mask=mask)
        part = model(tokens, mask=mask, outputs_at=AT)
    torch.testing.assert_close(part, _flat(full, AT), atol=1e-5, rtol=1e-5)


def test_outputs_at_differ_from_a_wrong_slice(model):
    """The check above could pass by accident only if every position had the same output."""
    tokens = torch.randint(0, CFG.vocab_size, (3, 20))
    with torch.inference_mode():
        full = model(tokens)
        part = model(tokens, outputs_at=AT)
    assert (part - _flat(full, AT.flip(0))).abs().max() > 1e-2


def test_no_positions_and_every_position(model):
    tokens = torch.randint(0, CFG.vocab_size, (2, 10))
    with torch.inference_mode():
        assert model(tokens, outputs_at=torch.tensor([], dtype=torch.long)).shape == (0, 97)
        every = model(tokens, outputs_at=torch.arange(20))
        torch.testing.assert_close(every, model(tokens).reshape(20, -1), atol=1e-5, rtol=1e-5)


def test_gradients_flow_through_the_pruned_layer(model):
    tokens = torch.randint(0, CFG.vocab_size, (2, 10))
    model.train()
    model(tokens, outputs_at=torch.tensor([3, 12])).sum().backward()
    last = model.layers[-1]
    assert last.attention.wq.weight.grad.abs().sum() > 0
    assert last.feed_forward.w2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "at, message",
    [
        (torch.tensor([3, 2]), "increasing"),
        (torch.tensor([4, 4]), "increasing"),
        (torch.tensor([[1, 2]]), "1-D"),
        (torch.tensor([0, 20]), r"\[0, 20\)"),
        (torch.tensor([-1, 3]), r"\[0, 20\)"),
    ],
)
def test_bad_positions_are_refused(at, message):
    with pytest.raises(ValueError, match=message):
        QueryRows(at, batch=2, seq=10)


def test_not_with_a_cache_or_last_only(model):
    tokens = torch.randint(0, CFG.vocab_size, (1, 4))
    with pytest.raises(ValueError, match="outputs_at"):
        model(tokens, outputs_at=torch.tensor([1]), last_only=True)
    with pytest.raises(ValueError, match="outputs_at"):
        model(tokens, outputs_at=torch.tensor([1]), cache=model.new_cache(1, 8))


def test_inference_swiglu_in_place_equals_the_autograd_form():
    torch.manual_seed(0)
    ffn = FeedForward(CFG)
    x = torch.randn(2, 5, CFG.dim)
    with torch.no_grad():
        fast = ffn(x)
    slow = ffn(x)
    assert slow.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=0, rtol=0)


def test_inference_rotary_and_residuals_equal_the_autograd_form(model):
    """The in-place rotary and residual sums of inference give the autograd path's outputs."""
    tokens = torch.randint(0, CFG.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(20).repeat(2, 1) + torch.tensor([[0], [7]])  # rows rotate apart
    with torch.no_grad():
        fast = model(tokens, positions=positions)
    slow = model(tokens, positions=positions)
    assert slow.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=2e-5, rtol=1e-5)
    cos, sin = rotary_tables(positions, CFG.head_dim, CFG.rope_theta)
    x = torch.randn(2, 20, CFG.n_heads, CFG.head_dim)
    with torch.no_grad():
        rotated = apply_rotary(x, cos, sin)
    reference = apply_rotary(x.requires_grad_(), cos, sin).detach()
    torch.testing.assert_close(rotated, reference, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(rotated, x.detach(), atol=1e-3)  # it does rotate
