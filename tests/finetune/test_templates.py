"""Templates render Stanford Alpaca's text, match their Jinja export, and mask responses."""

from __future__ import annotations

import re

import jinja2.sandbox
import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.templates import Segment, encode_segments, load_template

ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def text_of(segments: list[Segment]) -> str:
    return "".join(s.text + ("</s>" if s.trainable else "") for s in segments)


def jinja(template, messages, add_generation_prompt=False) -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    return env.from_string(template.to_jinja("<s>", "</s>")).render(
        messages=messages, bos_token="<s>", eos_token="</s>",
        add_generation_prompt=add_generation_prompt, raise_exception=raise_exception,
    )  # fmt: skip


def test_alpaca_renders_stanford_prompts_with_and_without_input() -> None:
    t = load_template("alpaca")
    plain = t.render(
        [{"role": "user", "content": "Add {x}."}, {"role": "assistant", "content": "ok"}]
    )
    assert plain[-1] == Segment("ok", True) and not any(s.trainable for s in plain[:-1])
    assert text_of(plain) == ALPACA_NO_INPUT.format(instruction="Add {x}.") + "ok</s>"
    with_input = t.render(
        [{"role": "user", "content": "Sum", "input": "1 2"}, {"role": "assistant", "content": "3"}]
    )
    assert text_of(with_input) == ALPACA_INPUT.format(instruction="Sum", input="1 2") + "3</s>"


CONVERSATIONS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    [
        {"role": "system", "content": 'Be "brief" \\ {content} {% raw %} 漢字 😀'},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
        {"role": "assistant", "content": "e"},
    ],
    [{"role": "user", "content": "q", "input": "ctx"}, {"role": "assistant", "content": "r"}],
]


@pytest.mark.parametrize("name", ["alpaca", "chat"])
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("generation", [False, True])
def test_jinja_export_renders_the_same_text(name, index, generation) -> None:
    template = load_template(name)
    messages = CONVERSATIONS[index]
    if name == "chat" and any("input" in m for m in messages):
        with pytest.raises(DataError, match="input"):
            template.render(messages)
        return
    expected = "<s>" + text_of(template.render(messages, add_generation_prompt=generation))
    assert jinja(template, messages, generation) == expected


def test_bad_messages_are_errors() -> None:
    t = load_template("chat")
    for messages, match in [
        ([{"role": "bot", "content": "x"}], "unknown role"),
        ([{"role": "assistant", "content": "x"}], "must follow a user"),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"}], "only come first"),
        ([{"role": "user"}], "content"),
        ([], "non-empty"),
    ]:
        with pytest.raises(DataError, match=match):
            t.render(messages)


def test_user_template_file_and_its_errors(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('user = "Q: {content}\\n"\nassistant = "A:\\n"\n', encoding="utf-8")
    t = load_template(str(path))
    assert t.name == "mine"
    msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    assert text_of(t.render(msgs)) == "Q: x\nA:\ny</s>"
    path.write_text('user = "no placeholder"\nassistant = "A"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="content"):
        load_template(str(path))
    path.write_text('user = "{content}"\nassistant = "A"\ncolour = "red"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="colour"):
        load_template(str(path))
    with pytest.raises(ConfigError, match="neither"):
        load_template(str(tmp_path / "missing.toml"))
    refused = {  # each would lose text, or disagree with the Hugging Face export
        'user_with_input = "U: {content}\\n"': "user_with_input",  # the input would vanish
        'default_system = "Be brief."': "system",  # no system turn to show it in
        'assistant_end = " </s>"': "</s>",  # read as the EOS token by transformers
        'system = "<s>[INST] {content}"': "<s>",
    }
    path.write_text("user = " + "[" * 100_000, encoding="utf-8")  # RecursionError in tomllib
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_template(str(path))
    path.write_text("n = " + "9" * 5000 + "\n", encoding="utf-8")  # ValueError: digit limit
    with pytest.raises(ConfigError, match=r"mine\.toml is not valid TOML.*digits"):
        load_template(str(path))
    for line, message in refused.items():
        path.write_text(f'user = "{{content}}"\nassistant = "A"\n{line}\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_template(str(path))


def test_a_record_the_template_cannot_show_names_its_line_or_is_counted(tokenizer) -> None:
    from llamaforge.finetune.examples import build_examples

    chat = load_template("chat")  # has no place for an Alpaca "input"
    ok = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    bad = [{"role": "user", "content": "x", "input": "ctx"}, {"role": "assistant", "content": "y"}]
    with pytest.raises(DataError, match=r"d\.jsonl:7: .*input.*skip_bad_examples"):
        build_examples(tokenizer, chat, [ok, bad], 64, where=["d.jsonl:3", "d.jsonl:7"])
    examples, counts = build_examples(tokenizer, chat, [ok, bad], 64, skip_bad=True)
    assert len(examples) == 1 and counts["not_in_template"] == 1


def test_encode_segments_marks_responses_and_eos(tokenizer) -> None:
    t = load_template("alpaca")
    msgs = [
        {"role": "user", "content": "give tips"},
        {"role": "assistant", "content": "the cat sat"},
        {"role": "user", "content": "write code"},
        {"role": "assistant", "content": "reverse string"},
    ]
    ids, trainable = encode_segments(tokenizer, t.render(msgs))
    assert ids[0] == tokenizer.bos_id and not trainable[0]
    eos_at = [i for i, x in enumerate(ids) if x == tokenizer.eos_id]
    assert len(eos_at) == 2 and all(trainable[i] for i in eos_at) and eos_at[-1] == len(ids) - 1
    # The scored ids spell exactly the two responses.
    first = [x for x, m in zip(ids[: eos_at[0]], trainable[: eos_at[0]], strict=True) if m]
    second = [
        x for x, m in zip(ids[eos_at[0] + 1 : -1], trainable[eos_at[0] + 1 : -1], strict=True) if m
    ]
    assert tokenizer.decode(first) == "the cat sat"
    assert tokenizer.decode(second) == "reverse string"
    # Ids are those of the whole text between special tokens (what an HF tokenizer produces).
    chunk = "".join(s.text for s in t.render(msgs[:2]))
    assert ids[1 : eos_at[0]] == tokenizer.encode(chunk, bos=False)
