"""Log-likelihood of continuations: the scoring primitive of every zero/few-shot task (paper §3).

Semantics follow lm-evaluation-harness, so numbers are comparable with what
its users report:

* **Splitting.** Trailing whitespace of the context is moved to the front of
  the continuation (``"Q: x\\nA: "`` + ``"yes"`` becomes ``"Q: x\\nA:"`` +
  ``" yes"``), because SentencePiece glues a space to the *following* word.
  Then ``context + continuation`` is encoded whole (with BOS) and the
  continuation's tokens are those past the length of the context's own
  encoding. Scoring the whole encoding this way gives the tokenisation the
  model saw in training even where a merge crosses the boundary.
* **Empty context** scores the continuation after BOS alone.
* **Truncation** is from the left to ``max_seq_len`` input positions (the
  oldest context tokens go); a continuation longer than the window raises
  :class:`~llamaforge.errors.DataError` since it cannot be scored honestly.
* **Empty continuation** has log-probability 0 and counts as greedy.

The batched forward passes (padding, identical inputs, prefix sharing) are
:mod:`llamaforge.eval.token_scoring`'s job; :func:`score_token_sequences` and
:func:`supports_prefix_cache` are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import nn

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.token_scoring import score_token_sequences, supports_prefix_cache

__all__ = [
    "TokenizerLike",
    "loglikelihood",
    "loglikelihood_rolling",
    "model_max_len",
    "rolling_windows",
    "score_token_sequences",
    "split_request",
    "supports_prefix_cache",
]


class TokenizerLike(Protocol):
    bos_id: int

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]: ...


def model_max_len(model: nn.Module, max_seq_len: int | None = None) -> int:
    """``max_seq_len`` if given, else ``model.config.max_seq_len``."""
    if max_seq_len is None:
        max_seq_len = getattr(getattr(model, "config", None), "max_seq_len", None)
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ConfigError(
            "cannot tell the model's context length: pass max_seq_len=... or a model whose "
            f"config has a positive max_seq_len (got {max_seq_len!r})"
        )
    return max_seq_len


def split_request(
    tokenizer: TokenizerLike, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Token ids of ``(context, continuation)`` split as lm-eval-harness does (see module doc)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation, bos=True)
    n_context = len(tokenizer.encode(context, bos=True))
    return whole[:n_context], whole[n_context:]


def loglikelihood(
    model: nn.Module,
    tokenizer: Any,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int = 16,
    progress: bool = False,
    max_seq_len: int | None = None,
    prefix_sharing: bool | None = None,
) -> list[tuple[float, bool]]:
    """``(log P(continuation | context), is_greedy)`` for each ``(context, continuation)``.

    ``prefix_sharing`` as in :func:`score_token_sequences` (default: when the model can).
    """
    max_len = model_max_len(model, max_seq_len)
    items: list[tuple[list[int], int]] = []
    for i, (context, continuation) in enumerate(requests):
        context_ids, continuation_ids = split_request(tokenizer, context, continuation)
        if not context_ids and continuation_ids:
            raise ConfigError(
                f"request {i} has an empty context and the tokenizer has no BOS token to "
                "condition on; give a context or use a tokenizer with BOS"
            )
        if len(continuation_ids) > max_len:
            raise DataError(
                f"request {i}: the continuation is {len(continuation_ids)} tokens, longer than "
                f"the model's context of {max_len}; shorten it or use loglikelihood_rolling"
            )
        tokens = (context_ids + continuation_ids)[-(max_len + 1) :]
        items.append((tokens, len(continuation_ids)))
    return score_token_sequences(
        model,
        items,
        max_seq_len=max_len,
        batch_size=batch_size,
        progress=progress,
        prefix_sharing=prefix_sharing,
    )


def rolling_windows(
    tokens: Sequence[int], prefix: int, max_seq_len: int
) -> list[tuple[list[int], int]]:
    """Disjoint prediction windows covering ``tokens`` once each, as ``(tokens, n_targets)``.

    The first window predicts from ``prefix`` (BOS); each later one predicts
    the next ``max_seq_len`` tokens with as much preceding text as fits as
    context. This is lm-eval's ``context_len=1`` scheme: every token is scored
    exactly once, and only the first tokens of a window see a short context,
    which makes the result a (slightly pessimistic) perplexity for texts
    longer than the model's window.
    """
    tokens = list(tokens)
    if not tokens:
        return []
    first = min(max_seq_len, len(tokens))
    windows = [([prefix, *tokens[:first]], first)]
    done = first
    while done < len(tokens):
        n_pred = min(len(tokens) - done, max_seq_len)
        end = done + n_pred
        windows.append((tokens[max(0, end - max_seq_len - 1) : end], n_pred))
        done = end
    return windows


def loglikelihood_rolling(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    progress: bool = False,
    max_seq_len: int | None = None,
) -> list[float]:
    """Log-likelihood of each whole text (every token given BOS and the text before it).

    For perplexity tasks: ``exp(-sum / n_tokens)``. Texts longer than the
    window are split as :func:`rolling_windows` describes; an empty text has
    log-likelihood 0.
    """
    max_len = model_max_len(model, max_seq_len)
    if tokenizer.bos_id < 0:
        raise ConfigError("loglikelihood_rolling needs a tokenizer with a BOS token")
    items: list[tuple[list[int], int]] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        for window in rolling_windows(tokenizer.encode(text, bos=False), tokenizer.bos_id, max_len):
            items.append(window)
            owner.append(i)
    scores = score_token_sequences(
        model,
        items,
        max_seq_len=max_len,
        batch_size=batch_size,
        progress=progress,
        desc="loglikelihood_rolling",
    )
    totals = [0.0] * len(texts)
    for i, (logprob, _) in zip(owner, scores, strict=True):
        totals[i] += logprob
    return totals
