import json

import pytest
import torch

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats import from_meta, to_meta
from llamaforge.formats.meta import half_split_to_meta, meta_to_half_split
from tests.formats.conftest import TINY
from tests.formats.meta_reference import merge_shards, meta_logits, split_shards

PARAMS = {"dim": 64, "multiple_of": 16, "n_heads": 4, "n_layers": 2, "norm_eps": 1e-6}


def _load_shards(folder):
    paths = sorted(folder.glob("consolidated.*.pth"))
    return [torch.load(p, weights_only=True) for p in paths]


def _write_meta_folder(folder, shards, params):
    folder.mkdir(parents=True)
    for rank, shard in enumerate(shards):
        torch.save({**shard, "rope.freqs": torch.ones(8)}, folder / f"consolidated.{rank:02d}.pth")
    (folder / "params.json").write_text(json.dumps(params))


def _random_meta_state(seed=0):
    """A checkpoint in Meta's interleaved layout, built without our model or converter."""
    generator = torch.Generator().manual_seed(seed)
    dim, hidden, vocab = 64, 176, 128
    shapes = {
        "tok_embeddings.weight": (vocab, dim),
        "norm.weight": (dim,),
        "output.weight": (vocab, dim),
    }
    for i in range(2):
        for name in ("wq", "wk", "wv", "wo"):
            shapes[f"layers.{i}.attention.{name}.weight"] = (dim, dim)
        shapes[f"layers.{i}.feed_forward.w1.weight"] = (hidden, dim)
        shapes[f"layers.{i}.feed_forward.w2.weight"] = (dim, hidden)
        shapes[f"layers.{i}.feed_forward.w3.weight"] = (hidden, dim)
        shapes[f"layers.{i}.attention_norm.weight"] = (dim,)
        shapes[f"layers.{i}.ffn_norm.weight"] = (dim,)
    return {
        name: (torch.rand(shape, generator=generator) + 0.5)
        if len(shape) == 1
        else torch.randn(shape, generator=generator) * 0.1
        for name, shape in shapes.items()
    }


def test_permutation_is_inverted_and_moves_pairs():
    weight = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(16, 3)  # 2 heads of dim 8
    ours = meta_to_half_split(weight, n_heads=2)
    assert torch.equal(half_split_to_meta(ours, n_heads=2), weight)
    # Meta rows (2i, 2i+1) of a head become our rows (i, i + head_dim/2).
    assert torch.equal(ours[1], weight[2]) and torch.equal(ours[5], weight[3])
    assert torch.equal(ours[8 + 3], weight[8 + 6])


@pytest.mark.parametrize("shards", [1, 2])
def test_export_matches_meta_reference(tmp_path, tiny_model, tokens, shards):
    out = to_meta(tiny_model, tmp_path / "meta", shards=shards)
    params = json.loads((out / "params.json").read_text())
    assert params == {**PARAMS, "vocab_size": 128}
    loaded = _load_shards(out)
    assert len(loaded) == shards
    first = loaded[0]
    assert first["layers.0.attention.wq.weight"].shape == (64 // shards, 64)
    assert first["layers.0.attention.wo.weight"].shape == (64, 64 // shards)
    assert first["layers.1.feed_forward.w2.weight"].shape == (64, 176 // shards)
    assert first["tok_embeddings.weight"].shape == (128, 64 // shards)
    assert first["output.weight"].shape == (128 // shards, 64)
    assert first["norm.weight"].shape == (64,) and "rope.freqs" in first
    with torch.no_grad():
        ours = tiny_model(tokens)
    reference = meta_logits(merge_shards(loaded), params, tokens)
    torch.testing.assert_close(reference, ours, rtol=0, atol=1e-4)


def test_import_matches_meta_reference(tmp_path, tokens, spm_model):
    state = _random_meta_state()
    params = {**PARAMS, "vocab_size": -1}  # Meta's release: "take it from the tokenizer"
    _write_meta_folder(tmp_path / "llama" / "tiny", split_shards(state, 2), params)
    (tmp_path / "llama" / "tokenizer.model").write_bytes(spm_model.read_bytes())
    model, tokenizer = from_meta(tmp_path / "llama" / "tiny")
    assert tokenizer == tmp_path / "llama" / "tokenizer.model"
    assert model.config.vocab_size == 128 and model.config.max_seq_len == 2048
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, meta_logits(state, params, tokens), rtol=0, atol=1e-4)


def test_round_trip_with_four_shards_in_half_precision(tmp_path, tiny_model):
    out = to_meta(tiny_model, tmp_path / "meta", shards=4, dtype=torch.float16)
    model, _ = from_meta(out, dtype=None)
    assert model.config == TINY.__class__(**{**TINY.to_dict(), "max_seq_len": 2048})
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor.to(torch.float16)), name


def test_uneven_split_is_refused(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="n_heads=4"):
        to_meta(tiny_model, tmp_path / "meta", shards=3)
    assert not (tmp_path / "meta").exists()


def test_missing_and_truncated_shards(tmp_path, tiny_model):
    out = to_meta(tiny_model, tmp_path / "meta", shards=2)
    first = out / "consolidated.00.pth"
    first.write_bytes(first.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="consolidated.00.pth: cannot be read"):
        from_meta(out)
    first.unlink()
    with pytest.raises(CheckpointError, match=r"shard\(s\) consolidated.00.pth are missing"):
        from_meta(out)
    (out / "consolidated.99999999.pth").write_bytes(b"")  # a hostile gap: counted, not listed
    with pytest.raises(
        CheckpointError,
        match=r"consolidated.00.pth, consolidated.02.pth, consolidated.03.pth and 99999995 more",
    ) as caught:
        from_meta(out)
    assert len(str(caught.value)) < 300
    (out / "consolidated.99999999.pth").unlink()
    (out / "params.json").unlink()
    with pytest.raises(CheckpointError, match="params.json is missing"):
        from_meta(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"n_kv_heads": 2}, "grouped-query"),
        ({"ffn_dim_multiplier": 1.3}, "ffn_dim_multiplier"),
        ({"vocab_size": 100}, "vocab_size=100 but tok_embeddings has 128"),
        ({"multiple_of": 256}, r"w1.weight has shape \(176, 64\)"),
        ({"n_layers": 3}, "says 3 layers but the weights hold 2"),
    ],
)
def test_params_that_do_not_match_the_weights(tmp_path, edit, message):
    _write_meta_folder(tmp_path / "m", [_random_meta_state()], {**PARAMS, **edit})
    with pytest.raises(CheckpointError, match=message):
        from_meta(tmp_path / "m")


