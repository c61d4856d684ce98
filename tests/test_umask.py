"""Everything we write gets the user's umask (0755/0644 under 022), not mkdtemp's 0700/0600."""

import os
import stat
from pathlib import Path

import pytest
import torch

from llamaforge.cli import main
from llamaforge.data.ccnet.arpa import train_arpa
from llamaforge.eval.runner import write_results
from llamaforge.formats import save_pretrained
from llamaforge.tokenizer import train_tokenizer
from llamaforge.train.checkpoint import CheckpointManager
from llamaforge.umask import current_umask, make_temp_dir, make_temp_file
from tests.formats.conftest import TINY, random_model


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def _modes(root: Path) -> dict[str, int]:
    """Mode of ``root`` and of everything under it, by relative path."""
    paths = [root, *root.rglob("*")]
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in paths}


def _assert_umask(root: Path, umask: int) -> None:
    modes = _modes(root)
    assert len(modes) > 1 or root.is_file()
    for name, mode in modes.items():
        path = root / name
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == expected, f"{path}: {oct(mode)} != {oct(expected)}"


def test_helpers_follow_the_umask(tmp_path, umask):
    assert current_umask() == umask
    assert stat.S_IMODE(make_temp_dir(tmp_path, "x").stat().st_mode) == 0o777 & ~umask
    fd, path = make_temp_file(tmp_path, "y", ".tmp")
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_checkpoint_save(tmp_path, umask):
    model = random_model()
    optimizer = torch.optim.AdamW(model.parameters())
    path = CheckpointManager(tmp_path / "ckpt").save(
        3, model, optimizer, model_config=TINY.to_dict(), train_config={}, state={}
    )
    assert path.name.startswith("step_")
    _assert_umask(tmp_path / "ckpt", umask)


@pytest.mark.parametrize("to", ["native", "hf", "meta"])
def test_convert(tmp_path, umask, to):
    save_pretrained(random_model(), tmp_path / "src")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--to", to]) == 0
    _assert_umask(tmp_path / "out", umask)


def test_tokenize_output_and_eval_results(tmp_path, umask):
    texts = [f"the cat number {i} sat on the mat." for i in range(200)]
    train_tokenizer(tmp_path / "tok.model", texts=texts, vocab_size=300, progress=False)
    (tmp_path / "docs.txt").write_text("\n".join(texts))
    argv = ["tokenize", str(tmp_path / "docs.txt"), "--tokenizer", str(tmp_path / "tok.model")]
    assert main([*argv, "--out", str(tmp_path / "tokens"), "--no-progress"]) == 0
    _assert_umask(tmp_path / "tokens", umask)
    _assert_umask(tmp_path / "tok.model", umask)
    _assert_umask(write_results({"results": {}}, tmp_path / "res" / "results.json"), umask)
    _assert_umask(train_arpa(texts, 2, tmp_path / "lm.arpa"), umask)
