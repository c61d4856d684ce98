"""CCNet's quality signal: perplexity under a Wikipedia n-gram LM, bucketed head/middle/tail.

A document is split into paragraphs (lines); each is normalised
(:func:`~llamaforge.data.ccnet.normalize.normalize_line`), optionally cut
into SentencePiece pieces, and scored by KenLM with ``<s>``/``</s>``. The
document's perplexity is ``10 ** (-sum(log10 p) / n_tokens)`` where each
paragraph contributes its words plus one for ``</s>``, as in CCNet.

Tokenisation: CCNet tokenises with a per-language SentencePiece model
(``<lang>.sp.model``) before querying its ``<lang>.arpa.bin``; pass
``sp_model`` to do the same. Without it the normalised line is split on
whitespace, which is what a model trained with :func:`train_arpa` on
:func:`prepare_line` output expects.

Buckets: CCNet cuts each language at percentiles of the perplexities its
Wikipedia LM gives to that language's CommonCrawl documents ("head" below
the first cutoff, "middle" below the second, "tail" above); use
:func:`perplexity_cutoffs` on a sample of your shards to get them for your
model.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from llamaforge.data.ccnet.normalize import normalize_line
from llamaforge.errors import ConfigError

BUCKETS = ("head", "middle", "tail")


@contextlib.contextmanager
def _quiet_c_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null, for C++ code that writes its progress there.

    KenLM prints a "Loading the LM will be faster if you build a binary file"
    banner and a row of progress stars while reading an ARPA file, straight
    to fd 2, around our own output. Load errors still reach the user: KenLM
    raises them as exceptions, which :class:`PerplexityScorer` turns into one
    line. The redirect is process-wide for the duration of the load.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a detached process): nothing to silence
        yield
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def prepare_line(line: str, sp=None) -> str:
    """A paragraph as the LM sees it: normalised, then SentencePiece pieces if ``sp`` is given."""
    normalized = normalize_line(line)
    if sp is not None and normalized:
        return " ".join(sp.encode(normalized, out_type=str))
    return normalized


class PerplexityScorer:
    """A KenLM model (ARPA or KenLM binary) and optional SentencePiece model, loaded once."""

    def __init__(self, lm_path: str | Path, sp_model: str | Path | None = None) -> None:
        import kenlm

        try:
            with _quiet_c_stderr():
                self.model = kenlm.Model(str(lm_path))
        except (OSError, RuntimeError) as error:
            raise ConfigError(f"cannot load KenLM model {lm_path}: {error}") from error
        self.sp = None
        if sp_model:
            import sentencepiece

            self.sp = sentencepiece.SentencePieceProcessor()
            if not self.sp.Load(str(sp_model)):
                raise ConfigError(f"cannot load SentencePiece model {sp_model}")

    def log10_prob_and_tokens(self, text: str) -> tuple[float, int]:
        """Summed log10 probability of the paragraphs of ``text`` and their token count."""
        total, tokens = 0.0, 0
        for line in text.split("\n"):
            prepared = prepare_line(line, self.sp)
            if not prepared:
                continue
            total += self.model.score(prepared, bos=True, eos=True)
            tokens += len(prepared.split()) + 1  # + </s>
        return total, tokens

    def perplexity(self, text: str) -> float:
        """Document perplexity; ``inf`` for a document without any token."""
        total, tokens = self.log10_prob_and_tokens(text)
        if tokens == 0:
            return float("inf")
        return float(10.0 ** (-total / tokens))


def bucket(perplexity: float, cutoffs: Sequence[float]) -> str:
    """``head`` below ``cutoffs[0]``, ``middle`` below ``cutoffs[1]``, else ``tail``."""
    if perplexity < cutoffs[0]:
        return "head"
    if perplexity < cutoffs[1]:
        return "middle"
    return "tail"


def perplexity_cutoffs(
    perplexities: Iterable[float], head_percentile: float = 33.0, tail_percentile: float = 66.0
) -> tuple[float, float]:
    """Bucket cutoffs from a sample of document perplexities, as CCNet derived its own."""
    values = np.asarray([p for p in perplexities if np.isfinite(p)], dtype=np.float64)
    if values.size == 0:
        raise ConfigError("perplexity_cutoffs needs at least one finite perplexity")
    head, tail = np.percentile(values, [head_percentile, tail_percentile])
    return float(head), float(tail)