def test_shards_with_inconsistent_shapes(tmp_path):
    shards = split_shards(_random_meta_state(), 2)
    shards[1]["layers.0.attention.wq.weight"] = torch.zeros(32, 60)
    _write_meta_folder(tmp_path / "m", shards, PARAMS)
    with pytest.raises(CheckpointError, match="layers.0.attention.wq.weight has inconsistent"):
        from_meta(tmp_path / "m")


@pytest.mark.parametrize("missing", [[3], [2, 3]])
def test_missing_last_shards_name_the_expected_and_found_files(tmp_path, tiny_model, missing):
    out = to_meta(tiny_model, tmp_path / "m", shards=4)
    for i in missing:
        (out / f"consolidated.{i:02d}.pth").unlink()
    with pytest.raises(CheckpointError) as caught:
        from_meta(out)
    message = str(caught.value)
    assert "expected 4 shards" in message and "consolidated.03.pth" in message
    assert f"missing {[f'consolidated.{i:02d}.pth' for i in missing]}" in message
    assert "found ['consolidated.00.pth'" in message


@pytest.mark.parametrize(
    "payload", [[1, 2], {0: torch.zeros(2)}, {"tok_embeddings.weight": {"nested": 1}}],
    ids=["list", "int-key", "nested"],
)  # fmt: skip
def test_a_shard_that_is_not_plain_weights_is_one_line(tmp_path, tiny_model, payload):
    out = to_meta(tiny_model, tmp_path / "meta")
    torch.save(payload, out / "consolidated.00.pth")
    with pytest.raises(CheckpointError, match="consolidated.00.pth"):
        from_meta(out)


def _no_concatenation(monkeypatch):
    monkeypatch.setattr(torch, "cat", lambda *a, **k: pytest.fail("concatenated before checking"))


def test_expanded_shards_are_refused_before_anything_is_merged(tmp_path, monkeypatch):
    # The red-team's bomb, 4 TB per shard instead of 576 MB: any copy would fail to allocate.
    bomb = {"tok_embeddings.weight": torch.zeros(1).expand(10**6, 10**6)}
    _write_meta_folder(tmp_path / "m", [bomb, bomb], {**PARAMS, "dim": 2 * 10**6})
    assert all(p.stat().st_size < 4096 for p in (tmp_path / "m").glob("*.pth"))
    _no_concatenation(monkeypatch)
    with pytest.raises(CheckpointError, match=r"consolidated.00.pth: tok_embeddings.weight has "):
        from_meta(tmp_path / "m")


@pytest.mark.parametrize(
    ("edit", "w2_columns", "message"),
    [
        ({"n_layers": 3}, 88, "says 3 layers but the weights hold 2"),
        ({"multiple_of": 256}, 88, r"w1.weight has shape \(176, 64\)"),
        ({}, 80, r"layers.1.feed_forward.w2.weight has shape \(64, 160\) but the config"),
    ],
)
def test_merged_shapes_are_checked_against_params_before_concatenating(
    tmp_path, monkeypatch, edit, w2_columns, message
):
    shards = split_shards(_random_meta_state(), 2)
    for shard in shards:  # 80: consistent across the shards, but 160 merged columns, not 176
        name = "layers.1.feed_forward.w2.weight"
        shard[name] = shard[name][:, :w2_columns].clone()
    _write_meta_folder(tmp_path / "m", shards, {**PARAMS, **edit})
    _no_concatenation(monkeypatch)
    with pytest.raises(CheckpointError, match=message):
        from_meta(tmp_path / "m")
