"""ShardWriter deletes only shards it recorded, and never writes through a planted link."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from llamaforge.data import documents
from llamaforge.data.documents import read_documents
from llamaforge.data.shard_writer import JOURNAL_NAME, ShardWriter, remove_token_output
from llamaforge.data.shards import INDEX_NAME, TokenShards
from llamaforge.data.tokenize_folder import tokenize_to_shards
from llamaforge.errors import DataError


def tokenize(out, tokenizer, docs, **kw):
    return tokenize_to_shards(docs, tokenizer, out, shard_tokens=16, progress=False, **kw)


def test_a_users_file_named_like_a_shard_is_refused_and_kept(tmp_path, fake_tokenizer):
    out = tmp_path / "t"
    out.mkdir()
    (out / "shard_00007.bin").write_bytes(b"mine")
    with pytest.raises(DataError, match="shard_00007.bin is named like a token shard.*move it"):
        tokenize(out, fake_tokenizer, ["hello world"] * 20)
    assert (out / "shard_00007.bin").read_bytes() == b"mine"
    assert sorted(p.name for p in out.iterdir()) == ["shard_00007.bin"]


def test_a_foreign_shard_in_a_finished_folder_is_refused_on_redo(tmp_path, fake_tokenizer):
    out = tmp_path / "t"
    first = tokenize(out, fake_tokenizer, ["hello"] * 3, made_from={"inputs": "v1"})
    (out / "shard_00099.bin").write_bytes(b"mine")
    with pytest.raises(DataError, match="shard_00099.bin is named like a token shard"):
        tokenize(out, fake_tokenizer, ["changed"] * 3, made_from={"inputs": "v2"})
    assert (out / "shard_00099.bin").read_bytes() == b"mine"
    assert TokenShards(out).index == first


def test_an_interrupted_runs_shards_are_recorded_and_cleaned(tmp_path, fake_tokenizer):
    out = tmp_path / "t"

    def documents_then_crash():
        yield from ["hello world"] * 20
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize(out, fake_tokenizer, documents_then_crash(), chunk_docs=4)
    left = sorted(p.name for p in out.iterdir())
    assert JOURNAL_NAME in left and "shard_00000.bin" in left and INDEX_NAME not in left
    (out / "notes.txt").write_text("mine")
    index = tokenize(out, fake_tokenizer, ["ok"])
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([INDEX_NAME, "notes.txt", *(s.filename for s in index.shards)])
    assert (out / "notes.txt").read_text() == "mine"


def test_planted_links_at_temp_names_are_not_followed(tmp_path, fake_tokenizer):
    out, victim = tmp_path / "t", tmp_path / "victim"
    out.mkdir()
    victim.write_bytes(b"precious")
    for name in (".shard_00000.bin.tmp", ".index.json.tmp"):
        (out / name).symlink_to(victim)
    with ShardWriter(out, vocab_size=300, eos_id=2, bos_id=1, shard_tokens=4) as writer:
        writer.add_tokens(np.arange(10))
        writer.finish()
    assert victim.read_bytes() == b"precious"
    assert len(TokenShards(out)) == 10 and not (out / INDEX_NAME).is_symlink()


def test_remove_token_output_removes_only_what_the_index_lists(tmp_path, fake_tokenizer):
    out = tmp_path / "t"
    tokenize(out, fake_tokenizer, ["hello world"] * 5)
    (out / "my_shard.bin").write_bytes(b"mine")
    remove_token_output(out)
    assert sorted(p.name for p in out.iterdir()) == ["my_shard.bin"]


def test_a_txt_file_over_the_cap_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "MAX_TXT_BYTES", 10)
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    big.write_text("x" * 11)
    small.write_text("y" * 10)
    with pytest.raises(DataError, match="big.txt is larger than .*split it"):
        list(read_documents(big))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(read_documents([big, small], errors="skip")) == ["y" * 10]
    assert any("big.txt: skipped" in str(w.message) for w in caught)
