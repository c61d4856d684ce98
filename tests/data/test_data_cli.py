import argparse

import numpy as np
import pytest

from llamaforge.data import cli
from llamaforge.data.shards import TokenShards
from llamaforge.errors import ConfigError, DataError


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.configure_tokenize(parser)
    return parser.parse_args(argv)


def test_tokenize_command_writes_a_token_folder(tmp_path, fake_tokenizer, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_tokenizer", lambda path: fake_tokenizer)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "first"}\nnot json\n{"text": "second"}\n')
    args = parse(
        [str(corpus), "--tokenizer", "x.model", "--out", str(tmp_path / "t"), "--no-progress"]
    )
    with pytest.raises(DataError, match="a.jsonl:2"):
        args.run(args)
    args = parse(
        [
            str(corpus),
            "--tokenizer",
            "x.model",
            "--out",
            str(tmp_path / "t"),
            "--no-progress",
            "--skip-bad-lines",
            "--shard-tokens",
            "5",
        ]
    )
    with pytest.warns(UserWarning, match="skipped 1 bad lines"):
        assert args.run(args) == 0
    assert "15 tokens (uint16) from 2 documents in 3 shard(s)" in capsys.readouterr().out
    stream = TokenShards(tmp_path / "t").read(0, 15)
    np.testing.assert_array_equal(stream[:7], [1, *(b + 3 for b in b"first"), 2])


def test_missing_tokenizer_is_a_config_error(tmp_path):
    args = parse(
        [str(tmp_path), "--tokenizer", str(tmp_path / "nope.model"), "--out", str(tmp_path / "t")]
    )
    with pytest.raises(ConfigError, match="nope.model does not exist"):
        args.run(args)
