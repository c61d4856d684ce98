"""Strict field checks for a token folder's ``index.json``, run by :meth:`TokenIndex.load`.

Only :class:`~llamaforge.data.shard_writer.ShardWriter` writes ``index.json``, so a
reader accepts what it writes and nothing looser. A hand-edited or damaged
index otherwise fails far from its cause: a ``TypeError`` while summing the
totals, ``slice indices must be integers`` in the middle of an evaluation, an
``AttributeError`` when a re-tokenize reads the tokenizer record. Every reader
(training, ``eval-loss``, ``tokenize``, the data build) loads the index through
``TokenIndex.load``, so checking here gives all of them the same clear error.
Each problem raises :class:`ValueError` naming the field (``shards[3].n_tokens``);
the caller adds the file's path and what to do. Decisions:

* Numbers are JSON integers: ``4000.5``, ``"4000"`` and ``true`` are refused
  (``bool`` is an ``int`` in Python, so the type is compared exactly). Counts
  are >= 0 and below 2**63, since readers put them in int64 arrays.
* ``eos_id`` and ``bos_id`` lie in ``[0, vocab_size)``; ``vocab_size`` is at
  most 2**32, the largest that the widest shard dtype (``uint32``) can hold.
* A shard file may be listed once: a name listed twice would be read twice,
  as if it were more data.
* ``tokenizer`` and ``made_from`` are JSON objects; the tokenizer's ``path``
  and ``sha256`` are strings or null. Other keys inside them are left alone
  (``made_from`` holds whatever its caller describes the input with).
* Unknown top-level or shard fields are refused: this version never writes one.
"""

from __future__ import annotations

import re
from typing import Any

from llamaforge.data.shards import _SHARD_NAME, token_dtype

_REQUIRED = ("format_version", "dtype", "vocab_size", "eos_id", "bos_id", "shards")
_REQUIRED += ("n_tokens", "n_docs")  # totals, for humans: re-checked against the shards
_OPTIONAL = ("tokenizer", "n_empty_skipped", "made_from")
_SHARD_FIELDS = ("filename", "n_tokens", "n_docs", "sha256")
_MAX_COUNT = (1 << 63) - 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _integer(value: Any, field: str, low: int = 0, high: int = _MAX_COUNT, what: str = "") -> int:
    if type(value) is not int or not low <= value <= high:
        if not what:
            what = (
                "a non-negative integer" if high == _MAX_COUNT else f"an integer in [{low}, {high}]"
            )
        raise ValueError(f"field {field} is {value!r}, not {what}")
    return value


def _fields(data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where} is a {type(data).__name__}, not a JSON object")
    missing = [k for k in required if k not in data]
    unknown = sorted(str(k) for k in data if k not in required + optional)
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")


def _check_shards(shards: Any) -> tuple[int, int]:
    """Every shard entry checked; returns the summed ``(n_tokens, n_docs)``."""
    if not isinstance(shards, list):
        raise ValueError(f"field shards is a {type(shards).__name__}, not a list")
    seen: set[str] = set()
    tokens = docs = 0
    for i, shard in enumerate(shards):
        where = f"shards[{i}]"
        _fields(shard, f"field {where}", _SHARD_FIELDS, ())
        name = shard["filename"]
        # A plain name in this folder, never a path elsewhere.
        if not isinstance(name, str) or not _SHARD_NAME.match(name):
            raise ValueError(f"field {where}.filename: shard file name {name!r} is not ours")
        if name in seen:
            raise ValueError(f"field {where}.filename: {name} is listed twice")
        seen.add(name)
        tokens += _integer(shard["n_tokens"], f"{where}.n_tokens")
        docs += _integer(shard["n_docs"], f"{where}.n_docs")
        if not isinstance(shard["sha256"], str) or not _SHA256.match(shard["sha256"]):
            raise ValueError(
                f"field {where}.sha256 is {shard['sha256']!r}, not a sha256 hex digest"
            )
    if tokens > _MAX_COUNT or docs > _MAX_COUNT:
        raise ValueError("the shards' n_tokens or n_docs add up to more than 2**63 - 1")
    return tokens, docs


def check_index_fields(data: Any) -> None:
    """Raise :class:`ValueError` naming the first field of ``data`` the writer would not write.

    ``data`` is the parsed ``index.json``; ``format_version`` is checked by the
    caller first, since an index from another version deserves another message.
    """
    _fields(data, "the index", _REQUIRED, _OPTIONAL)
    vocab = _integer(data["vocab_size"], "vocab_size", 1, 1 << 32, "an integer in [1, 2**32]")
    if data["dtype"] != token_dtype(vocab).name:
        raise ValueError(
            f"field dtype is {data['dtype']!r}, not {token_dtype(vocab).name}, "
            f"what vocab_size {vocab} is written as"
        )
    what = f"a token id in [0, {vocab - 1}] (vocab_size {vocab})"
    _integer(data["eos_id"], "eos_id", 0, vocab - 1, what)
    if data["bos_id"] is not None:
        _integer(data["bos_id"], "bos_id", 0, vocab - 1, what + " or null")
    if "n_empty_skipped" in data:
        _integer(data["n_empty_skipped"], "n_empty_skipped")
    tokenizer = data.get("tokenizer", {})
    if not isinstance(tokenizer, dict):
        raise ValueError(f"field tokenizer is a {type(tokenizer).__name__}, not a JSON object")
    for key in ("path", "sha256"):
        if tokenizer.get(key) is not None and not isinstance(tokenizer[key], str):
            raise ValueError(f"field tokenizer.{key} is {tokenizer[key]!r}, not a string or null")
    if not isinstance(data.get("made_from", {}), dict):
        raise ValueError(f"field made_from is a {type(data['made_from']).__name__}, not an object")
    sums = _check_shards(data["shards"])
    for name, total in zip(("n_tokens", "n_docs"), sums, strict=True):
        if _integer(data[name], name) != total:
            raise ValueError(f"field {name} is {data[name]}, but its shards add up to {total}")
