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

Batching pads on the right (causal attention means padding never influences
real positions, so no mask is needed), sorts inputs longest first so an
out-of-memory error shows up on the first batch, and restores request order.
Requests whose model *input* is identical (the same context and all but the
last continuation token, e.g. multiple-choice letters " A"/" B"/" C" after one
prompt) share a single forward pass.

**Prefix sharing.** A long context scored with several continuations (a
HellaSwag or RACE passage with four endings) is run once: requests are grouped
by their context tokens, the context (all but its last token) goes through the
model once per group, filling a KV cache, and every continuation is then scored
against that cache, copied over the batch rows. Several groups share one
prefix pass by left-padding their contexts (rotary positions restart at each
row's first real token and padding is masked out, as in
``llamaforge.inference.generate``), so the numbers equal the uncached path to
float rounding (~1e-6 in fp32). It needs a model with ``new_cache`` and
``forward(tokens, positions, mask, cache, last_only)`` (our ``Transformer``);
other models (Hugging Face, test toys) take the plain path. Contexts that are
not shared by two or more distinct continuations take the plain path too: the
cache would only add copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError, DataError


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


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def supports_prefix_cache(model: nn.Module) -> bool:
    """Whether ``model`` can extend a KV cache (our ``Transformer``), so prefixes can be shared."""
    return callable(getattr(model, "new_cache", None))


def _pick(logits: torch.Tensor, targets: Sequence[int]) -> tuple[float, bool]:
    """Sum of log-probs of ``targets`` under ``logits`` (one row per target) and greedy flag."""
    logprobs = logits.float().log_softmax(-1)
    target = torch.tensor(list(targets), device=logprobs.device)
    picked = logprobs.gather(-1, target[:, None]).squeeze(-1)
    return float(picked.sum()), bool((logprobs.argmax(-1) == target).all())


