"""Prompt templates as data: how a conversation becomes training text and ids.

A template is a TOML file (``llamaforge/finetune/templates/{alpaca,chat}.toml``
ship; a user passes a path to their own) with five format strings. Only two
placeholders exist, ``{content}`` and ``{input}``; they are substituted in one
pass, so braces in templates or messages need no escaping and a message that
itself contains ``{content}`` stays literal.

Decisions:

* **BOS and EOS are token ids, never text.** :func:`encode_segments` puts the
  tokenizer's BOS id first and an EOS id after every response; :meth:`ChatTemplate.to_jinja`
  emits ``bos_token`` / ``eos_token`` at the same places, so Hugging Face's
  ``apply_chat_template(tokenize=True)`` sees the special-token strings and maps
  them to the same ids.
* **Ids are those of the whole text between special tokens**, not of each
  segment tokenized apart: that is what a tokenizer given the rendered string
  (``transformers``, our chat at inference) produces. A prompt/response
  boundary inside such a chunk is located by tokenizing the prompt alone: the
  ids the two encodings share are prompt, every later id is response. A token
  that straddles the boundary therefore counts as response (it spells response
  text). Templates end the prompt side with a newline so no token straddles it.
* **Alpaca** is Stanford Alpaca's prompt text, with and without ``### Input:``,
  plus a newline after ``### Response:`` (Stanford's ``train.py`` appends the
  output directly after the colon; torchtune and litgpt add the newline, which
  gives the clean token boundary above). An Alpaca record's ``input`` travels as
  the ``input`` key of its user message; ``user_with_input`` and
  ``default_system_with_input`` format it.
* Messages: an optional ``system`` first, then ``user`` and ``assistant`` turns
  where every assistant turn answers a user turn. Anything else is an error.
* **Special-token spellings.** A template may not contain ``<s>``, ``</s>``
  or ``<unk>`` (refused when it loads). In a *message* they are text to us
  (byte pieces ``<``, ``/``, ``s``, ``>``), while a Hugging Face tokenizer
  called with ``split_special_tokens=False`` (what a rendered chat prompt
  needs, docs/finetune.md) reads them as the control tokens: conversations
  whose text spells them are the one case where our ids and
  ``apply_chat_template``'s differ. That is the serving stack's parsing rule;
  nothing in a template can escape it.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from llamaforge.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
# The SentencePiece control pieces' spellings: text, never written by a template (see __post_init__).
SPECIAL_TOKEN_TEXT = ("<s>", "</s>", "<unk>")
_TEXT_FIELDS = ("system", "user", "assistant", "assistant_end", "default_system",
                "user_with_input", "default_system_with_input")  # fmt: skip
_PLACEHOLDER = re.compile(r"\{(content|input)\}")


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text; ``trainable`` marks response text (an EOS follows it)."""

    text: str
    trainable: bool


def _fill(fmt: str, content: str, input_text: str = "") -> str:
    values = {"content": content, "input": input_text}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], fmt)


