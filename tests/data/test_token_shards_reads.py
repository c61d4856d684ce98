"""TokenShards reads: out-of-vocabulary ids and symlinked shards are refused, naming the file."""

import numpy as np
import pytest

from llamaforge.data.loader import TokenLoader, sequential_batches
from llamaforge.data.shards import TokenShards
from llamaforge.errors import DataError


def _poke(path, token, value):
    """Overwrite one uint16 token in place: same size, so only the ids can tell."""
    data = bytearray(path.read_bytes())
    data[2 * token : 2 * token + 2] = int(value).to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_an_id_outside_the_vocabulary_names_shard_and_position(token_folder):
    folder = token_folder(np.arange(100) % 512, vocab_size=512, shard_tokens=40)
    _poke(folder / "shard_00001.bin", 7, 65000)
    shards = TokenShards(folder)
    assert shards.read(0, 47).max() < 512  # up to the bad token: fine
    message = (
        r"shard_00001\.bin holds token id 65000 at token 7 \(byte 14\), outside vocab_size 512"
    )
    with pytest.raises(DataError, match=message + r".*re-run tokenization"):
        shards.read(30, 20)  # spans shards 0 and 1
    with pytest.raises(DataError, match=message):
        list(sequential_batches(folder, 9, 2))  # eval-loss's reader


def test_the_training_loader_refuses_the_bad_id_before_it_becomes_a_tensor(token_folder):
    folder = token_folder(np.arange(400) % 512, vocab_size=512, shard_tokens=100)
    _poke(folder / "shard_00002.bin", 50, 512)  # the first id past the vocabulary
    loader = TokenLoader(folder, 16, 4, val_fraction=0)
    with pytest.raises(DataError, match=r"shard_00002\.bin holds token id 512 at token 50"):
        for _ in range(10):  # 10 batches of 4 cover all 24 windows
            loader.next_batch()


def test_a_full_uint16_vocabulary_needs_no_check(token_folder):
    folder = token_folder(np.arange(50), vocab_size=65536)
    _poke(folder / "shard_00000.bin", 3, 65535)
    assert TokenShards(folder).read(0, 50)[3] == 65535  # a valid id of that vocabulary


def test_a_symlinked_shard_is_refused(token_folder, tmp_path):
    folder = token_folder(np.arange(50), shard_tokens=20)
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes((folder / "shard_00001.bin").read_bytes())  # right size, even content
    (folder / "shard_00001.bin").unlink()
    (folder / "shard_00001.bin").symlink_to(elsewhere)
    with pytest.raises(DataError, match=r"shard_00001\.bin is a symbolic link.*plain files"):
        TokenShards(folder)


def test_a_shard_swapped_for_a_link_after_opening_is_not_followed(token_folder, tmp_path):
    folder = token_folder(np.arange(50), shard_tokens=20)
    shards = TokenShards(folder)
    victim = folder / "shard_00001.bin"
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(elsewhere)
    with pytest.raises(DataError, match=r"shard_00001\.bin cannot be read .*re-run tokenization"):
        shards.read(20, 5)
