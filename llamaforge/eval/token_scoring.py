"""Batched scoring of token sequences: the forward passes behind ``eval.likelihood``.

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

import torch
from torch import nn
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError


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
