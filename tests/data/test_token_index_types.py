"""index.json fields: the reader accepts exactly what ShardWriter writes, naming any other field."""

import json

import numpy as np
import pytest

from llamaforge.data.shards import INDEX_NAME, TokenIndex, TokenShards
from llamaforge.errors import DataError


def _edit(folder, change):
    path = folder / INDEX_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return folder


def _set(key, value):
    return lambda data: data.__setitem__(key, value)


def _shard(key, value):
    return lambda data: data["shards"][0].__setitem__(key, value)


def _duplicate(data):
    data["shards"].append(dict(data["shards"][0]))
    data["n_tokens"] += data["shards"][0]["n_tokens"]
    data["n_docs"] += data["shards"][0]["n_docs"]


CASES = [
    (_shard("n_tokens", "20"), r"shards\[0\]\.n_tokens is '20', not a non-negative integer"),
    (_shard("n_tokens", 20.5), r"shards\[0\]\.n_tokens is 20\.5"),
    (_shard("n_tokens", 20.0), r"shards\[0\]\.n_tokens is 20\.0"),
    (_shard("n_tokens", True), r"shards\[0\]\.n_tokens is True"),
    (_shard("n_tokens", -20), r"shards\[0\]\.n_tokens is -20"),
    (_shard("n_tokens", 10**30), r"shards\[0\]\.n_tokens is 10{30}"),
    (_shard("n_docs", 1.5), r"shards\[0\]\.n_docs is 1\.5"),
    (_shard("sha256", [1]), r"shards\[0\]\.sha256 is \[1\], not a sha256"),
    (_shard("extra", 1), r"shards\[0\]: missing fields \[\], unknown fields \['extra'\]"),
    (_set("n_tokens", "50"), r"field n_tokens is '50'"),
    (_set("n_tokens", 49), r"field n_tokens is 49, but its shards add up to 50"),
    (_set("n_docs", None), r"field n_docs is None"),
    (_set("n_empty_skipped", 0.5), r"field n_empty_skipped is 0\.5"),
    (_set("vocab_size", True), r"field vocab_size is True"),
    (_set("vocab_size", 300.0), r"field vocab_size is 300\.0"),
    (_set("eos_id", 300), r"field eos_id is 300, not a token id in \[0, 299\] \(vocab_size 300\)"),
    (_set("eos_id", None), r"field eos_id is None"),
    (_set("bos_id", 10**6), r"field bos_id is 1000000, not a token id in \[0, 299\]"),
    (_set("bos_id", 1.0), r"field bos_id is 1\.0"),
    (_set("tokenizer", ["x"]), r"field tokenizer is a list, not a JSON object"),
    (_set("tokenizer", {"path": 3}), r"field tokenizer\.path is 3, not a string or null"),
    (_set("tokenizer", {"sha256": ["a"]}), r"field tokenizer\.sha256 is \['a'\]"),
    (_set("made_from", "zzz"), r"field made_from is a str, not an object"),
    (_set("shards", {}), r"field shards is a dict, not a list"),
    (_set("surprise", 1), r"unknown fields \['surprise'\]"),
    (lambda data: data.pop("dtype"), r"missing fields \['dtype'\]"),
    (_duplicate, r"shards\[3\]\.filename: shard_00000\.bin is listed twice"),
]


@pytest.mark.parametrize("change, message", CASES, ids=[m.replace("\\", "")[:40] for _, m in CASES])
def test_a_field_the_writer_never_writes_is_named(token_folder, change, message):
    folder = _edit(token_folder(np.arange(50), vocab_size=300, shard_tokens=20), change)
    with pytest.raises(DataError, match=rf"{INDEX_NAME} is corrupt \(.*{message}"):
        TokenIndex.load(folder)
    with pytest.raises(DataError, match=message):  # every reader goes through the same load
        TokenShards(folder)


@pytest.mark.parametrize("version", [True, 1.0, "1", 2, None])
def test_only_format_version_1_as_an_integer_is_read(token_folder, version):
    folder = _edit(token_folder(np.arange(50)), _set("format_version", version))
    with pytest.raises(DataError, match=rf"format_version {version!r} is not 1; re-run"):
        TokenIndex.load(folder)


def test_what_the_writer_writes_still_loads(token_folder):
    folder = token_folder(np.arange(50), vocab_size=300, shard_tokens=20, bos_id=None)
    index = TokenIndex.load(folder)
    assert (index.n_tokens, index.vocab_size, index.bos_id) == (50, 300, None)
    assert [s.n_tokens for s in index.shards] == [20, 20, 10]
    folder = _edit(folder, _set("eos_id", 299))  # the largest id is still an id
    assert TokenIndex.load(folder).eos_id == 299


def test_a_retokenize_over_a_bad_tokenizer_record_says_which_field(tmp_path, fake_tokenizer):
    from llamaforge.data.tokenize_folder import tokenize_to_shards

    out = tmp_path / "t"
    tokenize_to_shards(["hello", "world"], fake_tokenizer, out, progress=False)
    _edit(out, _set("tokenizer", ["x"]))
    with pytest.raises(DataError, match=r"index\.json is corrupt \(field tokenizer is a list"):
        tokenize_to_shards(["hello", "world"], fake_tokenizer, out, progress=False)
