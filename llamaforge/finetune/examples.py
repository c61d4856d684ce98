"""Conversations to token examples: ids, a response mask, the length rule, the split.

An example of ``n`` token ids (BOS ... EOS) gives ``n - 1`` training
positions: inputs ``ids[:-1]``, targets ``ids[1:]``; a target is
:data:`~llamaforge.train.batches.IGNORE` unless it is response text or a
response's EOS (with ``train_on_prompt`` every target is scored except those of
an assistant turn marked ``"weight": 0``, which is context only).

Length rule (``finetune.overlong``), for examples with more than
``max_seq_len`` positions:

* ``"truncate"`` (default): keep the first ``max_seq_len + 1`` ids. The
  prompt survives and the response is cut at the end (its EOS is lost), as
  in torchtune and TRL. If nothing scored is left, the example is dropped.
* ``"drop"``: drop the example.

Either way the count is reported (``truncated``, ``dropped_too_long``,
``dropped_no_response_left``). The validation split is a seeded random
``val_fraction`` of the examples, drawn before the length rule so it does not
depend on ``max_seq_len``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.templates import ChatTemplate, encode_segments
from llamaforge.train.batches import IGNORE

OVERLONG = ("truncate", "drop")


@dataclass(frozen=True)
class Example:
    inputs: np.ndarray  # int64 (n - 1,)
    targets: np.ndarray  # int64 (n - 1,), IGNORE where not scored

    def __len__(self) -> int:
        return len(self.inputs)


def encode_example(
    tokenizer, template: ChatTemplate, messages: list[dict], train_on_prompt: bool = False
) -> tuple[list[int], list[bool]]:
    """Ids of one conversation and, per id, whether it is a scored target.

    ``train_on_prompt`` scores the prompt ids too, but never a ``"weight": 0``
    response (see :func:`~llamaforge.finetune.encoding.encode_segments`).
    """
    return encode_segments(tokenizer, template.render(messages), score_prompt=train_on_prompt)


def build_examples(
    tokenizer,
    template: ChatTemplate,
    conversations: list[list[dict]],
    max_seq_len: int,
    overlong: str = "truncate",
    train_on_prompt: bool = False,
    skip_bad: bool = False,
    where: list[str] | None = None,
) -> tuple[list[Example], Counter]:
    """Examples and counts; a conversation the template cannot show is an error or skipped.

    ``where`` names each conversation's record (``file:line``) for that error;
    skipped ones count under ``not_in_template`` (with ``skip_bad``).
    """
    if overlong not in OVERLONG:
        raise ConfigError(f"finetune.overlong {overlong!r} is unknown; use one of {OVERLONG}")
    counts: Counter = Counter()
    out: list[Example] = []
    for index, messages in enumerate(conversations):
        try:
            ids, trainable = encode_example(tokenizer, template, messages, train_on_prompt)
        except DataError as error:
            if skip_bad:
                counts["not_in_template"] += 1
                continue
            record = where[index] if where else f"conversation {index + 1}"
            raise DataError(
                f"{record}: {error}; fix the record, choose another finetune.template or set "
                "finetune.skip_bad_examples = true"
            ) from None
        if len(ids) - 1 > max_seq_len:
            if overlong == "drop":
                counts["dropped_too_long"] += 1
                continue
            ids, trainable = ids[: max_seq_len + 1], trainable[: max_seq_len + 1]
            if not any(trainable[1:]):
                counts["dropped_no_response_left"] += 1
                continue
            counts["truncated"] += 1
        arr = np.asarray(ids, dtype=np.int64)
        targets = np.where(np.asarray(trainable[1:], dtype=bool), arr[1:], IGNORE)
        out.append(Example(arr[:-1].copy(), targets.astype(np.int64)))
    counts["examples"] = len(out)
    return out, counts


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) record indices: a seeded ``ceil(val_fraction * n)`` held out."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"finetune.val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng([seed, 0x5E1F]).permutation(n)
    n_val = math.ceil(val_fraction * n)
    if n - n_val < 1:
        raise DataError(f"{n} examples leave none for training with val_fraction={val_fraction}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])
