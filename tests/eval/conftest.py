"""Fixtures shared by the evaluation tests."""

import pytest


@pytest.fixture(scope="session")
def real_tokenizer(tmp_path_factory):
    """A small real SentencePiece model, so request splitting meets real merges."""
    from llamaforge.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("spm")
    lines = [f"the answer to question {i} is the {i * 7} cats on a mat" for i in range(300)]
    return train_tokenizer(
        folder / "tok.model", texts=lines, vocab_size=320, progress=False, num_threads=1
    )
