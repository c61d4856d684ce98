import pytest
import torch

from llamaforge.errors import ConfigError
from llamaforge.inference import SamplingConfig, sample_next
from llamaforge.inference.sampling import make_generator


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"max_new_tokens": -1},
        {"stop": ("",)},
        {"seed": "1"},
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(kwargs):
    with pytest.raises(ConfigError, match=f"sampling.{next(iter(kwargs))}"):
        SamplingConfig(**kwargs)


def test_single_stop_string_is_not_split_into_characters():
    assert SamplingConfig(stop="\n\n").stop == ("\n\n",)
    assert SamplingConfig(stop=["a", "b"]).stop == ("a", "b")


def test_greedy_is_argmax_with_lowest_id_on_ties():
    logits = torch.tensor([[0.0, 3.0, 3.0, 1.0], [5.0, -1.0, 2.0, 5.0]])
    assert sample_next(logits, SamplingConfig()).tolist() == [1, 0]


def _draws(logits: torch.Tensor, cfg: SamplingConfig, n: int = 4000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return sample_next(logits.expand(n, -1), cfg, generator)


def test_temperature_sampling_follows_the_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    for temperature in (0.5, 2.0):
        draws = _draws(logits, SamplingConfig(temperature=temperature))
        freq = torch.bincount(draws, minlength=4).float() / len(draws)
        expected = torch.softmax(logits[0] / temperature, dim=-1)
        torch.testing.assert_close(freq, expected, atol=0.03, rtol=0)


def test_top_k_keeps_only_the_k_likeliest():
    torch.manual_seed(0)
    logits = torch.randn(1, 50)
    draws = _draws(logits, SamplingConfig(temperature=5.0, top_k=3))
    allowed = set(logits[0].topk(3).indices.tolist())
    assert set(draws.tolist()) == allowed
    assert _draws(logits, SamplingConfig(temperature=5.0, top_k=1)).eq(logits.argmax()).all()


def test_top_p_keeps_the_smallest_nucleus_and_renormalises():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    draws = _draws(logits, SamplingConfig(temperature=1.0, top_p=0.7), n=8000)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.0, 0.5, 0.0, 0.3]) / 0.8, atol=0.03, rtol=0)
    draws = _draws(logits, SamplingConfig(temperature=1.0, top_p=0.85))
    assert set(draws.tolist()) == {1, 2, 3}
    assert _draws(logits, SamplingConfig(temperature=1.0, top_p=1e-6)).eq(1).all()


def test_seeded_generator_makes_sampling_reproducible():
    logits = torch.randn(8, 100)
    cfg = SamplingConfig(temperature=1.0, top_p=0.9, seed=7)
    first = sample_next(logits, cfg, make_generator(cfg, logits.device))
    again = sample_next(logits, cfg, make_generator(cfg, logits.device))
    other_cfg = SamplingConfig(temperature=1.0, top_p=0.9, seed=8)
    other = [sample_next(logits, other_cfg, make_generator(other_cfg, logits.device))]
    assert torch.equal(first, again)
    assert not torch.equal(first, other[0])
    assert make_generator(SamplingConfig(seed=None, temperature=1.0), logits.device) is None


@pytest.mark.parametrize("temperature", [1e-45, 1e-300, 5e-324, 1e-7])
@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (3, 1.0), (0, 0.9), (3, 0.5)])
def test_vanishing_temperature_approaches_greedy_instead_of_nan(temperature, top_k, top_p):
    """logits / 1e-45 is inf in float32; the draw must still be the arg-max (or a tie of it)."""
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.9, 800.0, 0.0], [3.0, -50.0, 3.0, 2.9, 0.0, 1.0]])
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, seed=0)
    draws = [sample_next(logits, cfg, make_generator(cfg, logits.device)) for _ in range(20)]
    draws += [
        sample_next(logits.bfloat16(), cfg, torch.Generator().manual_seed(i)) for i in range(20)
    ]
    assert all(d[0] == 4 for d in draws)
    tied = {int(d[1]) for d in draws}  # ids 0 and 2 share the best logit
    assert tied <= {0, 2} and (len(tied) == 2 or top_p <= 0.5)  # top_p 0.5 keeps one of them
