"""A tiny SentencePiece tokenizer and model for the finetuning tests (trained offline)."""

from __future__ import annotations

import random

import pytest

from llamaforge.tokenizer import Tokenizer
from llamaforge.tokenizer.trainer import train_tokenizer

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
    "give",
    "tips",
    "write",
    "code",
    "reverse",
    "string",
]


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(15)) for _ in range(300)]
    texts += ["### Instruction:\n### Input:\n### Response:\n<|user|>\n<|assistant|>\n" * 5]
    out = tmp_path_factory.mktemp("ft-tokenizer") / "tokenizer.model"
    return train_tokenizer(out, texts=texts, vocab_size=300, progress=False, num_threads=1)
