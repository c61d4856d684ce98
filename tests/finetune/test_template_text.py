"""Each template field takes only its placeholders; doubled braces are literal, here and in Jinja."""

from __future__ import annotations

import re

import jinja2.sandbox
import pytest

from llamaforge.errors import ConfigError
from llamaforge.finetune.templates import load_template
from llamaforge.inference.chat import user_marker

REFUSED = {  # the red-team's cases: each used to be rendered (and trained on) literally
    'assistant_end = "\\n{content}"': ("assistant_end", "{content}"),
    'assistant = "A({content}): "': ("assistant", "{content}"),
    'system = "S: {content}\\n"\ndefault_system = "{content}"': ("default_system", "{content}"),
    'user = "Q: {content} {instruction}"': ("user", "unknown placeholder {instruction}"),
    'user = "Q: {content} {input}"': ("user", "user_with_input"),
    'user_with_input = "{content} {inputs}"': ("user_with_input", "{inputs}"),
    'user = "{content}{content}"': ("user", "exactly once, found 2"),
    'user = "{content!r}"': ("user", "conversion or format spec"),
    'user = "{content:>9}"': ("user", "conversion or format spec"),
    'user = "{} {content}"': ("user", "unknown placeholder {}"),
    'user = "{content} }"': ("user", "Single '}'"),
    'assistant = "{"': ("assistant", "Single '{'"),
}


@pytest.mark.parametrize("line", sorted(REFUSED))
def test_a_brace_that_is_no_placeholder_of_its_field_is_refused(tmp_path, line) -> None:
    path = tmp_path / "mine.toml"
    body = line if line.startswith("user ") else f'user = "Q: {{content}}\\n"\n{line}'
    path.write_text(body + ('\nassistant = "A:"\n' if "assistant =" not in line else "\n"), "utf-8")
    field, message = REFUSED[line]
    with pytest.raises(ConfigError, match=rf"mine\.toml: .*field '{field}'.*{re.escape(message)}"):
        load_template(str(path))


BRACES = """
system = "[{content}] {{sys}}\\n"
default_system = "Reply in {{json}}."
user = "{{User}} {content}\\n"
user_with_input = "{{User}} {content} {{in}} {input}\\n"
assistant = "{{bot}}:\\n"
assistant_end = " }}"
"""


def jinja(template, messages, add_generation_prompt=False) -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    return env.from_string(template.to_jinja("<s>", "</s>")).render(
        messages=messages, bos_token="<s>", eos_token="</s>",
        add_generation_prompt=add_generation_prompt,
    )  # fmt: skip


def test_doubled_braces_are_literal_text_in_our_render_and_the_jinja_export(tmp_path) -> None:
    path = tmp_path / "braces.toml"
    path.write_text(BRACES, encoding="utf-8")
    template = load_template(str(path))
    messages = [
        {"role": "user", "content": "a {content} b", "input": "{x}"},
        {"role": "assistant", "content": "{{y}}"},
        {"role": "user", "content": "c"},
    ]
    text = "".join(
        s.text + ("</s>" if s.trainable else "") for s in template.render(messages, True)
    )
    assert text == (
        "[Reply in {json}.] {sys}\n{User} a {content} b {in} {x}\n{bot}:\n{{y}} }</s>"
        "{User} c\n{bot}:\n"
    )  # a message's own braces are never read as placeholders
    assert jinja(template, messages, True) == "<s>" + text
    assert user_marker(template) == "{User}"
