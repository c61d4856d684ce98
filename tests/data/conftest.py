from pathlib import Path

import numpy as np
import pytest

from llamaforge.data.shard_writer import ShardWriter


class FakeTokenizer:
    """UTF-8 bytes shifted by 3 (0 = pad, 1 = BOS, 2 = EOS): exact and dependency-free."""

    bos_id, eos_id, vocab_size = 1, 2, 259

    def __init__(self) -> None:
        self.calls = 0

    def encode_batch(self, texts, bos=True, eos=False, num_threads=0):
        self.calls += 1
        out = []
        for text in texts:
            ids = [b + 3 for b in text.encode("utf-8")]
            out.append([self.bos_id] * bos + ids + [self.eos_id] * eos)
        return out

    def decode(self, ids) -> str:
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8")


@pytest.fixture
def fake_tokenizer() -> FakeTokenizer:
    return FakeTokenizer()


@pytest.fixture
def token_folder(tmp_path):
    """Write a raw token stream as a finished token folder (no tokenizer needed)."""
    counter = iter(range(1000))

    def make(tokens, vocab_size=65536, shard_tokens=1000, eos_id=2, bos_id=1) -> Path:
        out = tmp_path / f"tokens{next(counter)}"
        with ShardWriter(
            out, vocab_size=vocab_size, eos_id=eos_id, bos_id=bos_id, shard_tokens=shard_tokens
        ) as writer:
            writer.add_tokens(np.asarray(tokens, dtype=np.int64))
            writer.finish()
        return out

    return make
