"""Batched incremental decoding with the model's KV cache.

Prompts of different lengths are left-padded to a common width so that one
cache write index serves the whole batch (see ``KVCache``). Each sequence's
rotary positions start at 0 at its first real token, and padding is hidden
from every real query by the attention mask, so a padded sequence produces
the same tokens as the same prompt decoded alone (the tests check this
against a full forward pass at every step).

The cache and both masks are allocated once per call: a decoding step slices
a precomputed key mask instead of building one, and when no prompt is padded
the step passes no mask at all, which is the cheapest attention path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError, DataError
from llamaforge.inference.sampling import SamplingConfig, make_generator, sample_next
from llamaforge.inference.static_decode import StaticStep, bucketed_cache_len


class TokenizerLike(Protocol):
    bos_id: int
    eos_id: int

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class TextDecoder:
    """Turns tokens appended after a prompt into final text, one piece at a time.

    Decoding tokens one by one is wrong for SentencePiece: a piece's leading
    ``▁`` becomes a space only when something precedes it, and a character
    split into byte-fallback pieces (``<0xE2><0x82><0xAC>``) is garbage until
    its last byte arrives. So each push decodes a short window that starts a
    few tokens *before* the new ones and keeps only what the new tokens added;
    text ending in U+FFFD (an incomplete character) is held back until it
    decodes cleanly or ``flush`` is called. The window keeps every push O(1)
    instead of re-decoding the whole completion (the scheme vLLM uses).
    """

    def __init__(self, tokenizer: TokenizerLike, prompt_ids: Sequence[int], context: int = 6):
        self._decode = tokenizer.decode
        self._ids = list(prompt_ids[-context:]) if context else []
        self._start = 0  # window start; ids[_start:_read] are already turned into text
        self._read = len(self._ids)
        self.text = ""

    def push(self, token: int) -> str:
        """Add one token; return the text that became final (maybe "")."""
        self._ids.append(token)
        return self._advance(final=False)

    def flush(self) -> str:
        """Emit whatever is held back, incomplete characters included."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        done = self._decode(self._ids[self._start : self._read])
        full = self._decode(self._ids[self._start :])
        if len(full) <= len(done) or (full.endswith("\ufffd") and not final):
            return ""
        piece = full[len(done) :]
        self._start, self._read = self._read, len(self._ids)
        self.text += piece
        return piece


