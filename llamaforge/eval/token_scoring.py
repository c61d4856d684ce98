"""Batched scoring of token sequences: the forward passes behind ``eval.likelihood``.

Batching pads on the right (causal attention means padding never influences
real positions, so no mask is needed), sorts inputs longest first so an
out-of-memory error shows up on the first batch, and restores request order.
Requests whose model *input* is identical (the same context and all but the
last continuation token, e.g. multiple-choice letters " A"/" B"/" C" after one
prompt) share a single forward pass.

**Prefix sharing.** A long context scored with several continuations (a
HellaSwag or RACE passage with four endings) is run once: requests are grouped
by their context tokens and each group becomes one row, ``context +
ending_1 + ending_2 + ...``, in which a boolean mask lets every ending attend to
the context and to itself only, and rotary positions restart at the context's
length for every ending. Each ending is so computed exactly as the plain input
``context + ending`` (to float rounding, ~1e-6 in fp32), and only the endings'
positions are computed in the last layer and projected onto the vocabulary
(``forward(outputs_at=...)``: the last layer needs the context's keys and values
only, not its queries or feed-forward). Tokens computed per group:
``context + sum(endings)`` instead of ``n x context + sum(endings)``. Endings
that do not fit the model's window together are split over several rows, each
repeating the context. This replaced an earlier design (the context once
through a KV cache, copied to every ending's row), which paid cache copies, a
second pass and the padding of ragged endings, and was slower than no sharing
on short prompts. It needs a model whose forward takes ``positions``, ``mask``
and ``outputs_at`` (a single-device ``Transformer``:
:func:`supports_prefix_cache`); other models (Hugging Face,
sharded ones, test toys) take the plain path. Contexts that are not
shared by two or more distinct continuations take the plain path too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError
from llamaforge.model.transformer import standalone_output


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def supports_prefix_cache(model: nn.Module) -> bool:
    """Whether ``model`` can share prefixes: a single-device llamaforge ``Transformer``.

    Sharing calls its forward with ``positions``, ``mask`` and ``outputs_at``
    (the last layer and the output layer on the scored rows alone), which a
    sharded (FSDP2/TP) model cannot do; such models and foreign ones take the
    plain path.
    """
    return standalone_output(model) is not None


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
            f"prefix_sharing=True needs a single-device llamaforge Transformer; "
            f"{type(model).__name__} is not one: pass prefix_sharing=None or False"
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
                # One input may come from two splits (context "a b" + " c", "a" + " b c").
                plain.setdefault(prefix + suffix, []).extend(owners)
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
            _score_trees(model, items, _trees(shared, max_seq_len), batch_size, results, bar)
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
    project_scored = supports_prefix_cache(model)  # our Transformer: forward(outputs_at=...)
    inputs = sorted(groups, key=len, reverse=True)
    device = _device_of(model)
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        padded = torch.zeros(len(batch), len(batch[0]), dtype=torch.long)
        for row, inp in enumerate(batch):
            padded[row, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        # (row, end of its input, positions scored): the last n positions of the row.
        spans = [
            (row, len(inp), max(items[i][1] for i in groups[inp])) for row, inp in enumerate(batch)
        ]
        if project_scored:  # the last layer and the output run on the scored positions only
            width = padded.shape[1]
            at = _flat_positions([(row * width + end - n, n) for row, end, n in spans], device)
            logits = model(padded.to(device), outputs_at=at).split([n for _, _, n in spans])
        else:
            full = model(padded.to(device))
            logits = [full[row, end - n : end] for row, end, n in spans]
        for row_logits, inp in zip(logits, batch, strict=True):
            for i in groups[inp]:
                tokens, n_targets = items[i]
                results[i] = _pick(row_logits[len(row_logits) - n_targets :], tokens[-n_targets:])
        bar.update(len(batch))


def _flat_positions(spans: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """``start, start + 1, ..., start + n - 1`` for every ``(start, n)``, concatenated."""
    return torch.cat([torch.arange(start, start + n) for start, n in spans]).to(device)


SharedGroup = tuple[tuple[int, ...], dict[tuple[int, ...], list[int]]]
# One row of a shared pass: the prefix, then its suffixes, each with its owners.
Tree = tuple[tuple[int, ...], list[tuple[tuple[int, ...], list[int]]]]


def _trees(groups: list[SharedGroup], max_seq_len: int) -> list[Tree]:
    """Each group as rows ``prefix + suffix_1 + suffix_2 + ...`` of at most ``max_seq_len``.

    A group whose suffixes do not fit one row is split over several rows, each
    repeating the prefix (every single suffix fits: prefix + suffix is one
    model input, at most ``max_seq_len`` long).
    """
    trees: list[Tree] = []
    for prefix, suffixes in groups:
        row: list[tuple[tuple[int, ...], list[int]]] = []
        width = len(prefix)
        for suffix, owners in sorted(suffixes.items(), key=lambda kv: len(kv[0]), reverse=True):
            if row and width + len(suffix) > max_seq_len:
                trees.append((prefix, row))
                row, width = [], len(prefix)
            row.append((suffix, owners))
            width += len(suffix)
        trees.append((prefix, row))
    return trees


def _score_trees(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], int]],
    trees: list[Tree],
    batch_size: int,
    results: list[tuple[float, bool]],
    bar: tqdm,
) -> None:
    """Rows of one prefix and its suffixes, each suffix attending only to the prefix and itself.

    Positions restart at the prefix length for every suffix and the boolean
    mask keeps suffixes apart, so each suffix is computed exactly as the plain
    input ``prefix + suffix`` (to float rounding). Only the suffix positions
    run through the last layer's queries and feed-forward and the output layer.
    """
    device = _device_of(model)
    rows = sorted(trees, key=lambda t: len(t[0]) + sum(len(s) for s, _ in t[1]), reverse=True)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = len(batch[0][0]) + sum(len(s) for s, _ in batch[0][1])
        tokens = torch.zeros(len(batch), width, dtype=torch.long)
        positions = torch.zeros(len(batch), width, dtype=torch.long)
        segment = torch.full((len(batch), width), -1, dtype=torch.long)  # -1: padding
        picks: list[tuple[int, int, int, list[int]]] = []  # row, first column, length, owners
        for row, (prefix, suffixes) in enumerate(batch):
            n = len(prefix)
            tokens[row, :n] = torch.tensor(prefix, dtype=torch.long)
            positions[row, :n] = torch.arange(n)
            segment[row, :n] = 0
            column = n
            for number, (suffix, owners) in enumerate(suffixes, start=1):
                end = column + len(suffix)
                tokens[row, column:end] = torch.tensor(suffix, dtype=torch.long)
                positions[row, column:end] = torch.arange(n, n + len(suffix))
                segment[row, column:end] = number
                picks.append((row, column, len(suffix), owners))
                column = end
        segment = segment.to(device)
        index = torch.arange(width, device=device)
        causal = index[None, :] <= index[:, None]  # (query, key)
        same = segment[:, :, None] == segment[:, None, :]
        prefix_key = (segment == 0)[:, None, :]
        # Padding queries see themselves so no attention row is empty (NaN on some backends).
        mask = (causal & (same | prefix_key)) | torch.eye(width, dtype=torch.bool, device=device)
        # A suffix's positions are exactly its items' scored positions (n_targets of them).
        at = _flat_positions([(row * width + c, n) for row, c, n, _ in picks], device)
        logits = model(
            tokens.to(device), positions=positions.to(device), mask=mask[:, None], outputs_at=at
        )
        offset = 0
        for _, _, n, owners in picks:
            for i in owners:
                tokens_i, n_targets = items[i]
                results[i] = _pick(logits[offset : offset + n], tokens_i[-n_targets:])
            offset += n
        bar.update(len(picks))
