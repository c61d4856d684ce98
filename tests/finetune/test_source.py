"""Examples: the length rule is counted; packed and unpacked batches give the same losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llamaforge.errors import DataError
from llamaforge.finetune.examples import Example, build_examples
from llamaforge.finetune.source import FinetuneLoader
from llamaforge.finetune.templates import load_template
from llamaforge.model import ModelConfig, build_model
from llamaforge.train.batches import IGNORE


def conversation(words: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": words}, {"role": "assistant", "content": answer}]


def test_response_only_targets_and_the_length_rule(tokenizer) -> None:
    template = load_template("chat")
    convs = [
        conversation("give tips", "the cat sat on the mat"),
        conversation("write code " * 40, "a"),
    ]
    examples, counts = build_examples(tokenizer, template, convs, max_seq_len=64)
    assert counts == {"examples": 1, "dropped_no_response_left": 1}  # its response was cut off
    scored = examples[0].targets[examples[0].targets != IGNORE].tolist()
    assert (
        tokenizer.decode(scored[:-1]) == "the cat sat on the mat" and scored[-1] == tokenizer.eos_id
    )
    long = [conversation("give tips", "the cat sat on the mat and ran far away from home " * 3)]
    kept, counts = build_examples(tokenizer, template, long, max_seq_len=40)
    assert counts == {"examples": 1, "truncated": 1} and len(kept[0]) == 40
    dropped, counts = build_examples(tokenizer, template, long, max_seq_len=40, overlong="drop")
    assert (dropped, counts) == ([], {"examples": 0, "dropped_too_long": 1})
    everything, _ = build_examples(tokenizer, template, convs[:1], 64, train_on_prompt=True)
    assert (everything[0].targets != IGNORE).all()


def random_examples(n: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(3, 12))
        ids = rng.integers(3, 40, size=length + 1)
        targets = ids[1:].copy()
        targets[: int(rng.integers(0, length))] = IGNORE
        out.append(Example(ids[:-1], targets))
    return out


def per_example_losses(model, loader, examples, n_batches) -> dict[int, float]:
    """Sum of token losses per example id, recovered from the batches by matching inputs."""
    losses: dict[int, float] = {}
    by_inputs = {tuple(e.inputs.tolist()): i for i, e in enumerate(examples)}
    for _ in range(n_batches):
        inputs, targets, *docs = loader.next_batch()
        with torch.no_grad():
            logits = model(inputs, documents=docs[0]) if docs else model(inputs)
        token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                reduction="none").view(targets.shape)  # fmt: skip
        for r in range(inputs.shape[0]):
            ids = docs[0][r] if docs else torch.zeros(inputs.shape[1], dtype=torch.long)
            for d in ids.unique().tolist():
                where = (ids == d).nonzero().flatten()
                key = tuple(inputs[r, where].tolist())
                if not docs:  # unpacked: strip the right padding
                    key = next((k for k in by_inputs if key[: len(k)] == k and
                                (targets[r, len(k):] == IGNORE).all()), None)  # fmt: skip
                if key in by_inputs:
                    losses[by_inputs[key]] = float(token[r, where].sum())
    return losses


def test_packed_and_unpacked_batches_give_the_same_per_example_losses() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, vocab_size=40, multiple_of=16, max_seq_len=32)
    model = build_model(cfg).eval()
    examples = random_examples(24)
    packed = FinetuneLoader(examples, seq_len=32, batch_size=4, packing=True, seed=1)
    unpacked = FinetuneLoader(examples, seq_len=32, batch_size=4, packing=False, seed=1)
    a = per_example_losses(model, packed, examples, packed.steps_for_epochs(1))
    b = per_example_losses(model, unpacked, examples, unpacked.steps_for_epochs(1))
    assert set(a) == set(b) == set(range(24))  # one epoch covers every example
    for i in a:
        assert a[i] == pytest.approx(b[i], rel=1e-4, abs=1e-5)
    assert packed.steps_for_epochs(1) < unpacked.steps_for_epochs(1)  # packing saves rows


@pytest.mark.parametrize("packing", [True, False])
def test_loader_state_resumes_exactly_and_splits_ranks(packing) -> None:
    examples = random_examples(30, seed=2)
    loader = FinetuneLoader(examples, seq_len=32, batch_size=2, packing=packing, seed=5)
    for _ in range(7):  # into the second epoch
        loader.next_batch()
    state = loader.state_dict()
    expected = [loader.next_batch() for _ in range(3)]
    again = FinetuneLoader(examples, seq_len=32, batch_size=2, packing=packing, seed=5)
    again.load_state_dict(state)
    for want, got in zip(expected, (again.next_batch() for _ in range(3)), strict=True):
        assert all(torch.equal(w, g) for w, g in zip(want, got, strict=True))
    # Two data-parallel ranks read disjoint halves of the same global batch.
    whole = FinetuneLoader(examples, seq_len=32, batch_size=4, packing=packing, seed=5)
    ranks = [FinetuneLoader(examples, seq_len=32, batch_size=2, packing=packing, seed=5,
                            rank=r, world_size=2) for r in range(2)]  # fmt: skip
    full = whole.next_batch()[1]
    halves = [r.next_batch()[1] for r in ranks]
    if packing:
        assert torch.equal(torch.cat(halves), full)
    with pytest.raises(Exception, match="same data"):
        FinetuneLoader(
            examples[:-1], seq_len=32, batch_size=2, packing=packing, seed=5
        ).load_state_dict(state)


def test_validation_pass_fills_the_last_batch_with_ignored_rows() -> None:
    examples = random_examples(5, seed=3)
    val = FinetuneLoader(examples, seq_len=32, batch_size=4, packing=False, split="val")
    batches = list(val)
    assert len(batches) == 2 and (batches[1][1][1:] == IGNORE).all()
    scored = sum(int((b[1] != IGNORE).sum()) for b in batches)
    assert scored == sum(int((e.targets != IGNORE).sum()) for e in examples)


def test_resume_over_edited_data_is_refused() -> None:
    """Same seed, layout and number of examples, other examples: not the run that was saved."""
    first = FinetuneLoader(random_examples(12, seed=0), 64, 2)
    first.next_batch()
    state = first.state_dict()
    same = FinetuneLoader(random_examples(12, seed=0), 64, 2)
    same.load_state_dict(state)
    assert same.rows_taken == first.rows_taken
    edited = FinetuneLoader(random_examples(12, seed=1), 64, 2)
    with pytest.raises(DataError, match="fingerprint"):
        edited.load_state_dict(state)
    older = {k: v for k, v in state.items() if k != "fingerprint"}  # checkpoints before it
    edited.load_state_dict(older)