def _stop_index(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


def _unsafe_tail(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def _prepare(
    model: nn.Module, prompts: Sequence[Sequence[int]], cfg: SamplingConfig
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded (batch, width) tokens, per-sequence pad counts and the new-token budget."""
    if not prompts:
        raise ConfigError("generate: no prompts given")
    max_seq_len, vocab = model.config.max_seq_len, model.config.vocab_size
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    for i, (prompt, n) in enumerate(zip(prompts, lengths, strict=True)):
        if n == 0:
            raise ConfigError(f"generate: prompt {i} is empty; encode it with a BOS token")
        if n > max_seq_len:
            raise ConfigError(
                f"generate: prompt {i} has {n} tokens, more than model.max_seq_len "
                f"{max_seq_len}; shorten it"
            )
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise DataError(
                f"generate: prompt {i} holds token ids outside [0, {vocab}); "
                "does the tokenizer match the checkpoint?"
            )
    tokens = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        tokens[i, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
    pads = torch.tensor([width - n for n in lengths])
    # The last token sampled is never fed back, hence the + 1.
    budget = min(cfg.max_new_tokens, max_seq_len - width + 1)
    return tokens, pads, budget


@torch.inference_mode()
def decode_steps(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    cfg: SamplingConfig,
    eos_id: int | None = None,
    *,
    progress: bool = False,
    compile: bool | str = False,
    vocab_size: int | None = None,
) -> Iterator[tuple[list[int | None], list[bool]]]:
    """Yield ``(new_tokens, done)`` after every decoding step.

    ``new_tokens[i]`` is sequence i's new token, or None once it has finished
    (EOS is reported as None: it ends a completion, it is not part of it).
    The caller may set ``done[i] = True`` to finish sequence i early, which
    is how text-level stop strings are applied. Finished sequences keep
    running in the batch (their tokens are ignored) until all are done,
    because removing rows would re-allocate the cache.

    ``compile=True`` (or a ``torch.compile`` backend name) decodes with the
    static-shape step of ``llamaforge.inference.static_decode``: compiled
    once per batch and cache-length bucket, a CUDA graph per token on GPU.
    It pays a compile up front, so it is off by default.

    ``vocab_size`` (the tokenizer's): ids at or beyond it are never sampled.
    An output layer padded past the tokenizer (a vocabulary rounded up to a
    multiple of 64, as GGUF and Megatron-style checkpoints carry) has rows
    no text can spell; its untrained logits must not become tokens.
    """
    tokens, pads, budget = _prepare(model, prompts, cfg)
    if budget <= 0:
        return
    device = next(model.parameters()).device
    batch, width = tokens.shape
    tokens, pads = tokens.to(device), pads.to(device)
    positions = (torch.arange(width, device=device) - pads[:, None]).clamp_(min=0)
    cache_len = width + budget - 1
    if compile:
        cache_len = bucketed_cache_len(cache_len, model.config.max_seq_len)
    if bool(pads.any()):
        is_real = torch.arange(cache_len, device=device)[None, :] >= pads[:, None]  # (batch, keys)
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        # A padding query may see itself. torch 2.13's CPU kernels return 0
        # for a fully masked row, but other SDPA backends and versions return
        # NaN, and NaN keys would poison real queries (0 * NaN = NaN).
        diagonal = torch.eye(width, dtype=torch.bool, device=device)
        prefill_mask = (causal & (is_real[:, None, :width] | diagonal)).unsqueeze(1)
        step_mask: torch.Tensor | None = is_real[:, None, None, :]
    else:
        prefill_mask = step_mask = None
    cache = model.new_cache(batch, cache_len)
    generator = make_generator(cfg, device)
    done = [False] * batch
    next_pos = positions[:, -1:] + 1
    # Prefill projects only the last position onto the vocabulary: the others'
    # logits would be over a third of the prefill FLOPs at dim 512, vocab 32k.
    logits = model(tokens, positions=positions, mask=prefill_mask, cache=cache, last_only=True)[
        :, -1
    ]
    static = StaticStep(model, cache, pads, compile) if compile else None
    with tqdm(total=budget, disable=not progress, unit="tok") as bar:
        for step in range(budget):
            if vocab_size is not None and logits.shape[-1] > vocab_size:
                logits = logits[..., :vocab_size]
            next_tokens = sample_next(logits, cfg, generator)
            new: list[int | None] = next_tokens.tolist()
            for i, token in enumerate(new):
                if done[i] or token == eos_id:
                    done[i], new[i] = True, None
            bar.update()
            yield new, done
            if all(done) or step == budget - 1:
                return
            if static is not None:
                logits = static(next_tokens[:, None], next_pos)
            else:
                mask = None if step_mask is None else step_mask[..., : cache.filled + 1]
                logits = model(next_tokens[:, None], positions=next_pos, mask=mask, cache=cache)
                logits = logits[:, -1]
            next_pos += 1


def generate_ids(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    cfg: SamplingConfig,
    eos_id: int | None,
    *,
    tokenizer: TokenizerLike | None = None,
    progress: bool = False,
    compile: bool | str = False,
) -> list[list[int]]:
    """New token ids for each prompt (prompts are token ids, BOS included).

    A completion ends at EOS (not included), at ``cfg.max_new_tokens`` or at
    the model's context length, and, when ``cfg.stop`` is set, with the token
    that completes a stop string; that token is kept here because the
    string may end inside it: ``generate`` cuts the text itself. Stop strings
    need ``tokenizer`` to decode. Pass ``eos_id=None`` to never stop on EOS.
    ``compile``: see :func:`decode_steps`.
    """
    if cfg.stop and tokenizer is None:
        raise ConfigError("generate_ids: sampling.stop needs a tokenizer to decode the text")
    out: list[list[int]] = [[] for _ in prompts]
    decoders = [TextDecoder(tokenizer, p) for p in prompts] if cfg.stop and tokenizer else []
    vocab = getattr(tokenizer, "vocab_size", None)
    steps = decode_steps(
        model, prompts, cfg, eos_id, progress=progress, compile=compile, vocab_size=vocab
    )
    for new, done in steps:
        for i, token in enumerate(new):
            if token is None:
                continue
            out[i].append(token)
            if decoders and decoders[i].push(token):
                done[i] = _stop_index(decoders[i].text, cfg.stop) >= 0
    return out


def completion_text(tokenizer: TokenizerLike, prompt_ids: Sequence[int], ids: Sequence[int]) -> str:
    """The text ``ids`` add after the prompt, leading space included (as lm-eval expects)."""
    decoder = TextDecoder(tokenizer, prompt_ids)
    for token in ids:
        decoder.push(token)
    decoder.flush()
    return decoder.text


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    index = _stop_index(text, stops)
    return text if index < 0 else text[:index]


def generate(
    model: nn.Module,
    tokenizer: TokenizerLike,
    prompts: Sequence[str],
    cfg: SamplingConfig,
    *,
    progress: bool = False,
    compile: bool | str = False,
) -> list[str]:
    """Completions (without the prompt) of a batch of text prompts.

    Prompts are encoded with BOS, as in pretraining. Each completion is cut
    before the earliest stop string it contains.
    """
    encoded = [tokenizer.encode(p, bos=True, eos=False) for p in prompts]
    ids = generate_ids(
        model,
        encoded,
        cfg,
        tokenizer.eos_id,
        tokenizer=tokenizer,
        progress=progress,
        compile=compile,
    )
    return [
        _cut_at_stop(completion_text(tokenizer, p, g), cfg.stop)
        for p, g in zip(encoded, ids, strict=True)
    ]


def stream(
    model: nn.Module,
    tokenizer: TokenizerLike,
    prompt: str,
    cfg: SamplingConfig,
    *,
    compile: bool | str = False,
) -> Iterator[str]:
    """Yield the completion of one prompt in pieces, each final once yielded.

    A piece is yielded only when it decodes cleanly and cannot be the start
    of a stop string, so ``"".join(stream(...))`` equals ``generate(...)[0]``
    for the same settings.
    """
    ids = tokenizer.encode(prompt, bos=True, eos=False)
    decoder = TextDecoder(tokenizer, ids)
    sent = 0
    vocab = getattr(tokenizer, "vocab_size", None)
    for new, done in decode_steps(
        model, [ids], cfg, tokenizer.eos_id, compile=compile, vocab_size=vocab
    ):
        if new[0] is None or not decoder.push(new[0]):
            continue
        text = decoder.text
        stop_at = _stop_index(text, cfg.stop)
        if stop_at >= 0:
            done[0] = True
            if stop_at > sent:
                yield text[sent:stop_at]
            return
        safe = len(text) - _unsafe_tail(text, cfg.stop)
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    decoder.flush()
    rest = _cut_at_stop(decoder.text, cfg.stop)[sent:]
    if rest:
        yield rest
