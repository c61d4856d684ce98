"""CCNet's quality signal: perplexity under a Wikipedia n-gram LM, bucketed head/middle/tail.

Scoring follows CCNet's ``mine.py`` pipeline (``MultiSentencePiece`` with
``normalize=True``, then ``DocLM`` with ``normalize=False``):

1. the **whole document** is normalised at once with CCNet's ``normalize``
   (:func:`~llamaforge.data.ccnet.normalize.normalize_line`). That deletes
   control characters, newlines included, so the paragraphs are joined
   without a separator ("end.Next"), exactly as CCNet's models scored them;
2. the result is cut into SentencePiece pieces (``<lang>.sp.model``) if
   ``sp_model`` is given, else split on whitespace;
3. KenLM scores it with ``<s>``/``</s>``; the perplexity is
   ``10 ** (-log10 p / (n_tokens + 1))``, rounded to one decimal as CCNet
   stores it (the bucket compares the rounded value).

``lines = True`` scores as ``DocLM`` does on text that still has newlines:
each normalised line (an empty one too, as in ``DocLM``) is scored on its
own and the document's perplexity is ``10 ** (-sum(log10 p) / sum(n_tokens + 1))``. It is not CCNet's pipeline;
it is there for models trained per line (such as :func:`train_arpa` output).

Buckets: CCNet cuts each language at the 30th and 60th percentiles
(``PerplexityBucket(percentile_head=30, percentile_tail=60)``) of the
perplexities its released models give to that language's CommonCrawl
documents, read from its ``cutoff.csv``. That table ships here as
``cutoff.csv`` (percentiles 0-99 for 48 languages; English: 340 / 520);
:func:`ccnet_cutoffs` reads it. It only fits CCNet's own released
``<lang>.arpa.bin`` + ``<lang>.sp.model``: for another model, compute
cutoffs with :func:`perplexity_cutoffs` on a sample of your documents.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from llamaforge.data.ccnet.kenlm_format import check_kenlm_file
from llamaforge.data.ccnet.normalize import normalize_line
from llamaforge.errors import ConfigError

BUCKETS = ("head", "middle", "tail")
CUTOFF_CSV = Path(__file__).with_name("cutoff.csv")
CCNET_PERCENTILES = (30, 60)  # cc_net PerplexityBucket's percentile_head / percentile_tail


@functools.lru_cache(maxsize=1)
def _cutoff_table() -> dict[str, list[float]]:
    with open(CUTOFF_CSV, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    languages = rows[0][1:]
    table: dict[str, list[float]] = {lang: [] for lang in languages}
    for row in rows[1:]:
        for lang, value in zip(languages, row[1:], strict=True):
            table[lang].append(float(value))
    return table


def cutoff_languages() -> list[str]:
    """Languages of CCNet's cutoff table."""
    return sorted(_cutoff_table())


def ccnet_cutoffs(
    language: str, percentiles: Sequence[int] = CCNET_PERCENTILES
) -> tuple[float, float]:
    """CCNet's ``(head, tail)`` perplexity cutoffs for ``language`` (``en`` -> 340, 520)."""
    table = _cutoff_table()
    if language not in table:
        raise ConfigError(
            f"CCNet's cutoff table has no language {language!r} (it has {', '.join(sorted(table))}); "
            "set [sources.commoncrawl].perplexity_cutoffs = [head, tail] for it"
        )
    head, tail = percentiles
    return table[language][head], table[language][tail]


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
    """Text as the LM sees it: CCNet-normalised, then SentencePiece pieces if ``sp`` is given."""
    normalized = normalize_line(line)
    if sp is not None and normalized:
        return " ".join(sp.encode(normalized, out_type=str))
    return normalized


class PerplexityScorer:
    """A KenLM model (ARPA or KenLM binary) and optional SentencePiece model, loaded once."""

    def __init__(
        self, lm_path: str | Path, sp_model: str | Path | None = None, field: str = "lm_model"
    ) -> None:
        import kenlm

        check_kenlm_file(lm_path, field)  # KenLM crashes on some damaged files instead of raising
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

    def log10_prob_and_tokens(self, text: str, lines: bool = False) -> tuple[float, int]:
        """Summed log10 probability of ``text`` and its token count (``</s>`` included)."""
        total, tokens = 0.0, 0
        for part in text.split("\n") if lines else [text]:
            prepared = prepare_line(part, self.sp)
            if not prepared and not lines:
                break  # an empty document has no perplexity (CCNet leaves it unscored)
            total += self.model.score(prepared, bos=True, eos=True)
            tokens += len(prepared.split()) + 1  # + </s>
        return total, tokens

    def perplexity(self, text: str, lines: bool = False) -> float:
        """Document perplexity rounded to 0.1 as CCNet stores it; ``inf`` without any token."""
        total, tokens = self.log10_prob_and_tokens(text, lines)
        if tokens == 0:
            return float("inf")
        return round(float(10.0 ** (-total / tokens)), 1)


def bucket(perplexity: float, cutoffs: Sequence[float]) -> str:
    """``head`` below ``cutoffs[0]``, ``middle`` below ``cutoffs[1]``, else ``tail``."""
    if perplexity < cutoffs[0]:
        return "head"
    if perplexity < cutoffs[1]:
        return "middle"
    return "tail"


def perplexity_cutoffs(
    perplexities: Iterable[float], head_percentile: float = 30.0, tail_percentile: float = 60.0
) -> tuple[float, float]:
    """Bucket cutoffs from a sample of document perplexities at CCNet's 30th/60th percentiles."""
    values = np.asarray([p for p in perplexities if np.isfinite(p)], dtype=np.float64)
    if values.size == 0:
        raise ConfigError("perplexity_cutoffs needs at least one finite perplexity")
    head, tail = np.percentile(values, [head_percentile, tail_percentile])
    return float(head), float(tail)
