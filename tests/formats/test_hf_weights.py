import json

import pytest
import torch
from safetensors.torch import load_file

from llamaforge.errors import CheckpointError
from llamaforge.formats import from_hf, huggingface, to_hf
from llamaforge.formats.hf_weights import hf_names, our_name

INDEX = "model.safetensors.index.json"


def test_our_name_inverts_hf_names_and_passes_unknown_names_through():
    for ours, theirs in hf_names(3).items():
        assert our_name(theirs) == ours
    assert (
        our_name("model.layers.123456.mlp.up_proj.weight") == "layers.123456.feed_forward.w3.weight"
    )
    for unknown in (
        "model.layers.01.self_attn.q_proj.weight",  # not how hf_names spells layer 1
        "model.layers.0.self_attn.q_proj.bias",
        "model.layers.0.self_attn.rotary_emb.weight",
        "lm_head.bias",
    ):
        assert our_name(unknown) == unknown


def test_a_billion_layers_config_is_refused_by_the_weights_layer_count(
    tmp_path, tiny_model, monkeypatch
):
    out = to_hf(tiny_model, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 10**9}))
    # A table of the config's 10**9 layers' names is what raised MemoryError.
    monkeypatch.setattr(huggingface, "hf_names", lambda n: pytest.fail(f"hf_names({n})"))
    with pytest.raises(CheckpointError, match="says 1000000000 layers but the weights hold 2"):
        from_hf(out)


def test_a_bin_of_expanded_tensors_is_refused(tmp_path, tiny_model):
    out = to_hf(tiny_model, tmp_path / "hf")
    weights = load_file(out / "model.safetensors")
    (out / "model.safetensors").unlink()
    bomb = {name: torch.zeros(1).expand(*t.shape) for name, t in weights.items()}
    torch.save(bomb, out / "pytorch_model.bin")
    assert (out / "pytorch_model.bin").stat().st_size < 16_384  # the model is 468 KB
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: \S+ has shape .* strides"):
        from_hf(out)


@pytest.mark.parametrize("bad", ["", "..", "sub/model.safetensors"])
def test_index_entries_that_are_not_file_names_are_named(tmp_path, tiny_model, bad):
    out = to_hf(tiny_model, tmp_path / "hf", shards=2)
    index = json.loads((out / INDEX).read_text())
    index["weight_map"]["lm_head.weight"] = bad
    (out / INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"{INDEX} lists {bad!r} in 'weight_map'"):
        from_hf(out)
