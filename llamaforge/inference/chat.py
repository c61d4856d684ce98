"""``llamaforge chat CHECKPOINT``: multi-turn terminal chat in the model's finetuning template.

One KV cache lives for the whole conversation: each turn feeds only the
tokens the turn adds (the EOS that closed the previous answer, the user turn
and the assistant prefix), never the history again. The ids are those
``encode_segments`` gives the same conversation in training: BOS once, the
text between EOS tokens encoded as one chunk, an EOS after every answer
(fed even when the answer ended at ``--max-new-tokens``, so the history
always has the template's shape).

Decisions:

* **Context overflow**: when the next turn plus room for an answer
  (``min(max_new_tokens, max_seq_len // 4)`` tokens) does not fit in the
  cache, the oldest user/assistant turns are dropped (the system turn is
  kept) and the remaining history is re-encoded once, with a notice; users
  keep their recent context instead of losing all of it. A user turn that
  does not fit even alone is refused with a notice. An answer that reaches the
  end of the cache stops there.
* **Stop strings**: besides ``--stop``, the text of the template's user-turn
  marker (``<|user|>``, ``### Instruction:``) stops an answer: a weakly
  finetuned model often writes the next user turn itself. The cache is then
  rewound to the last whole token before the stop string, so the history holds
  what was shown.
* **Sampling defaults** are temperature 0.7, top-p 0.9 (what chat front ends
  use; greedy decoding loops on small models); ``--temperature 0`` is greedy.
* **A system prompt that leaves no room** (the template's default, or
  ``--system``, with the turn markers and room for an answer, longer than
  ``--context``) is refused when the session starts, naming it: no message
  could ever be sent.
* Commands: ``/reset`` clears the history (and the cache); Ctrl-D (EOF) or
  ``/quit`` ends the chat.
* The read/print loop is :func:`~llamaforge.inference.terminal.chat_loop`;
  its output goes through ``SafeOutput`` (control characters escaped,
  unencodable characters replaced); the history keeps the raw text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from llamaforge.errors import ConfigError
from llamaforge.finetune.template_text import literal_before
from llamaforge.finetune.templates import ChatTemplate, encode_segments, load_template
from llamaforge.inference.cli import sampling_from_args
from llamaforge.inference.generate import TextDecoder, TokenizerLike, _stop_index, _unsafe_tail
from llamaforge.inference.loading import (
    add_device_arguments,
    check_cache_fits,
    load_model_and_tokenizer,
)
from llamaforge.inference.sampling import SamplingConfig, make_generator, sample_next
from llamaforge.inference.terminal import chat_loop


def user_marker(template: ChatTemplate) -> str:
    """The literal text a user turn starts with (``"<|user|>"``), "" if it starts with the message."""
    return literal_before(template.user, "content").strip()


class ChatSession:
    """A conversation with one model: its messages, token history and KV cache."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: TokenizerLike,
        template: ChatTemplate,
        sampling: SamplingConfig,
        system: str | None = None,
        context: int | None = None,
    ) -> None:
        """``context``: positions the conversation keeps (default: the model's window)."""
        if system and not template.system:
            raise ConfigError(f"template {template.name!r} has no system turn; drop --system")
        self.model, self.tokenizer, self.template = model, tokenizer, template
        marker = user_marker(template)
        self.stops = tuple(dict.fromkeys((*sampling.stop, *([marker] if marker else []))))
        self.sampling = sampling
        self.system = system
        window = model.config.max_seq_len
        if context is not None and not 16 <= context <= window:
            raise ConfigError(f"--context must be between 16 and the model's window {window}")
        self.max_len = context or window
        check_cache_fits(model, self.max_len)
        self.room = min(sampling.max_new_tokens, self.max_len // 4) + 1  # an answer and its EOS
        self._check_system_fits()
        self.cache = model.new_cache(1, self.max_len)
        self.vocab = getattr(tokenizer, "vocab_size", None)  # ids past it are never sampled
        self.device = next(model.parameters()).device
        self.generator = make_generator(sampling, self.device)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation; the cache is reused (rewound, not reallocated)."""
        self.messages: list[dict] = (
            [{"role": "system", "content": self.system}] if self.system else []
        )
        self.fed: list[int] = []  # ids in the cache, in order
        self.pending: list[int] = []  # history ids not yet fed (the last answer's tail + EOS)
        self.cache.filled = 0

    def _check_system_fits(self) -> None:
        """Refuse a context the system prompt fills: then even an empty message cannot fit."""
        messages = [*([{"role": "system", "content": self.system}] * bool(self.system)),
                    {"role": "user", "content": ""}]  # fmt: skip
        need = len(encode_segments(self.tokenizer, self.template.render(messages, True))[0])
        if need + self.room <= self.max_len:
            return
        what = f"an empty message in template {self.template.name!r}"
        if self.system:
            what = "the --system message"
        elif self.template.system_text(messages):
            what = f"the default system prompt of template {self.template.name!r}"
        window, least = self.model.config.max_seq_len, need + self.room
        fix = f"pass --context {min(least + 64, window)} or more"
        if least > window:
            fix = f"that is more than the model's {window}-position window"
        raise ConfigError(
            f"a {self.max_len}-position context is too small: {what} uses {need} positions "
            f"(turn markers included) and an answer needs {self.room} more; {fix}"
            + (", or give a shorter --system" if self.system else "")
        )

    @property
    def history(self) -> list[int]:
        """Every token id of the conversation so far, as training would encode it."""
        return self.fed + self.pending

    def _turn_ids(self, messages: list[dict]) -> list[int]:
        """Ids of what ``messages`` (ending with a user turn) add after the current history."""
        segments = self.template.render(messages, add_generation_prompt=True)
        last = max((i for i, s in enumerate(segments) if s.trainable), default=-1)
        text = "".join(s.text for s in segments[last + 1 :])
        head = self.pending if self.fed else [self.tokenizer.bos_id]
        return head + self.tokenizer.encode(text, bos=False)

    def _fit(
        self, messages: list[dict], notify: Callable[[str], None]
    ) -> tuple[list[int], list[dict]] | None:
        """Ids to feed for the new turn and the conversation they end; old turns may be dropped."""
        room = self.room
        new = self._turn_ids(messages)
        if len(self.fed) + len(new) + room <= self.max_len:
            return new, messages
        head = 1 if messages[0]["role"] == "system" else 0
        turns = (len(messages) - head - 1) // 2
        for dropped in range(1, turns + 1):
            kept = messages[:head] + messages[head + 2 * dropped :]
            ids = encode_segments(self.tokenizer, self.template.render(kept, True))[0]
            if len(ids) + room <= self.max_len:
                notify(f"[context full: dropped the {dropped} oldest turn(s), re-read the rest]")
                self.fed, self.pending, self.cache.filled = [], [], 0
                return ids, kept
        alone = messages[:head] + messages[-1:]
        need = len(encode_segments(self.tokenizer, self.template.render(alone, True))[0])
        notify(
            f"[message too long: with the system prompt and turn markers it takes {need} of the "
            f"{self.max_len} context positions and an answer needs {room}; not sent]"
        )
        return None

    def _feed(self, ids: list[int]) -> torch.Tensor:
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
        logits = self.model(tokens, cache=self.cache, last_only=True)[:, -1]
        self.fed += ids
        return logits

    @torch.inference_mode()
    def send(self, text: str, notify: Callable[[str], None] = print) -> Iterator[str]:
        """Stream the answer to one user message, in final pieces."""
        messages = [*self.messages, {"role": "user", "content": text}]
        fitted = self._fit(messages, notify)
        if fitted is None:
            return
        ids, messages = fitted
        logits = self._feed(ids)
        self.pending = []
        start = len(self.fed)
        decoder = TextDecoder(self.tokenizer, self.fed)
        answer: list[int] = []
        sent = 0
        budget = min(self.sampling.max_new_tokens, self.max_len - len(self.fed) + 1)
        stopped = False
        for step in range(budget):
            if self.vocab is not None:  # a padded output layer's extra rows spell no text
                logits = logits[..., : self.vocab]
            token = int(sample_next(logits, self.sampling, self.generator)[0])
            if token == self.tokenizer.eos_id:
                break
            answer.append(token)
            if decoder.push(token):
                shown = decoder.text
                cut = _stop_index(shown, self.stops)
                if cut >= 0:
                    if cut > sent:
                        yield shown[sent:cut]
                    stopped = True
                    break
                safe = len(shown) - _unsafe_tail(shown, self.stops)
                if safe > sent:
                    yield shown[sent:safe]
                    sent = safe
            if step < budget - 1:
                logits = self._feed([token])
        if stopped:
            answer = self._rewind(start, answer, cut)
        else:
            decoder.flush()
            if len(decoder.text) > sent:
                yield decoder.text[sent:]
        # History ids not yet in the cache: the last sampled token (never fed) and EOS.
        self.pending = answer[len(self.fed) - start :] + [self.tokenizer.eos_id]
        reply = _decode_after(self, start, answer)
        self.messages = [*messages, {"role": "assistant", "content": reply}]
        if len(self.history) > self.max_len:
            notify("[the answer reached the end of the context]")

    def _rewind(self, start: int, answer: list[int], cut: int) -> list[int]:
        """Keep the whole tokens before the stop string; rewind the cache to them."""
        keep = len(answer)
        while keep and len(_decode_after(self, start, answer[:keep])) > cut:
            keep -= 1
        fed_answer = min(keep, len(self.fed) - start)
        self.fed = self.fed[: start + fed_answer]
        self.cache.filled = len(self.fed)
        return answer[:keep]


def _decode_after(session: ChatSession, start: int, ids: list[int]) -> str:
    decoder = TextDecoder(session.tokenizer, session.fed[:start])
    for token in ids:
        decoder.push(token)
    decoder.flush()
    return decoder.text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="finetuned model folder (any format)")
    parser.add_argument(
        "--template", help="alpaca, chat or a TOML file (default: the one stored in the checkpoint)"
    )
    parser.add_argument("--system", default=None, help="system message of the conversation")
    parser.add_argument(
        "--context", type=int, default=None,
        help="positions the conversation keeps (default: the model's window)",
    )  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus mass, 1 = off")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k likeliest, 0 = off")
    parser.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    parser.add_argument(
        "--stop", action="append", default=[], help=r"stop an answer at this text (repeatable)"
    )
    add_device_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from llamaforge.formats import detect_format, read_chat_template

    sampling = sampling_from_args(args)
    if not args.checkpoint.exists():
        raise ConfigError(f"checkpoint {args.checkpoint} does not exist")
    template = load_template(args.template) if args.template else None
    if template is None and args.checkpoint.is_dir():
        stored = read_chat_template(args.checkpoint, detect_format(args.checkpoint))
        template = stored if isinstance(stored, ChatTemplate) else None
    if template is None:
        raise ConfigError(
            f"{args.checkpoint} does not say which chat template it was finetuned with; "
            "pass --template alpaca, --template chat or --template FILE.toml"
        )
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, args.device, args.dtype)
    session = ChatSession(
        model, tokenizer, template, sampling, system=args.system, context=args.context
    )
    if sys.stdin.isatty():
        print(f"chatting with {args.checkpoint} ({template.name} template); "
              "/reset clears the history, Ctrl-D quits", file=sys.stderr)  # fmt: skip
    if hasattr(sys.stdin, "reconfigure"):  # bad bytes reach chat_loop's check, not a traceback
        sys.stdin.reconfigure(errors="surrogateescape")
    return chat_loop(session, sys.stdin, sys.stdout)
