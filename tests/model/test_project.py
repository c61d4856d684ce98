"""The skinny-row CPU projection equals ``nn.Linear`` and only runs where it should."""

import pytest
import torch
from torch import nn

from llamaforge.model import layers
from llamaforge.model.layers import SKINNY_ROWS, SKINNY_VOCAB_ROWS, project


def _spy(monkeypatch):
    """Count calls of the linear module (the fallback path)."""
    calls = []
    real = nn.Linear.forward
    monkeypatch.setattr(nn.Linear, "forward", lambda self, x: calls.append(1) or real(self, x))
    return calls


@pytest.mark.parametrize("rows", [1, 4, SKINNY_ROWS])
def test_few_rows_take_the_transposed_product_with_the_same_values(rows, monkeypatch):
    torch.manual_seed(0)
    linear = nn.Linear(256, 768, bias=False)
    x = torch.randn(rows, 1, 256)
    expected = linear(x)
    calls = _spy(monkeypatch)
    with torch.inference_mode():
        got = project(linear, x)
    assert calls == []  # the transposed product ran, not F.linear
    assert got.shape == expected.shape == (rows, 1, 768)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_everything_else_keeps_the_module(monkeypatch):
    torch.manual_seed(0)
    big = nn.Linear(256, 768, bias=False)
    calls = _spy(monkeypatch)
    x = torch.randn(4, 256)
    project(big, x)  # autograd on: training keeps F.linear
    with torch.no_grad():
        project(big, torch.randn(SKINNY_ROWS + 1, 256))  # too many rows
        project(nn.Linear(64, 64, bias=False), torch.randn(4, 64))  # cache-sized weight
        project(nn.Linear(256, 768), x)  # a bias
        assert len(calls) == 4
        vocab = nn.Linear(256, 32000, bias=False)
        project(vocab, torch.randn(SKINNY_VOCAB_ROWS, 256), SKINNY_VOCAB_ROWS)
        assert len(calls) == 4  # the output projection keeps the fast path up to 64 rows


def test_cached_decoding_logits_match_the_full_forward():
    """End to end through the model: the decode step's logits equal a full forward's."""
    from llamaforge.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(dim=256, n_layers=2, n_heads=4, vocab_size=1000, max_seq_len=32)
    model = build_model(cfg).eval()
    tokens = torch.randint(0, 1000, (4, 9))
    with torch.no_grad():
        full = model(tokens)[:, -1]
        cache = model.new_cache(4, 16)
        model(tokens[:, :-1], cache=cache)
        step = model(tokens[:, -1:], cache=cache)[:, -1]
    assert layers.SKINNY_MIN_WEIGHT <= 256 * 256  # so this model's layers take the fast path
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)


def test_standalone_output_only_for_a_single_device_transformer():
    """Eval's scored-rows projection and the chunked loss call ``output`` alone: only where safe."""
    from llamaforge.eval.token_scoring import supports_prefix_cache
    from llamaforge.model import ModelConfig, build_model
    from llamaforge.model.transformer import standalone_output

    model = build_model(ModelConfig(dim=64, n_layers=1, n_heads=1, vocab_size=50, max_seq_len=16))
    assert standalone_output(model) is model.output
    assert standalone_output(torch.compile(model)) is model.output  # the wrapper is looked through
    assert standalone_output(nn.Sequential(model)) is None  # not our Transformer

    class ShardLike(nn.Parameter):  # stands for a DTensor (FSDP2/TP) parameter
        pass

    model.output.weight = ShardLike(model.output.weight.detach().clone())
    assert standalone_output(model) is None
    assert not supports_prefix_cache(model)  # eval then takes the plain full-forward path
