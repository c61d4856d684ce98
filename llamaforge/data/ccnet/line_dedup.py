"""CCNet's line-level deduplication within one shard, in bounded memory.

Web pages share boilerplate lines (menus, cookie notices, "All rights
reserved"). CCNet (``cc_net/dedup.py``, the two-pass mode its paper and
``mine.py`` use) removes them in two passes over a shard:

1. **collect**: hash every line of every document; a hash is a *duplicate*
   once it has been added by a second document. A line repeated only inside
   one document is not a duplicate (CCNet adds a document's hashes as one
   batch, looked up before any of them is inserted);
2. **remove**: in each document, drop every line whose hash is a duplicate
   (every copy, the first document's included: boilerplate has no original
   worth keeping), then drop a line whose hash already occurred earlier in the
   *same* document (its first copy stays). A document left with no line is
   dropped.

Hashes are what CCNet computes: the first 8 bytes of the SHA-1 of
:func:`~llamaforge.data.ccnet.normalize.normalize_for_dedup` of the line
(lowercased, digits -> 0, CCNet's punctuation and control characters
deleted, accents kept), read as a little-endian ``uint64`` (CCNet reinterprets
the bytes as native ``uint64``; little-endian on every machine it runs on).
Lines are split on ``\\n`` and kept as they were, not normalised; a blank line
is a line like any other (it hashes the empty string), as in CCNet.

Decision: the scope is one input file (one WET shard). CCNet's ``mine.py``
can pool the hashes of ``hash_in_mem`` shards; one file is its default of 1
and keeps a worker's memory bounded.

Memory is 8 bytes per distinct line of a document: hashes go to numpy
``uint64`` chunks (a 1 GB WET shard with ~10 M lines needs ~80 MB), and the
duplicate set is a sorted array searched with ``np.searchsorted``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from llamaforge.data.ccnet.normalize import normalize_for_dedup


def line_hash(normalized: str) -> int:
    """CCNet's 64-bit key of an already normalised line (first 8 bytes of SHA-1)."""
    return int.from_bytes(hashlib.sha1(normalized.encode("utf-8")).digest()[:8], "little")


def _line_hashes(lines: list[str]) -> np.ndarray:
    digests = b"".join(
        hashlib.sha1(normalize_for_dedup(line).encode("utf-8")).digest()[:8] for line in lines
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


class LineHashCounter:
    """First pass: each document's distinct line hashes; duplicates are those of 2+ documents."""

    def __init__(self, chunk_lines: int = 1 << 16) -> None:
        self._chunks: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self._pending_lines = 0
        self._chunk_lines = chunk_lines

    def add_document(self, text: str) -> None:
        if not text:
            return  # CCNet skips documents without content
        distinct = np.unique(_line_hashes(text.split("\n")))
        self._pending.append(distinct)
        self._pending_lines += distinct.size
        if self._pending_lines >= self._chunk_lines:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.concatenate(self._pending))
            self._pending, self._pending_lines = [], 0

    def duplicates(self) -> np.ndarray:
        """Sorted hashes that occur in more than one of the documents added so far."""
        self._flush()
        if not self._chunks:
            return np.empty(0, dtype=np.uint64)
        hashes = np.sort(np.concatenate(self._chunks))
        repeated = hashes[1:][hashes[1:] == hashes[:-1]]
        return np.unique(repeated)


def remove_duplicate_lines(text: str, duplicates: np.ndarray) -> tuple[str, int]:
    """Second pass: ``text`` without duplicate lines and in-document repeats, and how many went.

    Returns ``("", n)`` when no line is left (the caller drops the document).
    """
    lines = text.split("\n")
    hashes = _line_hashes(lines)
    if duplicates.size:
        positions = np.minimum(np.searchsorted(duplicates, hashes), duplicates.size - 1)
        shared = (duplicates[positions] == hashes).tolist()
    else:
        shared = [False] * len(lines)
    if all(shared):
        return "", len(lines)
    seen: set[int] = set()
    kept = []
    for line, key, gone in zip(lines, hashes.tolist(), shared, strict=True):
        if not gone and key not in seen:
            kept.append(line)
        seen.add(key)
    return "\n".join(kept), len(lines) - len(kept)


def count_duplicates(texts: Iterable[str]) -> np.ndarray:
    """The duplicate-line hashes of a whole shard given as texts (convenience for one pass)."""
    counter = LineHashCounter()
    for text in texts:
        counter.add_document(text)
    return counter.duplicates()
