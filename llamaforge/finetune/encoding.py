"""Rendered segments to token ids and a per-id "scored" mask (what the loss sees).

Kept apart from :mod:`llamaforge.finetune.templates` (which renders the text)
so the scoring rule lives in one short place; ``templates`` re-exports both
names. The id rules (BOS and EOS are ids, ids are those of the whole text
between special tokens, a token straddling the prompt/response boundary is
response) are explained in the ``templates`` module docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text.

    ``trainable`` marks response text (an EOS follows it); ``scored`` is False
    for a response kept as context only (``"weight": 0``): its ids and its EOS
    are in the example but get no loss.
    """

    text: str
    trainable: bool
    scored: bool = True


class _Encoder(Protocol):
    bos_id: int
    eos_id: int

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]: ...


def encode_segments(
    tokenizer: _Encoder, segments: list[Segment], score_prompt: bool = False
) -> tuple[list[int], list[bool]]:
    """Token ids of a rendered conversation and, per id, whether it is scored.

    BOS first, an EOS (a response token: the model must learn to stop) after
    every trainable segment. Scored are the ids of responses whose segment is
    ``scored`` and their EOS, plus every prompt id with ``score_prompt``
    (``train_on_prompt``); an unscored (weight-0) response never is. See the
    ``templates`` module docstring for the boundary rule.
    """
    ids, trainable = [tokenizer.bos_id], [score_prompt]
    chunk = ""
    for segment in segments:
        if not segment.trainable:
            chunk += segment.text
            continue
        prompt = tokenizer.encode(chunk, bos=False) if chunk else []
        full = tokenizer.encode(chunk + segment.text, bos=False)
        shared = 0
        for a, b in zip(prompt, full, strict=False):
            if a != b:
                break
            shared += 1
        ids += full + [tokenizer.eos_id]
        scored = segment.scored
        trainable += [score_prompt] * shared + [scored] * (len(full) - shared) + [scored]
        chunk = ""
    if chunk:
        tail = tokenizer.encode(chunk, bos=False)
        ids += tail
        trainable += [score_prompt] * len(tail)
    return ids, trainable
