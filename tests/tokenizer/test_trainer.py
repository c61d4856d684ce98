from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamaforge.cli import main
from llamaforge.errors import ConfigError, DataError
from llamaforge.tokenizer import Tokenizer, train_tokenizer


def write_inputs(tmp_path: Path, corpus: list[str]) -> list[Path]:
    half = len(corpus) // 2
    txt = tmp_path / "prose.txt"
    txt.write_text("\n".join(corpus[:half]), encoding="utf-8")
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": d}) + "\n" for d in corpus[half:]), encoding="utf-8"
    )
    return [txt, jsonl]


def test_train_from_txt_and_jsonl_files(tmp_path: Path, corpus: list[str]) -> None:
    files = write_inputs(tmp_path, corpus)
    out = tmp_path / "tok" / "tokenizer.model"  # parent folder is created
    tok = train_tokenizer(out, files=files, vocab_size=500, progress=False)
    assert isinstance(tok, Tokenizer) and tok.model_path == out and tok.vocab_size == 500
    vocab = out.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 500 and vocab[1].startswith("<s>\t")
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokenizer.model", "tokenizer.vocab"]
    # The .jsonl documents were read as text, not as JSON lines: no learned piece holds '{"text'.
    assert not any('"text' in tok.id_to_piece(i) for i in range(tok.vocab_size))
    assert tok.decode(tok.encode(corpus[-1])) == corpus[-1]


def test_files_and_an_iterator_give_the_same_tokenizer(tmp_path: Path, corpus: list[str]) -> None:
    from_files = train_tokenizer(
        tmp_path / "a.model",
        files=write_inputs(tmp_path, corpus),
        vocab_size=400,
        progress=False,
        num_threads=1,
    )
    generator = (doc for doc in corpus)  # unsized, streamed
    from_iter = train_tokenizer(
        tmp_path / "b.model", texts=generator, vocab_size=400, progress=False, num_threads=1
    )
    pieces = [from_iter.id_to_piece(i) for i in range(400)]
    assert pieces == [from_files.id_to_piece(i) for i in range(400)]
    assert len(set(pieces)) == 400


def test_learned_pieces_keep_whitespace_and_digits_apart(tokenizer: Tokenizer) -> None:
    pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    assert all(
        p in "0123456789" for p in pieces if any(c.isdigit() for c in p) and not p.startswith("<0x")
    )
    assert all(p in pieces for p in "0123456789")  # required_chars
    assert "▁▁▁▁" in pieces  # whitespace-only pieces: code indentation
    assert not any("\n" in p for p in pieces)  # trained line by line, as LLaMA


def test_training_is_quick_with_a_small_vocab(tmp_path: Path, corpus: list[str]) -> None:
    import time

    start = time.perf_counter()
    train_tokenizer(
        tmp_path / "t.model",
        texts=corpus * 3,
        vocab_size=2000,
        hard_vocab_limit=False,
        progress=False,
    )
    assert time.perf_counter() - start < 30


def test_vocab_too_large_for_corpus(tmp_path: Path, corpus: list[str]) -> None:
    out = tmp_path / "t.model"
    with pytest.raises(
        ConfigError, match=r"vocab_size=50000 is too large.*<= \d+.*hard_vocab_limit"
    ):
        train_tokenizer(out, texts=corpus[:20], vocab_size=50000, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    small = train_tokenizer(
        out, texts=corpus[:20], vocab_size=50000, hard_vocab_limit=False, progress=False
    )
    assert 259 < small.vocab_size < 50000
    assert small.decode(small.encode(corpus[0])) == corpus[0]


def test_vocab_too_small(tmp_path: Path, corpus: list[str]) -> None:
    with pytest.raises(ConfigError, match="vocab_size=100 is below the .* pieces"):
        train_tokenizer(tmp_path / "t.model", texts=corpus, vocab_size=100, progress=False)


def test_failed_training_keeps_the_previous_tokenizer(tmp_path: Path, tokenizer: Tokenizer) -> None:
    out = tmp_path / "tokenizer.model"
    out.write_bytes(tokenizer.model_path.read_bytes())
    with pytest.raises(ConfigError):
        train_tokenizer(out, texts=["tiny text"], vocab_size=5000, progress=False)
    assert out.read_bytes() == tokenizer.model_path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.model"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ConfigError, "files=.*texts="),
        ({"texts": ["a"], "vocab_size": 0}, ConfigError, "vocab_size must be"),
        ({"texts": "one string"}, ConfigError, "single str"),
        ({"texts": ["a"], "character_coverage": 1.5}, ConfigError, "character_coverage"),
        ({"files": ["missing.txt"]}, DataError, "missing.txt does not exist"),
        ({"texts": ["", "\n\n"]}, DataError, "no text to train"),
        ({"texts": ["ok", 3]}, DataError, "item 1 is a int"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        train_tokenizer(
            tmp_path / "t.model", progress=False, vocab_size=kwargs.pop("vocab_size", 300), **kwargs
        )


def test_output_must_be_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"must end in \.model"):
        train_tokenizer(tmp_path / "tokenizer", texts=["a b c"], progress=False)


def test_bad_jsonl_line_is_reported_with_its_location(tmp_path: Path, corpus: list[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": corpus[0]}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:2"):
        train_tokenizer(tmp_path / "t.model", files=[bad], vocab_size=300, progress=False)
    assert not (tmp_path / "t.model").exists()


def test_cli_train_tokenizer(tmp_path: Path, corpus: list[str], capsys) -> None:
    files = write_inputs(tmp_path, corpus)
    out = tmp_path / "cli.model"
    argv = [
        "train-tokenizer",
        "--input",
        *map(str, files),
        "--output",
        str(out),
        "--vocab-size",
        "450",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert Tokenizer(out).vocab_size == 450
    assert "vocab_size 450" in capsys.readouterr().out
    assert main([*argv[:-3], "--vocab-size", "90000", "--no-progress"]) == 2
    assert "--vocab-size <=" in capsys.readouterr().err
