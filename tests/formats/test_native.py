import json

import pytest
import torch
from safetensors.torch import load_file

import llamaforge.formats.native as native
from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats import load_pretrained, read_model_config, save_pretrained
from tests.formats.conftest import random_model


def _edit_config(folder, **model_fields):
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["model"].update(model_fields)
    path.write_text(json.dumps(data))


def test_round_trip_same_logits_and_config(tmp_path, tiny_model, tokens):
    out = save_pretrained(tiny_model, tmp_path / "m", extra_config={"train": {"lr": 3e-4}})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    data = json.loads((out / "config.json").read_text())
    assert data["format"] == "llamaforge" and data["format_version"] == 1
    assert data["train"] == {"lr": 3e-4}
    assert read_model_config(out) == tiny_model.config
    model, tokenizer = load_pretrained(out)
    assert tokenizer is None
    assert all(p.device.type == "cpu" and p.requires_grad for p in model.parameters())
    torch.testing.assert_close(model(tokens), tiny_model(tokens), rtol=0, atol=0)


def test_load_casts_and_ignores_unknown_top_level_keys(tmp_path, tiny_model):
    out = save_pretrained(tiny_model, tmp_path / "m", extra_config={"notes": "hello"})
    model, _ = load_pretrained(out, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    expected = tiny_model.output.weight.detach().to(torch.bfloat16)
    assert torch.equal(model.output.weight, expected)


def test_saves_plain_names_of_a_wrapped_model(tmp_path, tiny_model):
    wrapper = torch.nn.Module()
    wrapper._orig_mod = tiny_model  # what torch.compile's OptimizedModule holds
    weights = native.plain_state_dict(wrapper)
    assert set(weights) == set(tiny_model.state_dict())


def test_reserved_extra_config_key_is_refused(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="format_version"):
        save_pretrained(tiny_model, tmp_path / "m", extra_config={"format_version": 3})
    assert not (tmp_path / "m").exists()


def test_tokenizer_is_copied_and_loaded(tmp_path, tiny_model, spm_model):
    out = save_pretrained(tiny_model, tmp_path / "m", tokenizer_path=spm_model)
    assert (out / "tokenizer.model").read_bytes() == spm_model.read_bytes()
    try:
        from llamaforge.tokenizer import Tokenizer
    except ImportError:
        pytest.skip("llamaforge.tokenizer.Tokenizer is not available yet")
    _, tokenizer = load_pretrained(out)
    assert isinstance(tokenizer, Tokenizer)


def test_missing_tokenizer_file_fails_before_writing(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="nope.model"):
        save_pretrained(tiny_model, tmp_path / "m", tokenizer_path=tmp_path / "nope.model")
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_symlinked_to_a_private_file_is_not_copied_out(tmp_path, tiny_model):
    """A downloaded folder's tokenizer.model pointing at any file of ours: refused, not leaked."""
    from llamaforge.cli import main

    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret")
    secret.chmod(0o600)
    src = save_pretrained(tiny_model, tmp_path / "src")
    (src / "tokenizer.model").symlink_to(secret)
    for fmt in ("native", "meta"):
        assert main(["convert", str(src), str(tmp_path / fmt), "--to", fmt]) == 2
        assert not (tmp_path / fmt).exists()
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    leaked = [p for p in files if b"PRIVATE" in p.read_bytes()]
    assert leaked == [secret]


def test_failed_replace_keeps_the_old_folder(tmp_path, tiny_model, tokens, monkeypatch):
    out = save_pretrained(tiny_model, tmp_path / "m")
    before = tiny_model(tokens)

    def broken_save(tensors, path, metadata=None):
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(native, "save_safetensors", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(random_model(seed=5), out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporaries left behind
    model, _ = load_pretrained(out)
    torch.testing.assert_close(model(tokens), before, rtol=0, atol=0)


def test_replacing_an_existing_model_folder(tmp_path, tiny_model, tokens):
    out = save_pretrained(random_model(seed=3), tmp_path / "m")
    with pytest.raises(CheckpointError, match="--overwrite"):
        save_pretrained(tiny_model, out)  # an existing folder is never replaced unasked
    save_pretrained(tiny_model, out, overwrite=True)
    model, _ = load_pretrained(out)
    torch.testing.assert_close(model(tokens), tiny_model(tokens), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path, tiny_model):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(CheckpointError, match="is not empty"):
        save_pretrained(tiny_model, tmp_path / "home")
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file(tmp_path, tiny_model, name):
    out = save_pretrained(tiny_model, tmp_path / "m")
    (out / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name} is missing"):
        load_pretrained(out)


def test_truncated_safetensors(tmp_path, tiny_model):
    out = save_pretrained(tiny_model, tmp_path / "m")
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_pretrained(out)


def test_wrong_tensor_shape(tmp_path, tiny_model):
    out = save_pretrained(tiny_model, tmp_path / "m")
    _edit_config(out, vocab_size=256)
    with pytest.raises(CheckpointError, match=r"tok_embeddings.weight has shape \(128, 64\)"):
        load_pretrained(out)


@pytest.mark.parametrize(
    ("n_layers", "problem"),
    [
        (3, "says 3 layers but the weights hold 2"),
        (1, "says 1 layers but the weights hold 2"),
        # hostile: refused before a model is built (that would take GBs and minutes)
        (10**7, "says 10000000 layers but the weights hold 2"),
    ],
)
def test_config_does_not_match_weights(tmp_path, tiny_model, n_layers, problem):
    out = save_pretrained(tiny_model, tmp_path / "m")
    _edit_config(out, n_layers=n_layers)
    with pytest.raises(CheckpointError, match=problem) as info:
        load_pretrained(out)
    assert "model.safetensors" in str(info.value)


def test_weights_with_an_extra_tensor(tmp_path, tiny_model):
    out = save_pretrained(tiny_model, tmp_path / "m")
    weights = load_file(out / "model.safetensors")
    weights["layers.0.attention.bias"] = torch.zeros(3)
    native.save_safetensors(weights, out / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected \['layers.0.attention.bias'\]"):
        load_pretrained(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"format_version": 99}, "format_version 99"),
        ({"format": None, "model_type": "llama"}, "Hugging Face"),
        ({"model": {"dim": 64, "wings": 2}}, "wings"),
        ({"model": {"dim": 63}}, "divisible"),
    ],
)
def test_bad_config(tmp_path, tiny_model, edit, message):
    out = save_pretrained(tiny_model, tmp_path / "m")
    path = out / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(CheckpointError, match=message) as info:
        read_model_config(out)
    assert "config.json" in str(info.value)


def test_corrupt_json(tmp_path, tiny_model):
    out = save_pretrained(tiny_model, tmp_path / "m")
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot be read as JSON"):
        load_pretrained(out)


def test_relative_path_with_trailing_slash(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_pretrained(tiny_model, "out/")
    assert read_model_config("out") == tiny_model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


NOT_DENSE = r"norm.weight is a torch\.\w+ strided tensor"
NO_SCALES = r"norm.weight is torch\.float8.*dequantize"  # float8 without its scales


@pytest.mark.parametrize(
    ("dtype", "message"),
    [(torch.int64, NOT_DENSE), (torch.bool, NOT_DENSE), (torch.complex64, NOT_DENSE),
     (torch.float8_e4m3fn, NO_SCALES), (torch.float8_e5m2, NO_SCALES)],
)  # fmt: skip
def test_weights_we_cannot_read_as_they_are_are_one_line(tmp_path, tiny_model, dtype, message):
    out = save_pretrained(tiny_model, tmp_path / "m")
    weights = load_file(out / "model.safetensors")
    weights["norm.weight"] = weights["norm.weight"].to(dtype)
    native.save_safetensors(weights, out / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(out)


@pytest.mark.parametrize("version", [True, -3, 0, "1"])
def test_a_format_version_we_never_write_is_refused(tmp_path, tiny_model, version):
    import json

    out = save_pretrained(tiny_model, tmp_path / "m")
    data = json.loads((out / "config.json").read_text())
    data["format_version"] = version
    (out / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="format_version"):
        load_pretrained(out)
