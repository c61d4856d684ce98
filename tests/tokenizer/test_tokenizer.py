from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import sentencepiece as spm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamaforge.errors import CheckpointError
from llamaforge.tokenizer import Tokenizer

BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")
# Any Unicode scalar value: everything but surrogates (not encodable as UTF-8).
ANY_CHAR = st.characters(exclude_categories=("Cs",))
# Characters SentencePiece is most likely to mangle, mixed in often.
TRICKY = st.sampled_from([" ", "\n", "\t", "\r", "\x00", "\u2581", "\u00a0", "\ufeff", "7"])
TEXT = st.text(alphabet=st.one_of(ANY_CHAR, TRICKY), max_size=60)
FEW = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def test_special_ids_are_llamas(tokenizer: Tokenizer) -> None:
    assert (tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (0, 1, 2, -1)
    assert tokenizer.vocab_size == 600
    assert tokenizer.id_to_piece(1) == "<s>" and tokenizer.id_to_piece(2) == "</s>"


def test_bos_eos_flags(tokenizer: Tokenizer) -> None:
    plain = tokenizer.encode("the model", bos=False)
    assert tokenizer.encode("the model") == [1, *plain]
    assert tokenizer.encode("the model", bos=True, eos=True) == [1, *plain, 2]
    assert tokenizer.encode("the model", bos=False, eos=True) == [*plain, 2]
    assert 1 not in plain and 2 not in plain
    assert tokenizer.decode([1, *plain, 2]) == "the model"
    assert tokenizer.encode("", bos=True, eos=True) == [1, 2]
    # Special-token *text* is ordinary text, never a control token.
    assert (
        1 not in tokenizer.encode("<s>", bos=False)
        and tokenizer.decode(tokenizer.encode("<s></s>")) == "<s></s>"
    )


def test_numbers_split_into_digits(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("in 2023 it cost 1400000", bos=False)
    digits = [
        tokenizer.id_to_piece(i) for i in ids if any(c.isdigit() for c in tokenizer.id_to_piece(i))
    ]
    assert digits == list("2023") + list("1400000")


@FEW
@given(
    text=st.text(alphabet=st.one_of(st.sampled_from("0123456789"), ANY_CHAR, TRICKY), max_size=40)
)
def test_every_ascii_digit_is_its_own_token(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, bos=False)
    for i in ids:
        piece = tokenizer.id_to_piece(i)
        if not BYTE_PIECE.fullmatch(piece) and any(c in "0123456789" for c in piece):
            assert len(piece) == 1, (text, piece)
    assert sum(tokenizer.id_to_piece(i) in set("0123456789") for i in ids) == sum(
        c in "0123456789" for c in text
    )


@FEW
@given(text=TEXT, bos=st.booleans(), eos=st.booleans())
def test_lossless_round_trip(tokenizer: Tokenizer, text: str, bos: bool, eos: bool) -> None:
    ids = tokenizer.encode(text, bos=bos, eos=eos)
    assert tokenizer.decode(ids) == text
    assert all(0 <= i < tokenizer.vocab_size for i in ids)


@FEW
@given(text=TEXT)
def test_ids_decode_with_plain_sentencepiece(tokenizer: Tokenizer, text: str) -> None:
    """Our ids (even for U+2581) are valid for any SentencePiece/HF decoder, not just ours."""
    raw = spm.SentencePieceProcessor(model_file=str(tokenizer.model_path))
    assert raw.decode(tokenizer.encode(text)) == text
    if "\u2581" not in text:
        assert tokenizer.encode(text) == raw.encode(text, add_bos=True)


def test_unseen_characters_use_byte_fallback(tokenizer: Tokenizer) -> None:
    text = "LLaMA 🦙 说中文 and ﷺ \x07bell"
    ids = tokenizer.encode(text, bos=False)
    assert tokenizer.decode(ids) == text
    assert 0 not in ids  # never <unk>
    byte_pieces = [
        tokenizer.id_to_piece(i) for i in ids if tokenizer.id_to_piece(i).startswith("<0x")
    ]
    assert byte_pieces[:4] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]  # 🦙 in UTF-8


def test_newline_is_llamas_byte_token(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("\n", bos=False)[-1] == tokenizer.piece_to_id("<0x0A>")
    assert tokenizer.decode(tokenizer.encode("a\n\nb")) == "a\n\nb"


def test_space_symbol_round_trips(tokenizer: Tokenizer) -> None:
    for text in ["\u2581", "a\u2581b", " \u2581 x\u2581", "\u2581\u2581", "x \u2581"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode(tokenizer.encode("a\u2581b")) != tokenizer.decode(
        tokenizer.encode("a b")
    )


@pytest.mark.parametrize("num_threads", [0, 1, 2])
def test_encode_batch_equals_encode(
    tokenizer: Tokenizer, corpus: list[str], num_threads: int
) -> None:
    texts = [*corpus[:40], "", " ", "a\u2581b", "🦙 42"]
    for bos, eos in [(True, False), (False, True)]:
        batch = tokenizer.encode_batch(texts, bos=bos, eos=eos, num_threads=num_threads)
        assert batch == [tokenizer.encode(t, bos=bos, eos=eos) for t in texts]
    assert tokenizer.encode_batch([]) == []
    assert tokenizer.decode_batch(batch, num_threads=num_threads) == texts


def test_decode_accepts_arrays_and_rejects_foreign_ids(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("the data")
    assert tokenizer.decode(np.array(ids)) == tokenizer.decode(torch.tensor(ids)) == "the data"
    with pytest.raises(ValueError, match="600"):
        tokenizer.decode([*ids, 600])
    with pytest.raises(ValueError, match="-1"):
        tokenizer.decode([-1])
    with pytest.raises(TypeError):
        tokenizer.encode(b"bytes")  # type: ignore[arg-type]


def test_pickles(tokenizer: Tokenizer) -> None:
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy.model_path == tokenizer.model_path
    assert copy.encode("a\u2581b 12") == tokenizer.encode("a\u2581b 12")


def test_loads_from_checkpoint_folder(tokenizer: Tokenizer, tmp_path) -> None:
    (tmp_path / "tokenizer.model").write_bytes(tokenizer.model_path.read_bytes())
    assert Tokenizer(tmp_path).encode("the city") == tokenizer.encode("the city")


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="nope.model.*does not exist.*train-tokenizer"):
        Tokenizer(tmp_path / "nope.model")
    with pytest.raises(CheckpointError, match="folder without tokenizer.model"):
        Tokenizer(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a model at all\n", bytes(range(256)) * 4])
def test_corrupt_model_is_a_clear_error(tmp_path, content: bytes) -> None:
    path = tmp_path / "broken.model"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.model.*not a SentencePiece model"):
        Tokenizer(path)


def test_vocab_file_instead_of_model_is_rejected(tokenizer: Tokenizer) -> None:
    with pytest.raises(CheckpointError, match="not a SentencePiece model"):
        Tokenizer(tokenizer.model_path.with_suffix(".vocab"))


def test_a_lone_surrogate_is_a_data_error_naming_it(tokenizer):
    """Valid JSON ("\\ud800") or argv/stdin bytes under surrogateescape: no C++ cast error."""
    from llamaforge.errors import DataError

    with pytest.raises(DataError, match=r"'\\ud800' at character 1, a lone surrogate"):
        tokenizer.encode("a\ud800b")
    with pytest.raises(DataError, match=r"text 1 of the batch holds '\\udcff'"):
        tokenizer.encode_batch(["fine", "x\udcff"])
    assert tokenizer.encode("a b") == tokenizer.encode_batch(["a b"])[0]
