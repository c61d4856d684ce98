"""Templates stored in checkpoints: the brace syntax they were written in is read back."""

from __future__ import annotations

import dataclasses

import pytest

from llamaforge.errors import CheckpointError
from llamaforge.finetune.template_store import (
    SYNTAX_KEY,
    TEMPLATE_KEY,
    template_config,
    template_from_config,
)
from llamaforge.finetune.templates import ChatTemplate, load_template

MESSAGES = [
    {"role": "system", "content": "be {terse}"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "ok"},
]


def text(template: ChatTemplate) -> str:
    return "".join(segment.text for segment in template.render(MESSAGES))


def test_a_template_saved_now_round_trips_with_its_syntax():
    template = load_template("alpaca")
    stored = template_config(template)
    assert stored[SYNTAX_KEY] == 2
    assert template_from_config({TEMPLATE_KEY: stored}) == template


def test_a_template_stored_before_the_brace_grammar_renders_what_it_trained_on():
    """Then only {content}/{input} were substituted and every other brace was text."""
    old = {
        **{k: v for k, v in dataclasses.asdict(load_template("chat")).items()},
        "system": "{SYS} {content} {{x}}\n",  # literal braces, doubled ones included
        "user": "U{ser}: {content}\n",
        "assistant": "A{}: ",
    }
    template = template_from_config({TEMPLATE_KEY: old})  # no brace_syntax: the first one
    assert text(template).startswith("{SYS} be {terse} {{x}}\nU{ser}: hi\nA{}: ok")
    # Saved again, it keeps rendering the same text.
    again = template_from_config({TEMPLATE_KEY: template_config(template)})
    assert text(again) == text(template)


def test_an_unknown_brace_syntax_is_refused():
    stored = {**template_config(load_template("chat")), SYNTAX_KEY: 3}
    with pytest.raises(CheckpointError, match="brace_syntax"):
        template_from_config({TEMPLATE_KEY: stored})
