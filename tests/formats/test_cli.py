import json

import pytest
import torch

from llamaforge.cli import main
from llamaforge.errors import CheckpointError
from llamaforge.formats import detect_format, load_pretrained, save_pretrained


def test_convert_chain_native_hf_meta_native(tmp_path, tiny_model, spm_model, capsys):
    src = save_pretrained(tiny_model, tmp_path / "native", tokenizer_path=spm_model)
    hf, meta, back = tmp_path / "hf", tmp_path / "meta", tmp_path / "back"
    assert main(["convert", str(src), str(hf), "--to", "hf", "--shards", "2"]) == 0
    assert detect_format(hf) == "hf"
    assert main(["convert", str(hf), str(meta), "--to", "meta", "--shards", "2"]) == 0
    assert detect_format(meta) == "meta"
    assert len(list(meta.glob("consolidated.*.pth"))) == 2
    code = main(["convert", str(meta), str(back), "--from", "meta", "--dtype", "bfloat16"])
    assert code == 0
    assert detect_format(back) == "native"
    assert (back / "tokenizer.model").read_bytes() == spm_model.read_bytes()
    assert "(meta)" in capsys.readouterr().err
    model, _ = load_pretrained(back, dtype=None)
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor.to(torch.bfloat16)), name


def test_convert_keeps_source_dtype_by_default(tmp_path, tiny_model):
    src = save_pretrained(tiny_model.to(torch.float16), tmp_path / "native")
    assert main(["convert", str(src), str(tmp_path / "hf"), "--to", "hf"]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["dtype"] == "float16"


def test_missing_source_is_a_clean_error(tmp_path, capsys):
    code = main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_native_output_refuses_shards(tmp_path, tiny_model, capsys):
    src = save_pretrained(tiny_model, tmp_path / "native")
    assert main(["convert", str(src), str(tmp_path / "out"), "--shards", "2"]) == 2
    assert "--shards" in capsys.readouterr().err


def test_unrecognised_folder(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"cannot tell.*weights.npz"):
        detect_format(tmp_path)
