"""The brace grammar of chat-template fields, and its rendering as text and as Jinja.

Every template field is trained on (or shown to the model as its prompt), so
text in braces that the renderer does not substitute would end up in the
training data as the literal characters ``{content}``. The grammar therefore
refuses, when a template loads, anything in braces that is not a placeholder
its field documents (decided 2026-12-04 after a red-team pass):

* **Placeholders per field** (:data:`FIELD_PLACEHOLDERS`): ``system`` and
  ``user`` take ``{content}``; ``user_with_input`` takes ``{content}`` and
  ``{input}``; ``assistant``, ``assistant_end``, ``default_system`` and
  ``default_system_with_input`` take none (the defaults *are* the system
  message's content, filled into ``system``). A field that takes a placeholder
  must contain it, exactly once (``system`` and ``user_with_input`` may
  instead be ``""``: no such turn).
* **A literal brace is doubled**, as in :meth:`str.format`: ``{{`` is ``{`` and
  ``}}`` is ``}``, in every field (the defaults too, so one rule holds for the
  whole file). ``"{{content}}"`` is therefore the text ``{content}``.
* Anything else is a :class:`~llamaforge.errors.ConfigError` naming the field:
  an unknown name (``{instruction}``), a placeholder the field does not take
  (``{content}`` in ``assistant_end``), a conversion or format spec
  (``{content!r}``, ``{content:>9}``), an empty ``{}`` or a lone ``{`` / ``}``.
* Substitution is one pass over the parsed field: braces inside a *message*
  are never read as placeholders and need no escaping.
"""

from __future__ import annotations

import json
from functools import lru_cache
from string import Formatter

from llamaforge.errors import ConfigError

FIELD_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "system": ("content",),
    "user": ("content",),
    "user_with_input": ("content", "input"),
    "assistant": (),
    "assistant_end": (),
    "default_system": (),
    "default_system_with_input": (),
}
# Fields that may be "" (no such turn / no default); "user" always needs its {content}.
OPTIONAL_FIELDS = ("system", "user_with_input", "assistant_end", "default_system",
                   "default_system_with_input")  # fmt: skip

# (literal text, None) or ("", placeholder name)
Part = tuple[str, str | None]


@lru_cache(maxsize=512)
def parse(fmt: str) -> tuple[Part, ...]:
    """``fmt`` as literal runs (doubled braces undone) and placeholder names.

    Raises ValueError on a lone brace, a conversion or a format spec; names
    are checked against a field by :func:`check_field`.
    """
    parts: list[Part] = []
    for literal, name, spec, conversion in Formatter().parse(fmt):
        if literal:
            parts.append((literal, None))
        if name is None:
            continue
        if spec or conversion:
            tail = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(
                f"{{{name}{tail}}} has a conversion or format spec, which templates do not take"
            )
        parts.append(("", name))
    return tuple(parts)


def check_field(field: str, fmt: str) -> None:
    """Raise ConfigError unless ``fmt`` uses exactly the placeholders ``field`` documents."""
    allowed = FIELD_PLACEHOLDERS[field]
    takes = " and ".join(f"{{{n}}}" for n in allowed) if allowed else "no placeholder"
    hint = "write a literal brace doubled ({{ or }})"
    try:
        parts = parse(fmt)
    except ValueError as error:
        raise ConfigError(f"field {field!r}: {error}; {hint}") from None
    names = [name for _, name in parts if name is not None]
    for name in names:
        if name in allowed:
            continue
        shown = f"{{{name}}}"
        if name in ("content", "input"):
            problem = f"has {shown}, which it does not take (it takes {takes})"
            if name == "input" and field == "user":
                problem += "; a turn with an input is the 'user_with_input' field"
        else:
            problem = f"has an unknown placeholder {shown} (it takes {takes})"
        raise ConfigError(
            f"field {field!r} {problem}; remove it, or double the braces ({{{{{name}}}}}) "
            "for the literal text"
        )
    if not fmt and field in OPTIONAL_FIELDS:
        return
    for name in allowed:
        count = names.count(name)
        if count != 1:
            raise ConfigError(
                f"field {field!r} must contain {{{name}}} exactly once, found {count}"
                + (' (or be "")' if field in OPTIONAL_FIELDS else "")
            )


def literal(fmt: str) -> str:
    """The text of a field that takes no placeholder (doubled braces undone)."""
    return "".join(text for text, _ in parse(fmt))


def literal_before(fmt: str, name: str) -> str:
    """The literal text of ``fmt`` before its first ``{name}`` (all of it if there is none)."""
    out = []
    for text, placeholder in parse(fmt):
        if placeholder == name:
            break
        out.append(text)
    return "".join(out)


def fill(fmt: str, content: str, input_text: str = "") -> str:
    """``fmt`` with its placeholders replaced by the values, in one pass."""
    values = {"content": content, "input": input_text}
    return "".join(text if name is None else values[name] for text, name in parse(fmt))


def jinja_literal(text: str) -> str:
    """A Jinja expression printing ``text`` verbatim (braces in a string literal are inert)."""
    # Jinja string literals are Python-escaped; json.dumps' escapes are a subset.
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def jinja_format(fmt: str, content: str, input_expr: str = "''") -> str:
    """Jinja printing what :func:`fill` gives, the placeholders as Jinja expressions."""
    exprs = {"content": content, "input": input_expr}
    out = []
    for text, name in parse(fmt):
        out.append(jinja_literal(text) if name is None else "{{ " + exprs[name] + " }}")
    return "".join(out)
