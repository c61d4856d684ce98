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
ending_1 + ending_2 + ...``, in which a mask lets every ending attend to
the context and to itself only, and rotary positions restart at the context's
length for every ending. Each ending is so computed exactly as the plain input
``context + ending`` (to float rounding, ~1e-6 in fp32), and only the endings'
positions are computed in the last layer and projected onto the vocabulary
(``forward(outputs_at=...)``: the last layer needs the context's keys and values
only, not its queries or feed-forward). The endings form a tree
(:func:`~llamaforge.eval.shared_rows.ending_tree`): those that begin alike share
their common start. Tokens computed per group: ``context + the tree`` (at most
``context + sum(endings)``) instead of ``n x context + sum(endings)``. Endings
that do not fit the model's window together are split over several rows, each
repeating the context. Contexts that begin with the same long preamble (the
five shots of an MMLU subject, identical before every question of it) go one
level deeper: one row holds the preamble once and several contexts below it,
each with its continuations, where the cost model of
:mod:`llamaforge.eval.shared_rows` (saved matmul work against the wider row's
attention) says it pays; that module describes the layout and the mask. This
replaced an earlier design (the context once through a KV cache, copied to
every ending's row), which paid cache copies, a second pass and the padding of
ragged endings, and was slower than no sharing on short prompts. It needs a
model whose forward takes ``positions``, ``mask`` and ``outputs_at`` (a
single-device ``Transformer``: :func:`supports_prefix_cache`); other models
(Hugging Face, sharded ones, test toys) take the plain path. Contexts that are
neither shared by two or more distinct continuations nor below a shared
preamble take the plain path too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError
from llamaforge.eval.shared_rows import (
    Row,
    Unit,
    layout,
    plan_rows,
    row_width,
    split_units,
    unit_row,
)
from llamaforge.model.transformer import standalone_output


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _dtype_of(model: nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else torch.float32


def supports_prefix_cache(model: nn.Module) -> bool:
    """Whether ``model`` can share prefixes: a single-device llamaforge ``Transformer``.

    Sharing calls its forward with ``positions``, ``mask`` and ``outputs_at``
    (the last layer and the output layer on the scored rows alone), which a
    sharded (FSDP2/TP) model cannot do; such models and foreign ones take the
    plain path.
    """
    return standalone_output(model) is not None


# Rows of logits normalised at once: bounds the float32 copy to ~128 MiB (1,024 rows of a
# 32,000-piece vocabulary; a whole batch at small vocabularies).
READ_CHUNK_ELEMENTS = 2**25


def _read_scores(
    logits: torch.Tensor,
    reads: list[tuple[Sequence[int], int]],
    items: Sequence[tuple[Sequence[int], int]],
    results: list[tuple[float, bool]],
) -> None:
    """Each item's (sum of log-probs of its targets, all targets are the argmax), batch-wide.

    ``reads`` pairs an item with the rows of ``logits`` on its path; it reads
    the last ``n_targets`` of them. One log-softmax, gather and argmax per
    chunk of rows (:data:`READ_CHUNK_ELEMENTS`; the whole batch at small
    vocabularies) instead of a handful of small ops per item (400 items on
    PIQA's validation shape), and no second full-size copy of the logits at
    a large one (a rolling log-likelihood's rows are whole windows). A row
    that two items' paths share is normalised once. Sums accumulate in
    float64.
    """
    rows: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    for k, (path, i) in enumerate(reads):
        tokens, n_targets = items[i]
        rows.extend(path[len(path) - n_targets :])
        targets.extend(tokens[len(tokens) - n_targets :])
        owner.extend([k] * n_targets)
    device = logits.device
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)
    targets_t = torch.tensor(targets, dtype=torch.long, device=device)
    picked = torch.empty(len(rows), dtype=torch.float64, device=device)
    missed = torch.empty(len(rows), dtype=torch.float64, device=device)
    step = max(1, READ_CHUNK_ELEMENTS // logits.shape[-1])
    for start in range(0, logits.shape[0], step):
        logprobs = logits[start : start + step].float().log_softmax(-1)
        here = (rows_t >= start) & (rows_t < start + step)
        row, target = rows_t[here] - start, targets_t[here]
        picked[here] = logprobs[row, target].double()
        missed[here] = (logprobs.argmax(-1)[row] != target).double()
    owner_t = torch.tensor(owner, dtype=torch.long, device=device)
    sums = torch.zeros(len(reads), dtype=torch.float64, device=device).index_add_(
        0, owner_t, picked
    )
    misses = torch.zeros(len(reads), dtype=torch.float64, device=device)
    misses.index_add_(0, owner_t, missed)
    for (_, i), total, miss in zip(reads, sums.tolist(), misses.tolist(), strict=True):
        results[i] = (total, miss == 0)


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
    shared: list[Unit] = []
    for prefix, suffixes in by_prefix.items():
        if share and prefix and len(suffixes) > 1:
            shared.append((prefix, list(suffixes.items())))
        else:
            for suffix, owners in suffixes.items():
                # One input may come from two splits (context "a b" + " c", "a" + " b c").
                plain.setdefault(prefix + suffix, []).extend(owners)
    rows = _plan(model, items, plain, shared, max_seq_len) if share else []
    results: list[tuple[float, bool]] = [(0.0, True)] * len(items)
    total = len(plain) + sum(bool(owners) for row in rows for _, _, owners in row)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(total=total, desc=desc, disable=not progress, unit="seq") as bar,
        ):
            _score_plain(model, items, plain, batch_size, results, bar)
            _score_rows(model, items, rows, batch_size, results, bar)
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
            logits = model(padded.to(device), outputs_at=at)
        else:
            full = model(padded.to(device))
            logits = torch.cat([full[row, end - n : end] for row, end, n in spans])
        reads, offset = [], 0
        for (_, _, n), inp in zip(spans, batch, strict=True):
            reads.extend((range(offset, offset + n), i) for i in groups[inp])
            offset += n
        _read_scores(logits, reads, items, results)
        bar.update(len(batch))


def _flat_positions(spans: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """``start, start + 1, ..., start + n - 1`` for every ``(start, n)``, concatenated."""
    return torch.cat([torch.arange(start, start + n) for start, n in spans]).to(device)


def _plan(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], int]],
    plain: dict[tuple[int, ...], list[int]],
    groups: list[Unit],
    max_seq_len: int,
) -> list[Row]:
    """The shared rows; plain inputs that join a shared preamble leave ``plain``.

    Contexts with several continuations always get a row of their own (or
    several, see ``split_units``); contexts that begin with the same long
    preamble, with one continuation or several, share rows below it where
    ``plan_rows``'s cost model says it pays.
    """
    units = split_units(groups, max_seq_len)
    candidates: list[Unit] = []
    for inp, owners in plain.items():
        scored = max(items[i][1] for i in owners)
        candidates.append((inp[: len(inp) - scored], [(inp[len(inp) - scored :], owners)]))
    config = getattr(model, "_orig_mod", model).config
    rows, alone = plan_rows(units + candidates, max_seq_len, config.dim, config.ffn_hidden_dim)
    left = set(alone)
    rows.extend(unit_row(unit) for i, unit in enumerate(units) if i in left)
    for i, (prefix, [(suffix, _)]) in enumerate(candidates, start=len(units)):
        if i not in left:
            del plain[prefix + suffix]
    return rows


def _score_rows(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], int]],
    rows: list[Row],
    batch_size: int,
    results: list[tuple[float, bool]],
    bar: tqdm,
) -> None:
    """Rows of segment trees (``shared_rows``), widest first; only scored segments are projected.

    Each item reads the last ``n_targets`` positions of its path (a plain
    input that joined a preamble may serve items with fewer targets).
    """
    device = _device_of(model)
    ordered = sorted(rows, key=row_width, reverse=True)
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        tokens, positions, mask, scored, picks = layout(batch, device, _dtype_of(model))
        width = tokens.shape[1]
        at = _flat_positions([(row * width + column, n) for row, column, n in scored], device)
        logits = model(tokens, positions=positions, mask=mask, outputs_at=at)
        _read_scores(logits, [(path, i) for path, owners in picks for i in owners], items, results)
        bar.update(len(picks))