def score_token_sequences(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], int]],
    *,
    max_seq_len: int,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "loglikelihood",
    prefix_sharing: bool | None = None,
) -> list[tuple[float, bool]]:
    """Score ``(tokens, n_targets)`` items: the last ``n_targets`` tokens given the earlier ones.

    ``tokens`` must be at most ``max_seq_len + 1`` long (the model sees all but
    the last). Returns ``(sum of log-probs, all targets are the argmax)``.
    ``prefix_sharing``: None uses it when the model supports it, True requires
    it, False never uses it (see the module docstring).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if prefix_sharing and not supports_prefix_cache(model):
        raise ConfigError(
            f"prefix_sharing=True needs a model with a KV cache (new_cache); "
            f"{type(model).__name__} has none: pass prefix_sharing=None or False"
        )
    share = supports_prefix_cache(model) if prefix_sharing is None else prefix_sharing
    by_prefix: dict[tuple[int, ...], dict[tuple[int, ...], list[int]]] = {}
    for i, (tokens, n_targets) in enumerate(items):
        if not 0 <= n_targets < len(tokens) or len(tokens) > max_seq_len + 1:
            raise ValueError(f"item {i}: {n_targets} targets in {len(tokens)} tokens")
        if n_targets:
            cut = len(tokens) - n_targets - 1
            prefix, suffix = tuple(tokens[:cut]), tuple(tokens[cut:-1])
            by_prefix.setdefault(prefix, {}).setdefault(suffix, []).append(i)
    plain: dict[tuple[int, ...], list[int]] = {}
    shared: list[tuple[tuple[int, ...], dict[tuple[int, ...], list[int]]]] = []
    for prefix, suffixes in by_prefix.items():
        if share and prefix and len(suffixes) > 1:
            shared.append((prefix, suffixes))
        else:
            for suffix, owners in suffixes.items():
                plain[prefix + suffix] = owners
    results: list[tuple[float, bool]] = [(0.0, True)] * len(items)
    total = len(plain) + sum(len(suffixes) for _, suffixes in shared)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(total=total, desc=desc, disable=not progress, unit="seq") as bar,
        ):
            _score_plain(model, items, plain, batch_size, results, bar)
            for chunk in _chunks(shared, batch_size, max_seq_len):
                _score_shared_chunk(model, items, chunk, batch_size, results, bar)
    finally:
        model.train(was_training)
    return results


def _score_plain(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], int]],
    groups: dict[tuple[int, ...], list[int]],
    batch_size: int,
    results: list[tuple[float, bool]],
    bar: tqdm,
) -> None:
    """Whole inputs, right-padded, longest first; identical inputs share a row."""
    inputs = sorted(groups, key=len, reverse=True)
    device = _device_of(model)
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        padded = torch.zeros(len(batch), len(batch[0]), dtype=torch.long)
        for row, inp in enumerate(batch):
            padded[row, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        logits = model(padded.to(device))
        for row, inp in enumerate(batch):
            for i in groups[inp]:
                tokens, n_targets = items[i]
                end = len(inp)
                results[i] = _pick(logits[row, end - n_targets : end], tokens[-n_targets:])
        bar.update(len(batch))


SharedGroup = tuple[tuple[int, ...], dict[tuple[int, ...], list[int]]]


def _chunks(
    groups: list[SharedGroup], batch_size: int, max_seq_len: int
) -> list[list[SharedGroup]]:
    """Groups packed into prefix passes of at most ``batch_size`` rows of prefix and suffix.

    Longest prefix first; a chunk's cache (longest prefix + longest suffix) must
    fit the model's window. A group with more suffixes than ``batch_size`` gets
    a chunk of its own and its suffixes run in several batches.
    """
    chunks: list[list[SharedGroup]] = []
    rows = longest_suffix = 0
    for group in sorted(groups, key=lambda g: len(g[0]), reverse=True):
        suffix = max(len(s) for s in group[1])
        if chunks:
            width = len(chunks[-1][0][0])
            fits = rows + len(group[1]) <= batch_size and len(chunks[-1]) < batch_size
            if fits and width + max(longest_suffix, suffix) <= max_seq_len:
                chunks[-1].append(group)
                rows += len(group[1])
                longest_suffix = max(longest_suffix, suffix)
                continue
        chunks.append([group])
        rows, longest_suffix = len(group[1]), suffix
    return chunks


def _score_shared_chunk(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], int]],
    chunk: list[SharedGroup],
    batch_size: int,
    results: list[tuple[float, bool]],
    bar: tqdm,
) -> None:
    """One left-padded prefix pass for the chunk, then its suffixes against copies of the cache."""
    device = _device_of(model)
    width = len(chunk[0][0])
    prefix_tokens = torch.zeros(len(chunk), width, dtype=torch.long)
    for row, (prefix, _) in enumerate(chunk):
        prefix_tokens[row, width - len(prefix) :] = torch.tensor(prefix, dtype=torch.long)
    lengths = torch.tensor([len(prefix) for prefix, _ in chunk], device=device)
    pads = width - lengths
    positions = (torch.arange(width, device=device) - pads[:, None]).clamp(min=0)
    is_real = torch.arange(width, device=device)[None, :] >= pads[:, None]
    mask = None
    if bool(pads.any()):
        # Padding queries see themselves so no attention row is empty (NaN on some backends).
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        diagonal = torch.eye(width, dtype=torch.bool, device=device)
        mask = (causal & (is_real[:, None, :] | diagonal)).unsqueeze(1)
    cache = model.new_cache(len(chunk), width)
    model(prefix_tokens.to(device), positions=positions, mask=mask, cache=cache, last_only=True)
    rows = [
        (g, suffix, owners) for g, (_, sfx) in enumerate(chunk) for suffix, owners in sfx.items()
    ]
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        owner = torch.tensor([g for g, _, _ in batch], device=device)
        n = max(len(suffix) for _, suffix, _ in batch)
        suffix_cache = model.new_cache(len(batch), width + n)
        for src, dst in zip(cache.layers, suffix_cache.layers, strict=True):
            dst.k[:, :, :width] = src.k.index_select(0, owner)
            dst.v[:, :, :width] = src.v.index_select(0, owner)
        suffix_cache.filled = width
        suffix_tokens = torch.zeros(len(batch), n, dtype=torch.long)
        for row, (_, suffix, _) in enumerate(batch):
            suffix_tokens[row, : len(suffix)] = torch.tensor(suffix, dtype=torch.long)
        suffix_positions = lengths[owner][:, None] + torch.arange(n, device=device)
        causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        suffix_mask = torch.cat(
            [is_real[owner][:, None, :].expand(-1, n, -1), causal.expand(len(batch), -1, -1)],
            dim=-1,
        ).unsqueeze(1)
        logits = model(
            suffix_tokens.to(device),
            positions=suffix_positions,
            mask=suffix_mask,
            cache=suffix_cache,
        )
        for row, (_, _, owners) in enumerate(batch):
            for i in owners:
                tokens, n_targets = items[i]
                results[i] = _pick(logits[row, :n_targets], tokens[-n_targets:])
        bar.update(len(batch))


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
