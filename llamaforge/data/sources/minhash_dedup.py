"""Near-duplicate detection with MinHash + LSH (datasketch), as used for book-level dedup.

A text becomes the set of its word n-grams ("shingles", lower-cased ``\\w+`` words, so
re-wrapping, punctuation and case do not matter); two texts' MinHash signatures estimate the
Jaccard similarity of those sets. LSH only proposes candidates cheaply, with misses and false
alarms on both sides of the threshold, so every candidate is verified against the MinHash
Jaccard estimate before a text is called a duplicate. The first text seen wins: callers feed
texts in a fixed order (sorted input order) so the decision is deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of ``text`` (a text shorter than ``n`` words is one shingle)."""
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    # zip of n shifted views, stopping at the shortest: no list slice per shingle.
    grams = zip(*(words[i:] for i in range(n)), strict=False)
    return {" ".join(gram).encode("utf-8") for gram in grams}


@dataclass
class Duplicate:
    """A text found to be a near-duplicate of one already kept."""

    key: str
    duplicate_of: str
    jaccard: float


class NearDuplicateIndex:
    """Keeps the first of every group of texts whose estimated Jaccard exceeds ``threshold``."""

    def __init__(self, threshold: float, num_perm: int = 128, shingle_words: int = 5) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_words = shingle_words
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._kept: dict[str, MinHash] = {}
        self._order: dict[str, int] = {}
        # Permutations depend only on (num_perm, seed): compute them once, share them.
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme

    def signature(self, text: str) -> MinHash:
        minhash = MinHash(
            num_perm=self.num_perm, seed=1, permutations=self._permutations, scheme=self._scheme
        )
        minhash.update_batch(list(shingles(text, self.shingle_words)))
        return minhash

    def check_and_add(self, key: str, text: str) -> Duplicate | None:
        """The kept text that ``text`` duplicates, or None (and ``text`` is kept under ``key``)."""
        if key in self._kept:
            raise ValueError(f"duplicate key {key!r}: keys must be unique")
        minhash = self.signature(text)
        best: Duplicate | None = None
        for candidate in sorted(self._lsh.query(minhash), key=self._order.__getitem__):
            jaccard = minhash.jaccard(self._kept[candidate])
            if jaccard > self.threshold and (best is None or jaccard > best.jaccard):
                best = Duplicate(key=key, duplicate_of=candidate, jaccard=jaccard)
        if best is not None:
            return best
        self._lsh.insert(key, minhash)
        self._kept[key] = minhash
        self._order[key] = len(self._order)
        return None
