"""``llamaforge chat``: the KV cache is kept across turns and only new tokens are fed."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
import torch

from llamaforge.cli import main
from llamaforge.errors import ConfigError
from llamaforge.finetune.templates import encode_segments, load_template
from llamaforge.formats import save_any
from llamaforge.inference import SamplingConfig, completion_text, generate_ids
from llamaforge.inference.chat import ChatSession, chat_loop
from llamaforge.model import build_model

GREEDY = SamplingConfig(max_new_tokens=6)
TEMPLATE = load_template("chat")


@pytest.fixture
def model(model_config):
    """The conftest's random model with room for several turns (its own has 64 positions)."""
    torch.manual_seed(0)
    return build_model(dataclasses.replace(model_config, max_seq_len=256)).eval()


@pytest.fixture
def short_model(model_config):
    torch.manual_seed(0)
    return build_model(model_config).eval()


class FedTokens:
    """Records the ids of every forward call (a hook on the embedding sees exactly them)."""

    def __init__(self, model) -> None:
        self.calls: list[list[int]] = []
        model.tok_embeddings.register_forward_hook(
            lambda _m, inputs, _out: self.calls.append(inputs[0][0].tolist())
        )

    def take(self) -> list[list[int]]:
        calls, self.calls = self.calls, []
        return calls


def turn_text(user: str) -> str:
    return f"<|user|>\n{user}\n<|assistant|>\n"


def fresh_answer(model, tokenizer, prompt: list[int], cfg: SamplingConfig = GREEDY) -> list[int]:
    """The answer of a new cache on the whole history (no state shared with the session)."""
    return generate_ids(model, [prompt], cfg, tokenizer.eos_id)[0]


def test_each_turn_feeds_only_its_new_tokens_and_matches_a_fresh_generation(model, tokenizer):
    fed = FedTokens(model)
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY)
    users = ["the cat sat", "a dog ran far", "birds sang"]
    for turn, user in enumerate(users):
        pending = list(session.pending)
        fed.take()  # drop the calls of the previous fresh generation
        text = "".join(session.send(user))
        calls = fed.take()
        head = [tokenizer.bos_id] if turn == 0 else pending
        assert calls[0] == head + tokenizer.encode(turn_text(user), bos=False)
        assert all(len(c) == 1 for c in calls[1:])
        prompt = session.fed[: len(session.fed) - len(calls) + 1]
        assert sum(map(len, calls)) == len(session.fed) - len(prompt) + len(calls[0])
        answer = session.history[len(prompt) : -1]
        assert session.history[-1] == tokenizer.eos_id
        assert answer == fresh_answer(model, tokenizer, prompt), turn
        assert text == completion_text(tokenizer, prompt, answer)
        assert len(answer) == GREEDY.max_new_tokens  # a random model never says EOS here
    assert session.cache.filled == len(session.fed)
    assert session.history.count(tokenizer.eos_id) == len(users)
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 3


def test_history_is_what_training_would_encode(model, tokenizer):
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY, system="be brief")
    for user in ("the cat sat", "a dog ran"):
        "".join(session.send(user))
    # Answers re-encoded from their text: equal to the sampled ids when those are canonical.
    ids, _ = encode_segments(tokenizer, TEMPLATE.render(session.messages))
    rendered = tokenizer.encode("<|system|>\nbe brief\n" + turn_text("the cat sat"), bos=True)
    assert session.history[: len(rendered)] == rendered == ids[: len(rendered)]


def test_a_stop_string_rewinds_the_cache_to_what_was_shown(model, tokenizer):
    free = ChatSession(model, tokenizer, TEMPLATE, SamplingConfig(max_new_tokens=12))
    shown = "".join(free.send("the cat sat"))
    stop = shown[5:8]
    assert stop and shown.index(stop) == 5
    session = ChatSession(model, tokenizer, TEMPLATE, SamplingConfig(max_new_tokens=12, stop=stop))
    text = "".join(session.send("the cat sat"))
    assert text == shown[:5]
    assert session.cache.filled == len(session.fed)
    reply = session.messages[-1]["content"]
    assert shown.startswith(reply) and len(reply) <= 5
    prompt_len = len(tokenizer.encode(turn_text("the cat sat")))
    kept = session.history[prompt_len:-1]
    assert completion_text(tokenizer, session.history[:prompt_len], kept) == reply
    fed = FedTokens(model)
    "".join(session.send("a dog"))  # the next turn continues from the rewound cache
    calls = fed.take()
    prompt = session.fed[: len(session.fed) - len(calls) + 1]
    assert session.history[len(prompt) : -1] == fresh_answer(
        model, tokenizer, prompt, SamplingConfig(max_new_tokens=12)
    )


def test_context_overflow_drops_the_oldest_turns_and_rereads_the_rest(short_model, tokenizer):
    model, notices = short_model, []
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY)  # max_seq_len 64
    users = ["the cat sat on the mat", "a dog ran far away", "birds sang", "blue sky"]
    fed = FedTokens(model)
    for user in users:
        before, count = list(session.messages), len(notices)
        fed.take()
        "".join(session.send(user, notices.append))
        calls = fed.take()
        assert len(session.history) <= 64
        if len(notices) > count:  # re-read after dropping turns
            assert "dropped the" in notices[-1]
            kept = session.messages[:-1]
            assert kept[-1]["content"] == user and len(kept) < len(before) + 1
            assert kept[:-1] == before[len(before) - len(kept) + 1 :]
            expected = encode_segments(tokenizer, TEMPLATE.render(kept, add_generation_prompt=True))
            assert calls[0] == expected[0]
            prompt = session.fed[: len(calls[0])]
            assert session.history[len(prompt) : -1] == fresh_answer(model, tokenizer, prompt)
    assert any("dropped the" in n for n in notices)
    assert session.messages[0]["content"] != users[0]


