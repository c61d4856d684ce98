import json
import subprocess
import sys

import pytest
import torch

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats import from_hf, to_hf
from tests.formats.conftest import TINY

transformers = pytest.importorskip("transformers")


def _hf_model(seed=0, **overrides):
    fields = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=500.0,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**fields, **overrides}))
    with torch.no_grad():  # random norms so swapped tensors show up in the logits
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model.eval()


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(input_ids=tokens).logits


@pytest.mark.parametrize("shards", [1, 3])
def test_export_loads_in_transformers_with_same_logits(tmp_path, tiny_model, tokens, shards):
    out = to_hf(tiny_model, tmp_path / "hf", shards=shards)
    if shards > 1:
        index = json.loads((out / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) == shards
    hf = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        ours = tiny_model(tokens)
    torch.testing.assert_close(_hf_logits(hf, tokens), ours, rtol=0, atol=1e-4)


def test_transformers_model_imports_with_same_logits(tmp_path, tokens):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / "hf", max_shard_size="40KB")  # forces an index + shards
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    model, tokenizer = from_hf(tmp_path / "hf")
    assert tokenizer is None
    assert model.config.multiple_of == 16 and model.config.rope_theta == 500.0
    assert model.config.norm_eps == 1e-5 and model.config.max_seq_len == 64
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, _hf_logits(hf, tokens), rtol=0, atol=1e-4)


def test_tied_embeddings_are_untied_on_import(tmp_path, tokens):
    hf = _hf_model(tie_word_embeddings=True)
    hf.save_pretrained(tmp_path / "hf")
    model, _ = from_hf(tmp_path / "hf")
    assert model.output.weight.data_ptr() != model.tok_embeddings.weight.data_ptr()
    torch.testing.assert_close(model.output.weight, model.tok_embeddings.weight)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), _hf_logits(hf, tokens), rtol=0, atol=1e-4)


def test_round_trip_keeps_our_config(tmp_path, tiny_model):
    model, _ = from_hf(to_hf(tiny_model, tmp_path / "hf", dtype=torch.bfloat16), dtype=None)
    assert model.config == TINY and model.config.name == "tiny"
    assert model.output.weight.dtype == torch.bfloat16
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["dtype"] == "bfloat16"
    expected = tiny_model.layers[1].attention.wk.weight.detach().to(torch.bfloat16)
    assert torch.equal(model.layers[1].attention.wk.weight, expected)


def test_multiple_of_is_inferred_without_our_table(tmp_path, tiny_model):
    out = to_hf(tiny_model, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    del config["llamaforge"]
    (out / "config.json").write_text(json.dumps(config))
    model, _ = from_hf(out)
    assert model.config.ffn_hidden_dim == TINY.ffn_hidden_dim == 176


def test_tokenizer_files_load_in_transformers(tmp_path, tiny_model, spm_model):
    import sentencepiece as spm

    with pytest.warns(UserWarning, match="nmt_nfkc"):  # SentencePiece's default, not LLaMA's
        out = to_hf(tiny_model, tmp_path / "hf", tokenizer_path=spm_model)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "the lazy fox 42 said Alice"
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    assert hf_tok(text)["input_ids"] == [sp.bos_id(), *sp.encode(text)]
    generation = transformers.GenerationConfig.from_pretrained(out)
    assert (generation.bos_token_id, generation.eos_token_id) == (sp.bos_id(), sp.eos_id())
    _, tokenizer = from_hf(out)
    assert tokenizer == out / "tokenizer.model"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_key_value_heads": 2}, "grouped-query"),
        ({"intermediate_size": 200}, "intermediate_size=200"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope scaling 'linear'"),
        ({"model_type": "mistral"}, "model_type is 'mistral'"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
        ({"tie_word_embeddings": 1}, "tie_word_embeddings must be true or false"),
    ],
)
def test_unsupported_configs(tmp_path, tiny_model, overrides, message):
    out = to_hf(tiny_model, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    config.pop("llamaforge")
    (out / "config.json").write_text(json.dumps({**config, **overrides}))
    with pytest.raises(CheckpointError, match=message) as info:
        from_hf(out)
    assert "config.json" in str(info.value)


def test_missing_and_truncated_shards(tmp_path, tiny_model):
    out = to_hf(tiny_model, tmp_path / "hf", shards=2)
    second = out / "model-00002-of-00002.safetensors"
    data = second.read_bytes()
    second.write_bytes(data[:-64])
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors.*truncated"):
        from_hf(out)
    second.unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors is missing"):
        from_hf(out)
    (out / "model.safetensors.index.json").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        from_hf(out)


def test_bad_shard_count(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="shards"):
        to_hf(tiny_model, tmp_path / "hf", shards=0)
    assert not (tmp_path / "hf").exists()


def test_formats_do_not_import_transformers(tmp_path, tiny_model):
    out = to_hf(tiny_model, tmp_path / "hf")
    code = (
        "import sys; from llamaforge.formats import from_hf, to_hf; "
        f"m, _ = from_hf({str(out)!r}); to_hf(m, {str(tmp_path / 'again')!r}); "
        "assert 'transformers' not in sys.modules, 'transformers was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("field", "value"), [("name", [1]), ("name", None), ("depth_scaled_init", "yes")]
)
def test_our_table_fields_of_the_wrong_type_are_refused(tmp_path, tiny_model, field, value):
    out = to_hf(tiny_model, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    config["llamaforge"][field] = value
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"config.json: llamaforge.{field} must be a"):
        from_hf(out)
