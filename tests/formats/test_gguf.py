"""GGUF export, read back with the ``gguf`` package's own reader (what llama.cpp's tools use)."""

import dataclasses
import sys

import numpy as np
import pytest
import torch

from llamaforge.cli import main
from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats import convert, save_any, save_pretrained
from llamaforge.formats.meta import meta_to_half_split
from tests.formats.conftest import TINY, random_model

gguf = pytest.importorskip("gguf")
spm = pytest.importorskip("sentencepiece")

WIDE = dataclasses.replace(TINY, vocab_size=320)  # room for 256 byte pieces, padded past 300
OURS_TO_GGUF = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
}
LAYER = {
    "attention.wq": "attn_q",
    "attention.wk": "attn_k",
    "attention.wv": "attn_v",
    "attention.wo": "attn_output",
    "feed_forward.w1": "ffn_gate",
    "feed_forward.w3": "ffn_up",
    "feed_forward.w2": "ffn_down",
    "attention_norm": "attn_norm",
    "ffn_norm": "ffn_norm",
}


@pytest.fixture(scope="module")
def byte_spm(tmp_path_factory):
    """A byte-fallback BPE model with a user-defined piece: every GGUF token type but UNUSED."""
    folder = tmp_path_factory.mktemp("spm-bytes")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(f"the quick brown fox {i} <|u|> jumps" for i in range(200)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tok"), vocab_size=300, model_type="bpe",
        byte_fallback=True, user_defined_symbols=["<|u|>"], normalization_rule_name="identity",
        remove_extra_whitespaces=False, pad_id=3, unk_id=0, bos_id=1, eos_id=2, minloglevel=2,
    )  # fmt: skip
    return folder / "tok.model"


def names(n_layers):
    out = dict(OURS_TO_GGUF)
    for i in range(n_layers):
        out.update({f"layers.{i}.{a}.weight": f"blk.{i}.{b}.weight" for a, b in LAYER.items()})
    return out


def value(reader, key):
    return reader.fields[key].contents()


