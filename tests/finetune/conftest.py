"""Tiny SentencePiece tokenizers for the finetuning tests (trained offline, in under a second)."""

from __future__ import annotations

import random
from pathlib import Path

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


TEXTS = [
    f"### Instruction:\nName {i} animals that live near the river.\n\n### Response:\n"
    f"The dog, the cat and {i} birds sat on the green hills while the sun was bright."
    for i in range(120)
] + [
    f"<|system|>\nYou are helpful.\n<|user|>\nWhat is {i} plus {i}?\n<|assistant|>\n"
    f"It is {2 * i}. Below is an instruction that describes a task, paired with an input."
    for i in range(120)
]


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory) -> Tokenizer:
    """Vocabulary 400, byte fallback; trained in well under a second."""
    path: Path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    return train_tokenizer(path, texts=TEXTS, vocab_size=400, progress=False, num_threads=1)