def test_a_message_longer_than_the_context_is_refused(short_model, tokenizer):
    notices: list[str] = []
    session = ChatSession(short_model, tokenizer, TEMPLATE, GREEDY)
    assert "".join(session.send("the cat " * 40, notices.append)) == ""
    assert "too long" in notices[0] and session.history == [] and session.messages == []
    assert re.search(r"it takes \d+ of the 64 context positions", notices[0])


def test_a_system_prompt_that_fills_the_context_is_refused_naming_it(model, tokenizer):
    alpaca = load_template("alpaca")
    with pytest.raises(ConfigError, match=r"a 64-position context is too small: the default "
                       r"system prompt of template 'alpaca' uses \d+ positions .*--context"):  # fmt: skip
        ChatSession(model, tokenizer, alpaca, GREEDY, context=64)
    with pytest.raises(ConfigError, match=r"the --system message uses .* shorter --system"):
        ChatSession(model, tokenizer, TEMPLATE, GREEDY, system="the cat " * 40, context=64)
    notices: list[str] = []
    session = ChatSession(model, tokenizer, alpaca, GREEDY)  # the 256-position window holds it
    assert "".join(session.send("a", notices.append)) and not notices


def test_loop_reset_commands_and_eof(model, tokenizer):
    out = io.StringIO()
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY)
    assert chat_loop(session, io.StringIO("a dog ran\n\n/reset\nthe cat sat\n"), out) == 0
    alone = ChatSession(model, tokenizer, TEMPLATE, GREEDY)
    first = "".join(alone.send("a dog ran"))
    alone.reset()
    second = "".join(alone.send("the cat sat"))
    assert out.getvalue() == f"{first}\n[conversation cleared]\n{second}\n"
    assert session.messages == alone.messages


def test_a_line_that_is_not_utf8_is_refused_and_the_chat_goes_on(model, tokenizer):
    out = io.StringIO()
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY)
    # what sys.stdin reconfigured with errors="surrogateescape" gives for the bytes ff fe
    assert chat_loop(session, io.StringIO("\udcff\udcfe\nthe cat sat\n"), out) == 0
    alone = ChatSession(model, tokenizer, TEMPLATE, GREEDY)
    assert (
        out.getvalue()
        == "[that line is not UTF-8 text; nothing was sent]\n"
        + "".join(alone.send("the cat sat"))
        + "\n"
    )
    assert session.messages == alone.messages


def test_system_needs_a_template_with_a_system_turn(model, tokenizer, tmp_path):
    path = tmp_path / "bare.toml"
    path.write_text('user = "Q: {content}\\n"\nassistant = "A:"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="no system turn"):
        ChatSession(model, tokenizer, load_template(str(path)), GREEDY, system="hi")


def test_cli_uses_the_stored_template_and_streams(model, tokenizer, tmp_path, monkeypatch, capsys):
    folder = save_any(model, tmp_path / "ft", "native", tokenizer_path=tokenizer.path,
                      chat_template=TEMPLATE)  # fmt: skip
    plain = save_any(model, tmp_path / "plain", "native", tokenizer_path=tokenizer.path)
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat sat\na dog\n"))
    assert main(["chat", str(folder), "--temperature", "0", "--max-new-tokens", "6"]) == 0
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY)
    expected = "".join(session.send("the cat sat")) + "\n" + "".join(session.send("a dog")) + "\n"
    assert capsys.readouterr().out == expected
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    assert main(["chat", str(plain)]) == 2
    assert "pass --template" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat sat\n"))
    argv = ["chat", str(plain), "--template", "chat", "--temperature", "0", "--max-new-tokens", "6"]
    assert main(argv) == 0
    assert capsys.readouterr().out == expected.split("\n")[0] + "\n"

    # a Hugging Face export carries the template: chat finds it there too
    hf = save_any(
        model, tmp_path / "hf", "hf", tokenizer_path=tokenizer.path, chat_template=TEMPLATE
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat sat\na dog\n"))
    assert main(["chat", str(hf), "--temperature", "0", "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out == expected
    assert main(["chat", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_cache_the_machine_cannot_hold_is_refused_and_context_caps_it(model, tokenizer):
    huge = build_model(dataclasses.replace(model.config, max_seq_len=2**40), device="meta")
    with pytest.raises(ConfigError, match="--context"):
        ChatSession(huge, tokenizer, TEMPLATE, GREEDY)  # refused before anything is allocated
    session = ChatSession(model, tokenizer, TEMPLATE, GREEDY, context=32)
    assert session.max_len == 32
    with pytest.raises(ConfigError, match="between 16"):
        ChatSession(model, tokenizer, TEMPLATE, GREEDY, context=model.config.max_seq_len + 1)