def _jinja_literal(text: str) -> str:
    # Jinja string literals are Python-escaped; json.dumps' escapes are a subset.
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def _jinja_format(fmt: str, content: str, input_expr: str = "''") -> str:
    """Jinja for ``_fill(fmt, ...)``: literals and the two placeholders as expressions."""
    out, pos = [], 0
    for match in _PLACEHOLDER.finditer(fmt):
        if match.start() > pos:
            out.append(_jinja_literal(fmt[pos : match.start()]))
        out.append("{{ " + (content if match.group(1) == "content" else input_expr) + " }}")
        pos = match.end()
    if pos < len(fmt):
        out.append(_jinja_literal(fmt[pos:]))
    return "".join(out)


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    system: str  # a system turn, with {content}; "" if the template has none
    user: str  # a user turn, with {content}
    assistant: str  # the prompt-side prefix of an assistant turn
    assistant_end: str  # text after a response, before its EOS
    default_system: str  # used when the messages have no system turn; "" = none
    user_with_input: str = ""  # a user turn carrying an "input" (Alpaca); "" = not supported
    default_system_with_input: str = ""  # default system when a user turn has an input

    def __post_init__(self) -> None:
        """Refuse a template that would drop text or disagree with its Hugging Face export."""
        where = f"template {self.name!r}"
        if "{content}" not in self.user:
            raise ConfigError(f"{where}: 'user' must contain {{content}}")
        if self.system and "{content}" not in self.system:
            raise ConfigError(f"{where}: 'system' must contain {{content}} or be \"\"")
        if self.user_with_input and not all(
            p in self.user_with_input for p in ("{content}", "{input}")
        ):
            raise ConfigError(f"{where}: 'user_with_input' must contain {{content}} and {{input}}")
        if not self.system and (self.default_system or self.default_system_with_input):
            raise ConfigError(f"{where}: a default system message needs a 'system' turn format")
        for field_name in _TEXT_FIELDS:
            text = getattr(self, field_name)
            special = [t for t in SPECIAL_TOKEN_TEXT if t in text]
            if special:
                raise ConfigError(
                    f"{where}: {field_name!r} contains {special[0]!r}; BOS and EOS are token ids "
                    "the template adds itself (text spelling them is read as text by us and as "
                    "the special token by a Hugging Face tokenizer), so remove it"
                )

    def _system_text(self, messages: list[dict], has_input: bool) -> str | None:
        if messages and messages[0].get("role") == "system":
            return messages[0]["content"]
        if has_input and self.default_system_with_input:
            return self.default_system_with_input
        return self.default_system or None

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> list[Segment]:
        """The conversation as prompt and response segments (BOS/EOS not included)."""
        check_messages(messages)
        has_input = any(m.get("input") for m in messages if m["role"] == "user")
        out: list[Segment] = []
        system = self._system_text(messages, has_input)
        if system is not None:
            if not self.system:
                raise DataError(
                    f"template {self.name!r} has no system turn; drop the system message"
                )
            out.append(Segment(_fill(self.system, system), False))
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "user":
                input_text = message.get("input") or ""
                if input_text and not self.user_with_input:
                    raise DataError(f"template {self.name!r} cannot show an 'input' field")
                fmt = self.user_with_input if input_text else self.user
                out.append(Segment(_fill(fmt, content, input_text), False))
            elif role == "assistant":
                out.append(Segment(self.assistant, False))
                out.append(Segment(content + self.assistant_end, True))
        if add_generation_prompt:
            out.append(Segment(self.assistant, False))
        return [s for s in out if s.text or s.trainable]

    def to_jinja(self, bos_token: str, eos_token: str) -> str:
        """A Hugging Face ``chat_template`` rendering exactly :meth:`render`'s text.

        ``bos_token`` / ``eos_token`` are not baked in: the template uses the
        variables transformers passes; the arguments only document the contract
        (and are checked to be non-empty).
        """
        if not bos_token or not eos_token:
            raise ValueError("to_jinja needs the tokenizer's BOS and EOS strings")
        lit = _jinja_literal
        default = ""
        if self.default_system:
            default = "{% set sys = " + json.dumps(self.default_system, ensure_ascii=False) + " %}"
        with_input = ""
        if self.default_system_with_input:
            with_input = (
                "{% if ns.has_input %}{% set sys = "
                + json.dumps(self.default_system_with_input, ensure_ascii=False)
                + " %}{% endif %}"
            )
        system_turn = (
            "{% if sys is not none %}" + _jinja_format(self.system, "sys") + "{% endif %}"
            if self.system
            else "{% if sys is not none %}{{ raise_exception('this template has no system turn') }}"
            "{% endif %}"
        )
        user_turn = _jinja_format(self.user, "message['content']")
        if self.user_with_input:
            user_turn = (
                "{% if message['input'] is defined and message['input'] %}"
                + _jinja_format(self.user_with_input, "message['content']", "message['input']")
                + "{% else %}"
                + user_turn
                + "{% endif %}"
            )
        return (
            "{% set ns = namespace(has_input=false) %}"
            "{% for message in messages %}{% if message['role'] == 'user' and "
            "message['input'] is defined and message['input'] %}{% set ns.has_input = true %}"
            "{% endif %}{% endfor %}"
            "{{ bos_token }}"
            "{% set sys = none %}"
            "{% if messages and messages[0]['role'] == 'system' %}"
            "{% set sys = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
            "{% else %}"
            + default
            + with_input
            + "{% set loop_messages = messages %}{% endif %}"
            + system_turn
            + "{% for message in loop_messages %}"
            "{% if message['role'] == 'user' %}" + user_turn + ""
            "{% elif message['role'] == 'assistant' %}"
            + lit(self.assistant)
            + "{{ message['content'] }}"
            + lit(self.assistant_end)
            + "{{ eos_token }}"
            "{% else %}{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
            "{% endfor %}"
            "{% if add_generation_prompt %}" + lit(self.assistant) + "{% endif %}"
        )


