"""OpenAI's ``"weight": 0``: the turn is in the ids (with its EOS) but gets no loss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llamaforge.finetune.data import read_conversations
from llamaforge.finetune.examples import build_examples
from llamaforge.finetune.templates import encode_segments, load_template
from llamaforge.train.batches import IGNORE

TURNS = [
    ("give tips", "the cat sat"),
    ("write code", "reverse string"),
    ("the dog", "ran far away"),
]


def record(weights: list) -> dict:
    messages = []
    for (user, answer), weight in zip(TURNS, weights, strict=True):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        if weight is not None:
            messages[-1]["weight"] = weight
    return {"messages": messages}


def scored_text(tokenizer, example) -> list[str]:
    """The scored targets, as text, split at each scored EOS."""
    pieces, current = [], []
    for target in example.targets:
        if target == IGNORE:
            continue
        if target == tokenizer.eos_id:
            pieces.append(tokenizer.decode(current))
            current = []
        else:
            current.append(int(target))
    return pieces


@pytest.mark.parametrize("name", ["alpaca", "chat"])
def test_a_weight_zero_turn_gets_no_loss_and_the_others_do(tmp_path, tokenizer, name) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps(record([1, 0, None])) + "\n", encoding="utf-8")
    conversations, _ = read_conversations(str(path))
    template = load_template(name)
    (weighted,), _ = build_examples(tokenizer, template, conversations, 512)
    (plain,), _ = build_examples(tokenizer, template, [_unweighted(conversations[0])], 512)
    assert np.array_equal(weighted.inputs, plain.inputs)  # same ids: the turn is still context
    assert scored_text(tokenizer, plain) == ["the cat sat", "reverse string", "ran far away"]
    assert scored_text(tokenizer, weighted) == ["the cat sat", "ran far away"]
    # targets[k] is ids[k + 1] = inputs[k + 1]: the target positions of the first two EOS
    eos_targets = np.flatnonzero(plain.inputs[1:] == tokenizer.eos_id)
    assert len(eos_targets) == 2
    second_eos = eos_targets[1]
    assert plain.targets[second_eos] == tokenizer.eos_id
    assert weighted.targets[second_eos] == IGNORE and plain.targets[second_eos] == tokenizer.eos_id
    # train_on_prompt scores the prompt too, but the weight-0 answer stays context
    (everything,), _ = build_examples(tokenizer, template, conversations, 512, train_on_prompt=True)
    scored = everything.targets != IGNORE
    not_scored = np.flatnonzero(~scored)
    assert not_scored.size and np.array_equal(not_scored, _span_of_second_answer(weighted, plain))


def _unweighted(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def _span_of_second_answer(weighted, plain) -> np.ndarray:
    """Target positions scored without the weight and not with it: the weight-0 answer + EOS."""
    return np.flatnonzero((plain.targets != IGNORE) & (weighted.targets == IGNORE))


def test_encode_segments_marks_an_unscored_response(tokenizer) -> None:
    t = load_template("chat")
    messages = record([0, 1, 1])["messages"]
    segments = t.render(messages)
    assert [s.scored for s in segments if s.trainable] == [False, True, True]
    ids, scored = encode_segments(tokenizer, segments)
    plain_ids, plain_scored = encode_segments(tokenizer, t.render(_unweighted(messages)))
    assert ids == plain_ids
    first_eos = ids.index(tokenizer.eos_id)
    assert not any(scored[: first_eos + 1]) and any(plain_scored[: first_eos + 1])
    assert scored[first_eos + 1 :] == plain_scored[first_eos + 1 :]
