import pytest
import torch

from llamaforge.errors import ConfigError
from llamaforge.model import PRESETS, ModelConfig, build_model, get_preset

PAPER_PARAMS = {
    "7B": 6_738_415_616,
    "13B": 13_015_864_320,
    "33B": 32_528_943_616,
    "65B": 65_285_660_672,
}
PAPER_SHAPES = {  # dim, heads, layers (Table 2) and the released FFN widths
    "7B": (4096, 32, 32, 11008),
    "13B": (5120, 40, 40, 13824),
    "33B": (6656, 52, 60, 17920),
    "65B": (8192, 64, 80, 22016),
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_presets_have_exact_parameter_counts_on_meta_device(name):
    cfg = get_preset(name)
    model = build_model(cfg, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.num_params() == PAPER_PARAMS[name]
    assert cfg.num_params() == PAPER_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PAPER_SHAPES))
def test_paper_shapes(name):
    cfg = get_preset(name)
    dim, heads, layers, hidden = PAPER_SHAPES[name]
    assert (cfg.dim, cfg.n_heads, cfg.n_layers, cfg.vocab_size) == (dim, heads, layers, 32000)
    assert cfg.ffn_hidden_dim == hidden
    assert cfg.norm_eps == 1e-6 and cfg.rope_theta == 10000.0


@pytest.mark.parametrize(
    ("name", "approx"), [("tiny-1M", 1e6), ("tiny-10M", 1e7), ("tiny-100M", 1e8)]
)
def test_tiny_presets_are_near_their_names(name, approx):
    assert 0.7 * approx < PRESETS[name].num_params() < 1.4 * approx


def test_ffn_hidden_rounds_two_thirds_of_4d_up_to_multiple():
    cfg = ModelConfig(dim=100, n_layers=1, n_heads=5, multiple_of=64)
    assert int(2 * 4 * 100 / 3) == 266
    assert cfg.ffn_hidden_dim == 320


def test_flops_per_token_counts_6n_plus_attention():
    cfg = get_preset("7B")
    n = cfg.num_params(include_embedding=False)
    assert cfg.flops_per_token(2048) == pytest.approx(6 * n + 6 * 32 * 2048 * 4096)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dim": 100, "n_heads": 3}, "divisible"),
        ({"n_layers": 0}, "model.n_layers"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"norm_eps": float("nan")}, "finite"),  # a hostile config.json / params.json
        ({"rope_theta": float("inf")}, "finite"),
        ({"dim": 36, "n_heads": 12}, "even for RoPE"),
    ],
)
def test_invalid_configs_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**fields)


def test_from_dict_rejects_unknown_fields_and_round_trips():
    cfg = get_preset("tiny-1M")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="hidden_size"):
        ModelConfig.from_dict({**cfg.to_dict(), "hidden_size": 3}, source="x.json")
    with pytest.raises(ConfigError, match="unknown model preset"):
        get_preset("7b-typo")


def test_build_model_in_bfloat16():
    model = build_model(get_preset("tiny-1M"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