def check_messages(messages: Any) -> None:
    """Raise DataError unless ``messages`` is [system?] then user/assistant turns."""
    if not isinstance(messages, list) or not messages:
        raise DataError("'messages' must be a non-empty list of {role, content} objects")
    previous = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"messages[{index}] is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(f"messages[{index}] has unknown role {role!r}; use {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"messages[{index}] ({role}) has no string 'content'")
        if role == "system" and index != 0:
            raise DataError(f"messages[{index}]: a system message may only come first")
        if role == "assistant" and previous != "user":
            raise DataError(f"messages[{index}]: an assistant turn must follow a user turn")
        previous = role


class _Encoder(Protocol):
    bos_id: int
    eos_id: int

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]: ...


def encode_segments(tokenizer: _Encoder, segments: list[Segment]) -> tuple[list[int], list[bool]]:
    """Token ids of a rendered conversation and, per id, whether it is response.

    BOS first, an EOS (a response token: the model must learn to stop) after
    every trainable segment. See the module docstring for the boundary rule.
    """
    ids, trainable = [tokenizer.bos_id], [False]
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
        trainable += [False] * shared + [True] * (len(full) - shared) + [True]
        chunk = ""
    if chunk:
        tail = tokenizer.encode(chunk, bos=False)
        ids += tail
        trainable += [False] * len(tail)
    return ids, trainable


_FIELDS = [f.name for f in fields(ChatTemplate)]
SHIPPED = ("alpaca", "chat")


def load_template(name_or_path: str) -> ChatTemplate:
    """A shipped template by name (``alpaca``, ``chat``) or a user's TOML file."""
    if name_or_path in SHIPPED:
        text = resources.files("llamaforge.finetune") / "templates" / f"{name_or_path}.toml"
        source, raw = f"template {name_or_path}", text.read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"template {name_or_path!r} is neither a shipped template ({', '.join(SHIPPED)}) "
                "nor a TOML file"
            )
        source = str(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read template {path}: {error}") from None
    try:
        table = tomllib.loads(raw)
    except ValueError as error:  # TOMLDecodeError, or an integer past Python's digit limit
        raise ConfigError(f"{source} is not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{source} is not valid TOML: nested too deeply") from None
    unknown = sorted(set(table) - set(_FIELDS))
    missing = [f for f in ("user", "assistant") if f not in table]
    if unknown or missing:
        raise ConfigError(
            f"{source}: unknown field(s) {unknown} / missing {missing}; fields: {', '.join(_FIELDS)}"
        )
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{source}: field {key!r} must be a string")
    table.setdefault("name", Path(name_or_path).stem)
    for key in ("system", "assistant_end", "default_system"):
        table.setdefault(key, "")
    try:
        return ChatTemplate(**table)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
