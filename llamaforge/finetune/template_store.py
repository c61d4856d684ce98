"""Which chat template a checkpoint was finetuned with, as stored in its ``config.json``.

A finetuned checkpoint records the whole template, not only its name,
under the top-level key ``"chat_template"`` (the fields of
:class:`~llamaforge.finetune.templates.ChatTemplate`): a user's own TOML
template may be gone or edited by the time the model is chatted with or
exported, and the model only works with the exact text it was trained on.
``llamaforge chat`` and the Hugging Face export (``tokenizer_config.json``
``chat_template``) read it from here.

For checkpoints that carry only a template name or path in their training
config (``"train": {"finetune": {"template": ...}}``), that is used instead.

**Brace syntax.** Since 2026-12-04 a field's braces follow
:mod:`~llamaforge.finetune.template_text` (a literal brace is doubled, only a
field's own placeholders are substituted), and a stored template says so with
``"brace_syntax": 2``. A template stored without it was written when only
``{content}`` and ``{input}`` were substituted and every other brace was text:
it is read by doubling every brace that is not one of the field's
placeholders, so it renders the same text it was trained on.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.finetune.template_text import FIELD_PLACEHOLDERS
from llamaforge.finetune.templates import ChatTemplate, load_template

TEMPLATE_KEY = "chat_template"
SYNTAX_KEY, SYNTAX = "brace_syntax", 2
_OLD_PLACEHOLDER = re.compile(r"(\{content\}|\{input\})")


def template_config(template: ChatTemplate) -> dict[str, Any]:
    """What to store under ``config.json`` ``"chat_template"`` (pass it as extra config)."""
    return {**dataclasses.asdict(template), SYNTAX_KEY: SYNTAX}


def _from_first_syntax(field: str, text: str) -> str:
    """A field written before the brace grammar, in it: the same rendered text."""
    keep = {f"{{{name}}}" for name in FIELD_PLACEHOLDERS.get(field, ())}
    return "".join(
        part if part in keep else part.replace("{", "{{").replace("}", "}}")
        for part in _OLD_PLACEHOLDER.split(text)
    )


def template_from_config(data: Any, source: str = "config.json") -> ChatTemplate | None:
    """The template a parsed ``config.json`` names, or None when it names none."""
    if not isinstance(data, Mapping):
        return None
    stored = data.get(TEMPLATE_KEY)
    if stored is not None:
        fields = {f.name for f in dataclasses.fields(ChatTemplate)}
        syntax = stored.get(SYNTAX_KEY, 1) if isinstance(stored, Mapping) else None
        stored = {k: v for k, v in stored.items() if k != SYNTAX_KEY} if syntax else stored
        if (
            not isinstance(stored, Mapping)
            or set(stored) - fields
            or not all(isinstance(v, str) for v in stored.values())
            or syntax not in (1, SYNTAX)
        ):
            raise CheckpointError(
                f"{source}: '{TEMPLATE_KEY}' must be a table of the template's string fields "
                f"({', '.join(sorted(fields))}) and '{SYNTAX_KEY}' = {SYNTAX} or none"
            )
        if syntax == 1:  # written before the brace grammar (module docstring)
            stored = {k: v if k == "name" else _from_first_syntax(k, v) for k, v in stored.items()}
        try:
            return ChatTemplate(**stored)
        except (TypeError, ConfigError) as error:
            raise CheckpointError(f"{source}: invalid '{TEMPLATE_KEY}' ({error})") from error
    train = data.get("train")
    finetune = train.get("finetune") if isinstance(train, Mapping) else None
    name = finetune.get("template") if isinstance(finetune, Mapping) else None
    if isinstance(name, str) and name:
        try:
            return load_template(name)
        except ConfigError as error:
            raise CheckpointError(
                f"{source}: its training config names template {name!r}, which cannot be "
                f"loaded ({error}); pass --template"
            ) from error
    return None


def template_from_folder(directory: str | os.PathLike) -> ChatTemplate | None:
    """The template stored in a native folder's ``config.json`` (None: none, or not native)."""
    from llamaforge.formats.native import CONFIG_NAME, read_json

    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        return None
    return template_from_config(read_json(path), str(path))
