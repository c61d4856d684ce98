"""A real LLaMA-style tokenizer (BPE, split digits, byte fallback) that knows the template words."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaforge.tokenizer import Tokenizer, train_tokenizer

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
