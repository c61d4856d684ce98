"""Prompt templates as data: how a conversation becomes training text and ids.

A template is a TOML file (``llamaforge/finetune/templates/{alpaca,chat}.toml``
ship; a user passes a path to their own) with up to seven format strings.
Their grammar is :mod:`llamaforge.finetune.template_text`: each field takes
only the placeholders it documents (``{content}``, and ``{input}`` in
``user_with_input``), a literal brace is doubled as in ``str.format``, and
anything else in braces is refused when the template loads (it would be
trained on as literal text). Braces inside messages need no escaping.

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
* **Weight** (OpenAI's fine-tuning format): an assistant message may carry
  ``"weight": 0`` (context: rendered, followed by its EOS, never scored) or
  ``1`` (scored, as when absent); ``null`` is absent. Any other value, or a
  weight on another role, is an error. A weight-0 turn stays unscored even
  with ``train_on_prompt``: the record's explicit "do not train" wins over the
  global switch.
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
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.encoding import Segment as Segment
from llamaforge.finetune.encoding import encode_segments as encode_segments
from llamaforge.finetune.template_text import (
    FIELD_PLACEHOLDERS,
    check_field,
    fill,
    jinja_format,
    jinja_literal,
    literal,
)

ROLES = ("system", "user", "assistant")
# The SentencePiece control pieces' spellings: text, never written by a template (see __post_init__).
SPECIAL_TOKEN_TEXT = ("<s>", "</s>", "<unk>")
_TEXT_FIELDS = tuple(FIELD_PLACEHOLDERS)


@dataclass(frozen=True)
class ChatTemplate:
    """The text around each turn; the placeholders each field takes are in :mod:`.template_text`."""

    name: str
    system: str  # a system turn, with {content} once; "" if the template has none
    user: str  # a user turn, with {content} once
    assistant: str  # the prompt-side prefix of an assistant turn; no placeholder
    assistant_end: str  # text after a response, before its EOS; no placeholder
    default_system: str  # system content when the messages have none; "" = none; no placeholder
    user_with_input: str = ""  # a user turn with an "input" (Alpaca): {content} and {input} once
    default_system_with_input: str = ""  # default system when a user turn has an input

    def __post_init__(self) -> None:
        """Refuse a template that would drop text, train on literal placeholders or
        disagree with its Hugging Face export."""
        where = f"template {self.name!r}"
        for field_name in _TEXT_FIELDS:
            try:
                check_field(field_name, getattr(self, field_name))
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
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
            return literal(self.default_system_with_input)
        return literal(self.default_system) or None

    def system_text(self, messages: list[dict]) -> str | None:
        """The system message ``messages`` are shown with: their own, the default, or None."""
        has_input = any(m.get("input") for m in messages if m.get("role") == "user")
        return self._system_text(messages, has_input)

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
            out.append(Segment(fill(self.system, system), False))
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "user":
                input_text = message.get("input") or ""
                if input_text and not self.user_with_input:
                    raise DataError(f"template {self.name!r} cannot show an 'input' field")
                fmt = self.user_with_input if input_text else self.user
                out.append(Segment(fill(fmt, content, input_text), False))
            elif role == "assistant":
                out.append(Segment(literal(self.assistant), False))
                scored = message.get("weight") != 0
                out.append(Segment(content + literal(self.assistant_end), True, scored))
        if add_generation_prompt:
            out.append(Segment(literal(self.assistant), False))
        return [s for s in out if s.text or s.trainable]

    def to_jinja(self, bos_token: str, eos_token: str) -> str:
        """A Hugging Face ``chat_template`` rendering exactly :meth:`render`'s text.

        ``bos_token`` / ``eos_token`` are not baked in: the template uses the
        variables transformers passes; the arguments only document the contract
        (and are checked to be non-empty).
        """
        if not bos_token or not eos_token:
            raise ValueError("to_jinja needs the tokenizer's BOS and EOS strings")
        lit = jinja_literal
        default = ""
        if self.default_system:
            text = literal(self.default_system)
            default = "{% set sys = " + json.dumps(text, ensure_ascii=False) + " %}"
        with_input = ""
        if self.default_system_with_input:
            with_input = (
                "{% if ns.has_input %}{% set sys = "
                + json.dumps(literal(self.default_system_with_input), ensure_ascii=False)
                + " %}{% endif %}"
            )
        system_turn = (
            "{% if sys is not none %}" + jinja_format(self.system, "sys") + "{% endif %}"
            if self.system
            else "{% if sys is not none %}{{ raise_exception('this template has no system turn') }}"
            "{% endif %}"
        )
        user_turn = jinja_format(self.user, "message['content']")
        if self.user_with_input:
            user_turn = (
                "{% if message['input'] is defined and message['input'] %}"
                + jinja_format(self.user_with_input, "message['content']", "message['input']")
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
            + lit(literal(self.assistant))
            + "{{ message['content'] }}"
            + lit(literal(self.assistant_end))
            + "{{ eos_token }}"
            "{% else %}{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
            "{% endfor %}"
            "{% if add_generation_prompt %}" + lit(literal(self.assistant)) + "{% endif %}"
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
        if content is None and "content" in message:
            raise DataError(f"messages[{index}] ({role}): 'content' is null; give it a string")
        if not isinstance(content, str):
            raise DataError(f"messages[{index}] ({role}) has no string 'content'")
        weight = message.get("weight")
        if weight is not None and role != "assistant":
            raise DataError(
                f"messages[{index}] ({role}) has a 'weight'; only assistant turns take one "
                "(0 = context only, 1 = trained on)"
            )
        if weight is not None and (type(weight) is not int or weight not in (0, 1)):
            raise DataError(
                f"messages[{index}]: 'weight' must be 0 (context only) or 1 (trained on), "
                f"got {weight!r}"
            )
        if role == "system" and index != 0:
            raise DataError(f"messages[{index}]: a system message may only come first")
        if role == "assistant" and previous != "user":
            raise DataError(f"messages[{index}]: an assistant turn must follow a user turn")
        previous = role


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
