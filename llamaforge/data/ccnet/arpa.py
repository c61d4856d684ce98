"""A small n-gram LM trainer that writes ARPA files KenLM can load.

CCNet filters with KenLM 5-gram models trained (by KenLM's ``lmplz``) on
Wikipedia. The ``kenlm`` Python module can only *query* models and ``lmplz``
is not installed here, so tests, samples and small users need another way to
make a model. Real users pass CCNet's released ``<lang>.arpa.bin`` files.

The estimator is **interpolated Kneser-Ney with one absolute discount per
order** (Chen & Goodman 1998, "interpolated KN"), the smoothing ``lmplz``
uses minus its three-discount refinement. For an n-gram ``h w``:

* counts: raw counts at the highest order and for n-grams starting with
  ``<s>``; continuation counts (how many distinct words precede it) below;
* ``p(w | h) = max(c(h w) - D, 0) / c(h .) + gamma(h) * p(w | h')`` with
  ``gamma(h) = D * |{w : c(h w) > 0}| / c(h .)`` and ``h'`` = ``h`` minus its
  first word; unigrams interpolate with the uniform distribution over the
  vocabulary plus ``<unk>``, so every word has a non-zero probability;
* ``D = n1 / (n1 + 2 n2)`` from that order's counts-of-counts, clipped to
  [0.1, 0.9] so tiny corpora (no count of 2) still leave mass to back off to;
  or a fixed ``discount``.

In ARPA form each seen n-gram stores ``log10 p(w | h)`` and each context its
backoff ``log10 gamma(h)``; KenLM's backoff query then reproduces the
interpolated distribution exactly (tests check a hand-computed score).
Sentences are the non-empty lines of the texts, whitespace-tokenised, with
``<s>``/``</s>`` added the way KenLM's ``score(bos=True, eos=True)`` queries.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from llamaforge.errors import ConfigError
from llamaforge.umask import make_temp_file

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NGram = tuple[str, ...]


def _count_ngrams(texts: Iterable[str], order: int) -> list[Counter]:
    raw: list[Counter] = [Counter() for _ in range(order)]
    for text in texts:
        for line in text.split("\n"):
            tokens = line.split()
            if not tokens:
                continue
            sentence = [BOS, *tokens, EOS]
            for n in range(1, order + 1):
                table = raw[n - 1]
                for start in range(len(sentence) - n + 1):
                    table[tuple(sentence[start : start + n])] += 1
    del raw[0][(BOS,)]  # <s> is never predicted
    return raw


def _adjusted_counts(raw: list[Counter]) -> list[Counter]:
    """Raw counts at the top order and after <s>; continuation counts below."""
    order = len(raw)
    adjusted = [Counter() for _ in range(order)]
    adjusted[order - 1] = raw[order - 1]
    for n in range(order - 1, 0, -1):  # fill order n from the distinct (n+1)-grams
        for longer in raw[n]:
            adjusted[n - 1][longer[1:]] += 1
        for ngram, count in raw[n - 1].items():
            if ngram[0] == BOS:
                adjusted[n - 1][ngram] = count
    return adjusted


def _discount(counts: Counter, fixed: float | None) -> float:
    if fixed is not None:
        return fixed
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    estimate = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    return min(max(estimate, 0.1), 0.9)


def _context_stats(counts: Counter, discount: float) -> dict[NGram, tuple[float, float]]:
    """context -> (total count, gamma)."""
    totals: dict[NGram, int] = defaultdict(int)
    types: dict[NGram, int] = defaultdict(int)
    for ngram, count in counts.items():
        totals[ngram[:-1]] += count
        types[ngram[:-1]] += 1
    return {h: (totals[h], discount * types[h] / totals[h]) for h in totals}


def estimate_kneser_ney(
    texts: Iterable[str], order: int, discount: float | None = None
) -> tuple[list[dict[NGram, float]], list[dict[NGram, float]]]:
    """Interpolated KN probabilities and backoff weights, per order (index 0 = unigrams)."""
    if order < 1:
        raise ConfigError(f"n-gram order must be >= 1, got {order}")
    if discount is not None and not 0.0 < discount < 1.0:
        raise ConfigError(f"discount must be in (0, 1), got {discount}")
    raw = _count_ngrams(texts, order)
    if not raw[0]:
        raise ConfigError("cannot train an n-gram LM on empty text")
    adjusted = _adjusted_counts(raw)
    probs: list[dict[NGram, float]] = [{} for _ in range(order)]
    gammas: list[dict[NGram, float]] = [{} for _ in range(order)]

    unigrams = adjusted[0]
    d1 = _discount(unigrams, discount)
    total = sum(unigrams.values())
    gamma0 = d1 * len(unigrams) / total
    vocab_size = len(unigrams) + (UNK not in unigrams)
    for ngram, count in unigrams.items():
        probs[0][ngram] = (count - d1) / total + gamma0 / vocab_size
    probs[0].setdefault((UNK,), gamma0 / vocab_size)

    for n in range(2, order + 1):
        counts = adjusted[n - 1]
        d = _discount(counts, discount)
        stats = _context_stats(counts, d)
        for context, (_, gamma) in stats.items():
            gammas[n - 2][context] = gamma
        for ngram, count in counts.items():
            context_total, gamma = stats[ngram[:-1]]
            lower = probs[n - 2][ngram[1:]]
            probs[n - 1][ngram] = max(count - d, 0.0) / context_total + gamma * lower
    return probs, gammas


def _fmt(value: float) -> str:
    return f"{value:.7f}"


def train_arpa(
    texts: Iterable[str], order: int, out_path: str | Path, discount: float | None = None
) -> Path:
    """Train an interpolated Kneser-Ney ``order``-gram LM on ``texts``; write it as ARPA.

    ``texts`` must already be prepared the way the model will be queried
    (:func:`llamaforge.data.ccnet.perplexity.prepare_line` for the CCNet
    filter). The file is written atomically; returns its path.
    """
    probs, gammas = estimate_kneser_ney(texts, order, discount)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    unigram_rows = {(BOS,): -99.0} | {g: math.log10(p) for g, p in probs[0].items()}
    fd, tmp = make_temp_file(out.parent, out.name, ".tmp")  # umask, not 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            sizes = [len(unigram_rows)] + [len(p) for p in probs[1:]]
            for n, size in enumerate(sizes, start=1):
                f.write(f"ngram {n}={size}\n")
            for n in range(1, order + 1):
                f.write(f"\n\\{n}-grams:\n")
                rows = (
                    unigram_rows if n == 1 else {g: math.log10(p) for g, p in probs[n - 1].items()}
                )
                backoffs = gammas[n - 1] if n < order else {}
                for ngram in sorted(rows):
                    line = f"{_fmt(rows[ngram])}\t{' '.join(ngram)}"
                    if ngram in backoffs:
                        line += f"\t{_fmt(math.log10(backoffs[ngram]))}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
