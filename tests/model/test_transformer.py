import math

import pytest
import torch
import torch.nn.functional as F

from llamaforge.model import ModelConfig, build_model
from llamaforge.model.layers import RMSNorm, apply_rotary, rotary_tables

CFG = ModelConfig(dim=64, n_layers=3, n_heads=4, vocab_size=97, multiple_of=16, max_seq_len=64)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(CFG).eval()


def test_no_biases_and_untied_embeddings(model):
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("bias") for n in names)
    assert model.tok_embeddings.weight.data_ptr() != model.output.weight.data_ptr()
    assert model.layers[0].feed_forward.w1.weight.shape == (CFG.ffn_hidden_dim, CFG.dim)


def test_causality_future_tokens_do_not_change_past_logits(model):
    tokens = torch.randint(0, CFG.vocab_size, (2, 20))
    changed = tokens.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % CFG.vocab_size
    a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


def test_training_forward_never_builds_a_mask(model, monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kw):
        calls.append((attn_mask, is_causal))
        return real(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model(torch.randint(0, CFG.vocab_size, (1, 16)))
    assert len(calls) == CFG.n_layers
    assert all(mask is None and causal for mask, causal in calls)


def test_rmsnorm_statistics_in_float32():
    norm = RMSNorm(8, eps=1e-6)
    x = torch.randn(3, 8) * 50
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected)
    bf = norm(x.bfloat16())
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), expected, atol=2e-2, rtol=2e-2)


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq: int, pk: int) -> float:
        cq, sq = rotary_tables(torch.tensor([[pq]]), 16, 10000.0)
        ck, sk = rotary_tables(torch.tensor([[pk]]), 16, 10000.0)
        return float((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum())

    assert score(5, 2) == pytest.approx(score(40, 37), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    cos, sin = rotary_tables(torch.tensor([[0]]), 16, 10000.0)
    torch.testing.assert_close(apply_rotary(q, cos, sin), q)  # position 0 is the identity


def test_initialisation_std_and_depth_scaling():
    cfg = ModelConfig(dim=512, n_layers=8, n_heads=8, vocab_size=1000, multiple_of=64)
    torch.manual_seed(0)
    model = build_model(cfg)
    layer = model.layers[0]
    assert layer.attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert layer.feed_forward.w1.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.tok_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.02)
    scaled = 0.02 / math.sqrt(2 * cfg.n_layers)
    assert layer.attention.wo.weight.std().item() == pytest.approx(scaled, rel=0.03)
    assert layer.feed_forward.w2.weight.std().item() == pytest.approx(scaled, rel=0.03)
    assert torch.equal(layer.ffn_norm.weight, torch.ones(cfg.dim))
    flat = build_model(ModelConfig(**{**cfg.to_dict(), "depth_scaled_init": False}))
    assert flat.layers[0].attention.wo.weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_meta_model_materialises_with_init_weights():
    model = build_model(CFG, device="meta")
    model.to_empty(device="cpu")
    model.init_weights()
    assert torch.isfinite(model(torch.randint(0, CFG.vocab_size, (1, 8)))).all()


def test_kv_cache_matches_full_forward(model):
    tokens = torch.randint(0, CFG.vocab_size, (2, 24))
    full = model(tokens)
    cache = model.new_cache(batch=2, max_len=32)
    parts = [model(tokens[:, :10], cache=cache)]  # prefill
    parts += [model(tokens[:, i : i + 1], cache=cache) for i in range(10, 16)]  # decode
    parts.append(model(tokens[:, 16:], cache=cache))  # chunked prefill after decode
    assert cache.filled == 24
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sequence_longer_than_max_seq_len_is_refused(model):
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, CFG.max_seq_len + 1, dtype=torch.long))
    cache = model.new_cache(batch=1, max_len=8)
    model(torch.zeros(1, 8, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="cache"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_bf16_autocast_forward_backward(model):
    tokens = torch.randint(0, CFG.vocab_size, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens)
    loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_last_only_projects_just_the_final_position(model):
    tokens = torch.randint(0, CFG.vocab_size, (2, 12))
    last = model(tokens, last_only=True)
    assert last.shape == (2, 1, CFG.vocab_size)
    torch.testing.assert_close(last[:, 0], model(tokens)[:, -1])