def as_torch(tensor):
    """A reader tensor as torch, in our (rows, cols) order, from its raw bytes."""
    raw = np.ascontiguousarray(tensor.data)
    if tensor.tensor_type == gguf.GGMLQuantizationType.BF16:
        data = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
    else:
        data = torch.from_numpy(raw.copy())
    return data.reshape([int(d) for d in reversed(tensor.shape)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tensors_shapes_values_and_types(tmp_path, byte_spm, dtype):
    model = random_model(WIDE)
    out = save_any(model, tmp_path / "m.gguf", "gguf", tokenizer_path=byte_spm, dtype=dtype)
    assert out == tmp_path / "m.gguf"
    reader = gguf.GGUFReader(out)
    tensors = {t.name: t for t in reader.tensors}
    mapping = names(WIDE.n_layers)
    assert set(tensors) == set(mapping.values())
    expected_type = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]
    for ours, theirs in mapping.items():
        want = model.state_dict()[ours].to(dtype)
        tensor = tensors[theirs]
        assert list(tensor.shape) == list(reversed(want.shape)), theirs  # GGUF: fastest dim first
        is_norm = want.ndim == 1
        assert tensor.tensor_type.name == ("F32" if is_norm else expected_type), theirs
        got = as_torch(tensor)
        if theirs.endswith(("attn_q.weight", "attn_k.weight")):
            assert not torch.equal(got, want)  # really permuted to the interleaved layout
            got = meta_to_half_split(got, WIDE.n_heads)
        assert torch.equal(got.to(dtype), want), theirs
        if is_norm:
            assert got.dtype == torch.float32
    assert value(reader, "general.file_type") == {torch.float32: 0, torch.float16: 1}.get(dtype, 32)


@pytest.mark.filterwarnings("error")  # an identity-normalized tokenizer gets no warning
def test_metadata_keys(tmp_path, byte_spm):
    cfg = dataclasses.replace(WIDE, rope_theta=50000.0, norm_eps=1e-5, name="pico")
    out = save_any(random_model(cfg), tmp_path / "folder", "gguf", tokenizer_path=byte_spm)
    assert out == tmp_path / "folder" / "model.gguf"
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["model.gguf"]
    reader = gguf.GGUFReader(out)
    assert value(reader, "general.architecture") == "llama"
    assert value(reader, "general.name") == "pico"
    expected = {
        "llama.context_length": cfg.max_seq_len,
        "llama.embedding_length": cfg.dim,
        "llama.block_count": cfg.n_layers,
        "llama.feed_forward_length": cfg.ffn_hidden_dim,
        "llama.attention.head_count": cfg.n_heads,
        "llama.attention.head_count_kv": cfg.n_heads,
        "llama.rope.dimension_count": cfg.dim // cfg.n_heads,
        "llama.vocab_size": cfg.vocab_size,
    }
    assert {k: value(reader, k) for k in expected} == expected
    assert value(reader, "llama.rope.freq_base") == pytest.approx(50000.0)
    assert value(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert value(reader, "general.file_type") == 0


def test_tokenizer_metadata_matches_sentencepiece(tmp_path, byte_spm):
    out = save_any(random_model(WIDE), tmp_path / "m.gguf", "gguf", tokenizer_path=byte_spm)
    reader = gguf.GGUFReader(out)
    sp = spm.SentencePieceProcessor(model_file=str(byte_spm))
    n = sp.vocab_size()
    pad = WIDE.vocab_size - n
    tokens = value(reader, "tokenizer.ggml.tokens")
    assert tokens == [sp.id_to_piece(i) for i in range(n)] + [f"[PAD{i}]" for i in range(1, 21)]
    assert len(tokens) == WIDE.vocab_size and pad == 20
    scores = value(reader, "tokenizer.ggml.scores")
    assert scores == pytest.approx([sp.get_score(i) for i in range(n)] + [-1000.0] * pad)

    def kind(i):
        if sp.is_unknown(i):
            return 2
        if sp.is_control(i):
            return 3
        if sp.is_byte(i):
            return 6
        return 4 if sp.id_to_piece(i) == "<|u|>" else 1

    types = value(reader, "tokenizer.ggml.token_type")
    assert types == [kind(i) for i in range(n)] + [5] * pad
    assert {1, 2, 3, 4, 6} <= set(types)
    assert value(reader, "tokenizer.ggml.model") == "llama"
    ids = {k: value(reader, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding")}
    assert ids == {"bos": sp.bos_id(), "eos": sp.eos_id(), "padding": sp.pad_id()}
    assert value(reader, "tokenizer.ggml.unknown_token_id") == sp.unk_id()
    assert value(reader, "tokenizer.ggml.add_bos_token") is True
    assert value(reader, "tokenizer.ggml.add_eos_token") is False
    assert value(reader, "tokenizer.ggml.add_space_prefix") is True
    assert "tokenizer.chat_template" not in reader.fields


def test_no_padding_id_when_the_tokenizer_has_none(tmp_path, tiny_model, spm_model):
    with pytest.warns(UserWarning, match="nmt_nfkc"):  # that model normalizes; llama.cpp won't
        out = save_any(tiny_model, tmp_path / "a.gguf", "gguf", spm_model)
    reader = gguf.GGUFReader(out)
    assert "tokenizer.ggml.padding_token_id" not in reader.fields
    assert value(reader, "tokenizer.ggml.bos_token_id") == 1


def test_chat_template_of_a_native_checkpoint(tmp_path, tiny_model, spm_model):
    from llamaforge.finetune.templates import load_template

    template = load_template("chat")
    src = save_any(tiny_model, tmp_path / "src", "native", spm_model, chat_template=template)
    out = convert(src, tmp_path / "chat.gguf", dst_format="gguf")
    reader = gguf.GGUFReader(out)
    assert value(reader, "tokenizer.chat_template") == template.to_jinja("<s>", "</s>")


def test_cli_convert_to_gguf(tmp_path, tiny_model, spm_model, capsys):
    src = save_pretrained(tiny_model, tmp_path / "native", tokenizer_path=spm_model)
    dst = tmp_path / "out"
    assert main(["convert", str(src), str(dst), "--to", "gguf", "--dtype", "float16"]) == 0
    err = capsys.readouterr().err
    assert "model.gguf" in err and "(gguf)" in err and "no tokenizer.model" not in err
    reader = gguf.GGUFReader(dst / "model.gguf")
    assert value(reader, "general.file_type") == 1


def test_destination_rules_keep_what_is_there(tmp_path, tiny_model, spm_model):
    target = tmp_path / "m.gguf"
    target.write_bytes(b"precious")
    with pytest.raises(CheckpointError, match="--overwrite"):
        save_any(tiny_model, target, "gguf", spm_model)
    assert target.read_bytes() == b"precious"
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        save_any(tiny_model, folder, "gguf", spm_model)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    save_any(tiny_model, folder, "gguf", spm_model, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["model.gguf", "notes.txt"]
    save_any(tiny_model, target, "gguf", spm_model, overwrite=True)
    assert gguf.GGUFReader(target).fields["general.architecture"].contents() == "llama"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "m.gguf"]  # no temporaries
    (tmp_path / "x.gguf").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        save_any(tiny_model, tmp_path / "x.gguf", "gguf", spm_model)


def test_missing_tokenizer_is_refused_before_writing(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="tokenizer"):
        save_any(tiny_model, tmp_path / "m.gguf", "gguf")
    assert list(tmp_path.iterdir()) == []


def test_missing_gguf_package_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install llamaforge\[gguf\]"):
        convert(tmp_path / "never-read", tmp_path / "m.gguf", dst_format="gguf")
    code = main(["convert", str(tmp_path / "never-read"), str(tmp_path / "o"), "--to", "gguf"])
    err = capsys.readouterr().err
    assert code != 0 and "pip install llamaforge[gguf]" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_shards_are_refused(tmp_path, tiny_model, spm_model):
    with pytest.raises(ConfigError, match="single file"):
        save_any(tiny_model, tmp_path / "m.gguf", "gguf", spm_model, shards=2)


def test_tokenizer_larger_than_the_model_is_refused(tmp_path, tiny_model, byte_spm):
    with pytest.raises(CheckpointError, match="300 pieces but the model only 128"):
        save_any(tiny_model, tmp_path / "m.gguf", "gguf", byte_spm)
    assert list(tmp_path.iterdir()) == []
