"""Token folders of another tokenizer are refused, naming both, before any work starts."""

import dataclasses

import pytest

from llamaforge.cli import main
from llamaforge.data.token_check import check_tokens_match
from llamaforge.data.tokenize_folder import tokenize_to_shards
from llamaforge.errors import DataError
from llamaforge.formats import save_pretrained
from llamaforge.model import ModelConfig, build_model
from llamaforge.tokenizer import train_tokenizer
from tests.train.test_trainer import write_config

VOCAB = 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokcheck")
    prose = [f"the cat number {i} sat on the mat near the river." for i in range(300)]
    code = [f"def f{i}(x):\n    return x + {i}  # add" for i in range(300)]
    mine = train_tokenizer(root / "mine.model", texts=prose, vocab_size=VOCAB, progress=False)
    other = train_tokenizer(root / "other.model", texts=code, vocab_size=VOCAB, progress=False)
    assert mine.vocab_size == other.vocab_size == VOCAB  # only the checksum tells them apart
    tokenize_to_shards(prose * 3, mine, root / "tokens", progress=False)
    config = ModelConfig(
        dim=32, n_layers=2, n_heads=4, vocab_size=VOCAB, multiple_of=16, max_seq_len=32
    )
    return root, mine, other, config


def test_matching_tokenizer_and_model_pass(setup):
    root, mine, _, config = setup
    index = check_tokens_match(root / "tokens", mine, config, root / "mine.model", None)
    assert index.vocab_size == VOCAB


def test_another_tokenizer_is_refused_naming_both(setup):
    root, _, other, _ = setup
    for against in (other, root / "other.model"):
        with pytest.raises(DataError) as info:
            check_tokens_match(root / "tokens", against)
        message = str(info.value)
        assert "mine.model" in message and "other.model" in message and "sha256" in message


def test_another_vocabulary_is_refused(setup, tmp_path):
    root, mine, _, config = setup
    with pytest.raises(DataError, match=r"vocab_size 300, but .* has vocab_size 256"):
        check_tokens_match(root / "tokens", dataclasses.replace(config, vocab_size=256))
    # A model whose embedding is padded past the tokenizer's vocabulary reads the ids fine.
    check_tokens_match(root / "tokens", dataclasses.replace(config, vocab_size=512))
    small = train_tokenizer(
        tmp_path / "small.model", texts=[f"the cat {i}" for i in range(50)], vocab_size=280,
        progress=False,
    )  # fmt: skip
    with pytest.raises(DataError, match=r"small.model has \(280"):
        check_tokens_match(root / "tokens", small)


def test_eval_loss_refuses_a_foreign_token_folder(setup, tmp_path, capsys):
    root, _, _, config = setup
    folder = save_pretrained(
        build_model(config), tmp_path / "m", tokenizer_path=root / "other.model"
    )
    assert main(["eval-loss", str(folder), str(root / "tokens"), "--seq-len", "16"]) == 2
    captured = capsys.readouterr()
    assert "loss" not in captured.out
    assert str(folder / "tokenizer.model") in captured.err and "mine.model" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_train_refuses_before_building_the_model(setup, tmp_path, capsys, monkeypatch):
    root, _, _, _ = setup

    def no_trainer(*args, **kwargs):
        raise AssertionError("the Trainer was built")

    monkeypatch.setattr("llamaforge.train.trainer.Trainer", no_trainer)
    config = write_config(
        tmp_path / "run.toml", root / "tokens", tmp_path / "run",
        data={"tokenizer": str(root / "other.model")},
    )  # fmt: skip
    assert main(["train", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "other.model" in err and "mine.model" in err
    assert not (tmp_path / "run").exists()
    wrong_vocab = write_config(
        tmp_path / "v.toml", root / "tokens", tmp_path / "run", model={"vocab_size": 256}
    )
    assert main(["train", str(wrong_vocab), "--quiet"]) == 2
    assert "vocab_size 256" in capsys.readouterr().err
