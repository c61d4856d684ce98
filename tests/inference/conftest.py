"""Tiny model and a tiny SentencePiece BPE tokenizer trained on the fly.

The tokenizer wrapper mirrors ``llamaforge.tokenizer.Tokenizer`` (encode with
bos/eos flags, decode, bos_id, eos_id, vocab_size) so these tests do not
depend on that module; it uses byte fallback so multi-byte characters
outside the vocabulary become several byte pieces, the case streaming must
handle.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import sentencepiece as spm
import torch

from llamaforge.model import ModelConfig, build_model

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "and",
    "ran",
    "far",
    "away",
    "from",
    "home",
    "while",
    "birds",
    "sang",
    "in",
    "trees",
    "under",
    "bright",
    "blue",
    "sky",
    "over",
    "green",
    "hills",
    "near",
    "river",
    "bank",
    "café",
    "naïve",
]


class SentencePieceTokenizer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.bos_id = self.sp.bos_id()
        self.eos_id = self.sp.eos_id()
        self.vocab_size = self.sp.vocab_size()

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        return [self.bos_id] * bos + self.sp.encode(text) + [self.eos_id] * eos

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode(list(ids))


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> SentencePieceTokenizer:
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(400)]
    lines += ["price 12 € or 3 ¥ 漢字"]  # rare characters: byte fallback
    folder = tmp_path_factory.mktemp("spm")
    (folder / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"),
        model_prefix=str(folder / "tok"),
        vocab_size=384,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        character_coverage=0.995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return SentencePieceTokenizer(str(folder / "tok.model"))


@pytest.fixture(scope="session")
def model_config(tokenizer) -> ModelConfig:
    # A larger init_std than training's 0.02 gives peaked, varied logits, so
    # greedy rollouts do not collapse into one repeated token.
    return ModelConfig(
        dim=64,
        n_layers=2,
        n_heads=4,
        vocab_size=tokenizer.vocab_size,
        multiple_of=16,
        max_seq_len=64,
        init_std=0.15,
    )


@pytest.fixture
def model(model_config):
    torch.manual_seed(0)
    return build_model(model_config).eval()
