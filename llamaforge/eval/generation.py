"""Batched free-form generation for the generative benchmarks (paper §3.3-§3.5).

Built on :mod:`llamaforge.inference` (left-padded batches, KV cache), with
what evaluation adds on top:

* **n samples per prompt.** Each prompt is repeated ``n`` times in the batch
  rows; greedy decoding is deterministic, so with ``temperature = 0`` it runs
  once and the completion is repeated.
* **Seeding.** Batch ``b`` samples with ``seed + b``, so a run is
  reproducible for the same prompts, ``n`` and ``batch_size``, and the rows of
  different batches never share a random stream (with one seed for all
  batches, two batches holding the same prompt would draw identical
  samples). ``seed = None`` uses torch's global generator.
* **Stop strings** are matched on the decoded completion, which is cut before
  the earliest one (closed-book QA passes the paper's "first line break,
  final dot or comma" as ``stop=("\\n", ".", ",")``).
* **Left truncation.** A prompt that leaves too little room is cut from the
  left (its oldest tokens, BOS included, go), as lm-evaluation-harness does.
  The prompt keeps ``max(context - max_new_tokens, context // 2)`` tokens: the
  first term is lm-eval's rule, the second keeps prompts meaningful when
  ``max_new_tokens`` is large for a small context (the completion then ends at
  the context length instead: ``max_seq_len`` when given, counted from the
  longest prompt of the batch). Tasks avoid truncation where they can by
  dropping few-shot examples first (:func:`fit_shots`).
* Rows are sorted longest prompt first (less padding; an out-of-memory error
  shows on the first batch) and results come back in input order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.likelihood import model_max_len
from llamaforge.inference import SamplingConfig, completion_text, generate_ids


def context_length(model: nn.Module, max_seq_len: int | None = None) -> int:
    """Tokens the model can attend to: ``max_seq_len`` if given, capped by the model's own."""
    own = model_max_len(model)
    return own if max_seq_len is None else min(model_max_len(model, max_seq_len), own)


def prompt_token_budget(context: int, max_new_tokens: int) -> int:
    """How many prompt tokens are kept (see the module docstring for the rule)."""
    return max(context - max_new_tokens, context // 2, 1)


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(hits)] if hits else text


def generate_completions(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    cfg: SamplingConfig,
    *,
    n: int = 1,
    batch_size: int = 8,
    max_seq_len: int | None = None,
    progress: bool = True,
) -> list[list[str]]:
    """``n`` completions (text after the prompt, cut at stop strings) for each prompt.

    Prompts are encoded with BOS, as in pretraining. ``cfg`` gives the
    decoding: ``temperature`` 0 is greedy, ``stop``, ``max_new_tokens`` and
    ``seed`` as described in the module docstring.
    """
    if n < 1:
        raise ConfigError(f"generation needs n >= 1 samples per prompt, got {n}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if not prompts:
        return []
    context = context_length(model, max_seq_len)
    keep = prompt_token_budget(context, cfg.max_new_tokens)
    encoded = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer.encode(prompt, bos=True, eos=False)
        if not ids:
            raise DataError(f"prompt {i} encodes to no tokens")
        encoded.append(ids[-keep:])
    draws = 1 if cfg.greedy else n
    rows = sorted(
        ((p, s) for p in range(len(prompts)) for s in range(draws)),
        key=lambda row: -len(encoded[row[0]]),
    )
    texts: dict[tuple[int, int], str] = {}
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(rows), disable=not progress, desc="generating", unit="seq") as bar:
            for b, start in enumerate(range(0, len(rows), batch_size)):
                batch = rows[start : start + batch_size]
                seed = None if cfg.seed is None else cfg.seed + b
                batch_ids = [encoded[p] for p, _ in batch]
                # the completion ends at the context (the last token is not fed back: + 1)
                room = context - max(len(ids) for ids in batch_ids) + 1
                new_ids = generate_ids(
                    model,
                    batch_ids,
                    replace(cfg, seed=seed, max_new_tokens=min(cfg.max_new_tokens, room)),
                    tokenizer.eos_id,
                    tokenizer=tokenizer if cfg.stop else None,
                )
                for row, prompt_ids, ids in zip(batch, batch_ids, new_ids, strict=True):
                    texts[row] = _cut_at_stop(completion_text(tokenizer, prompt_ids, ids), cfg.stop)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return [[texts[(p, s if draws > 1 else 0)] for s in range(n)] for p in range(len(prompts))]


def fit_shots(
    tokenizer: Any, build: Callable[[int], str], shots: int, max_prompt_tokens: int
) -> tuple[str, int]:
    """The prompt ``build(k)`` with the largest ``k <= shots`` whose encoding fits the budget.

    Few-shot examples are dropped (from the end of the list ``build`` draws
    from) rather than letting left truncation cut into the instruction and
    the first example. Assumes the prompt grows with ``k``; if even 0 shots do
    not fit, the 0-shot prompt is returned and generation truncates it.
    """

    def fits(k: int) -> bool:
        return len(tokenizer.encode(build(k), bos=True, eos=False)) <= max_prompt_tokens

    if fits(shots):
        return build(shots), shots
    low, high = 0, shots - 1  # binary search for the largest k that fits
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return build(low), low


def draw_shots(pool: Sequence[dict], shots: int, rng: random.Random, exclude: dict) -> list[dict]:
    """``shots`` distinct examples drawn from ``pool`` with ``rng.sample``.

    ``exclude`` (the document being asked) is never its own example, which
    matters when the few-shot pool is the evaluation split. ``shots + 1`` are
    drawn and the first ``shots`` other than ``exclude`` kept: lm-eval's default
    sampler does the same when the pool is the evaluated split, but draws
    exactly ``shots`` from another split, so with the same seed the draws can
    differ from lm-eval's.
    """
    if shots == 0:
        return []
    # One extra draw covers the case where the document itself is drawn (O(shots), not O(pool)).
    drawn = rng.sample(pool, min(shots + 1, len(pool)))
    chosen = [doc for doc in drawn if doc != exclude][:shots]
    if len(chosen) < shots:
        raise DataError(
            f"{shots}-shot prompting needs {shots} few-shot examples but the pool has "
            f"{len(pool)}; use fewer --shots or a larger few-shot split"
        )
    return chosen
