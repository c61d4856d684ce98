"""Preamble sharing (three-level rows): same scores as the plain path, and packed only where it pays."""

import pytest
import torch

from llamaforge.eval.likelihood import score_token_sequences
from llamaforge.eval.shared_rows import (
    MIN_SHARED,
    _common,
    layout,
    plan_rows,
    row_width,
    split_units,
    tree_width,
    unit_row,
)
from tests.eval.toy import count_rows, tiny_transformer


def _rand(gen, n, vocab=50):
    return torch.randint(0, vocab, (n,), generator=gen).tolist()


def _mmlu_like(gen, preamble_len=40, subjects=2, questions=5):
    """Per subject one preamble; each question scored with 4 one-token letters and a long answer."""
    items = []
    for _ in range(subjects):
        preamble = _rand(gen, preamble_len)
        for _ in range(questions):
            question = preamble + _rand(gen, int(torch.randint(3, 9, (1,), generator=gen)))
            for letter in (11, 12, 13, 14):  # identical inputs: one plain input per question
                items.append((question + [letter], 1))
            items.append((question + _rand(gen, 4), 4))  # a second continuation: a group
    return items


def _assert_same_as_plain(model, items, max_seq_len, batch_size):
    shared = score_token_sequences(model, items, max_seq_len=max_seq_len, batch_size=batch_size)
    plain = score_token_sequences(
        model, items, max_seq_len=max_seq_len, batch_size=batch_size, prefix_sharing=False
    )
    assert [lp for lp, _ in shared] == pytest.approx([lp for lp, _ in plain], abs=1e-5)
    assert [g for _, g in shared] == [g for _, g in plain]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_preamble_rows_score_like_the_plain_path(batch_size):
    model = tiny_transformer(vocab_size=50, max_seq_len=96)
    items = _mmlu_like(torch.Generator().manual_seed(5))
    _assert_same_as_plain(model, items, 96, batch_size)


def test_a_preamble_runs_once_per_row():
    model = tiny_transformer(vocab_size=50, max_seq_len=96)
    items = _mmlu_like(torch.Generator().manual_seed(5), subjects=1, questions=4)
    shapes = count_rows(model)
    score_token_sequences(model, items, max_seq_len=96, batch_size=16)
    # Four questions below one 40-token preamble fit one 96-wide row: the preamble
    # once, each question's rest, its letters' input and its second continuation.
    assert len(shapes) == 1 and shapes[0][0] == 1
    tokens_per_question = sum(len(t) - 1 for t, n in items if n == 4) - 4 * 40
    assert shapes[0][1] < 40 + tokens_per_question + 4 * 4  # < 2 x preamble + rest


def test_context_equal_to_the_preamble_and_a_narrow_window():
    """A context that is the whole preamble (an empty own segment) and rows cut by the window."""
    gen = torch.Generator().manual_seed(9)
    preamble = _rand(gen, MIN_SHARED + 3)
    items = [(preamble + [5], 1), (preamble + [6, 7], 2)]
    items += [(preamble + _rand(gen, 6), k) for k in (1, 2, 3, 5)]
    model = tiny_transformer(vocab_size=50, max_seq_len=48)
    _assert_same_as_plain(model, items, 48, 4)


def test_layout_mask_is_the_ancestor_relation():
    row = [((1, 2), -1, None), ((3,), 0, None), ((4, 5), 1, [0]), ((6,), 0, [1])]
    tokens, positions, mask, scored, picks = layout([row, unit_row(((7,), [((8,), [2])]))], "cpu")
    assert tokens.tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 0, 0, 0, 0]]
    assert positions[0].tolist() == [0, 1, 2, 3, 4, 2]  # 6 continues the root, like 3
    assert mask.dtype == torch.float32 and set(mask.unique().tolist()) == {0.0, float("-inf")}
    mask = mask == 0
    allowed = mask[0, 0].int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0, 1],  # token 6 sees the root only, not its sibling's tokens
    ]
    padding = mask[1, 0].int().tolist()
    assert padding[1] == [1, 1, 0, 0, 0, 0] and padding[4] == [0, 0, 1, 1, 1, 0]
    assert scored == [(0, 3, 2), (0, 5, 1), (1, 1, 1)]  # (row, first column, length)
    assert picks == [([0, 1], [0]), ([2], [1]), ([3], [2])]  # offsets into the projected rows


def test_continuations_that_begin_alike_share_their_start():
    # Each input begins with the context's last token (9); two share "9 4 5".
    suffixes = [((9, 4, 5, 6), [0]), ((9, 4, 5, 7, 7), [1]), ((9, 3), [2]), ((9, 4, 5), [3])]
    row = unit_row(((1, 2), suffixes))
    assert row == [
        ((1, 2), -1, None),
        ((9,), 0, []),  # shared by all four, scored (it predicts their first tokens)
        ((3,), 1, [2]),
        ((4, 5), 1, [3]),  # where item 3's continuation ends, and 0's and 1's go on
        ((6,), 3, [0]),
        ((7, 7), 3, [1]),
    ]
    tokens, positions, mask, scored, picks = layout([row], "cpu")
    assert tokens[0].tolist() == [1, 2, 9, 3, 4, 5, 6, 7, 7]
    assert positions[0].tolist() == [0, 1, 2, 3, 3, 4, 5, 5, 6]
    allowed = (mask[0, 0] == 0).int()
    assert allowed[6].tolist() == [1, 1, 1, 0, 1, 1, 1, 0, 0]  # 6 sees 1 2 9 4 5, not 3
    assert allowed[8].tolist() == [1, 1, 1, 0, 1, 1, 0, 1, 1]  # the second 7 sees its own 7
    assert scored == [(0, 2, 1), (0, 3, 1), (0, 4, 2), (0, 6, 1), (0, 7, 2)]
    by_owner = {owners[0]: path for path, owners in picks}
    assert by_owner == {2: [0, 1], 3: [0, 2, 3], 0: [0, 2, 3, 4], 1: [0, 2, 3, 5, 6]}
    assert tree_width(suffixes) == 7 == sum(n for _, _, n in scored)


def test_a_chain_of_continuations_deeper_than_the_recursion_limit():
    chain = [(tuple(range(k)), [k]) for k in range(1, 3000)]
    row = unit_row(((5000,), chain))
    assert len(row) == 1 + 2999 and row_width(row) == 1 + 2999
    assert all(parent == k for k, (_, parent, _) in enumerate(row[1:]))


def test_sharing_only_where_the_cost_model_says_it_pays():
    dim, hidden = 256, 768

    def units(shared, rest, n):
        return [(tuple(range(shared)) + (1000 + i,) * rest, [((1,), [i])]) for i in range(n)]

    # A long preamble before short questions: packed, several contexts per row.
    rows, alone = plan_rows(units(200, 30, 6), 1024, dim, hidden)
    assert alone == [] and len(rows) < 6
    assert all(row[0][0] == tuple(range(200)) for row in rows)
    # PIQA-like: neighbours share fewer than MIN_SHARED tokens: nothing is packed.
    rows, alone = plan_rows(units(MIN_SHARED - 1, 60, 6), 1024, dim, hidden)
    assert rows == [] and sorted(alone) == list(range(6))
    # A shared start that is small next to what follows it: the wider rows' attention
    # would cost more than the matmuls saved.
    rows, alone = plan_rows(units(40, 900, 3), 4096, dim, hidden)
    assert rows == [] and sorted(alone) == list(range(3))
    # The window bounds a row: each row holds what fits.
    rows, _ = plan_rows(units(200, 30, 6), 270, dim, hidden)
    assert len(rows) == 3 and all(sum(len(t) for t, _, _ in r) <= 270 for r in rows)


def test_split_units_repeat_the_context_where_continuations_do_not_fit():
    units = split_units([((1, 2, 3), [((4, 4, 4), [0]), ((5,), [1]), ((6, 6), [2])])], 6)
    assert units == [((1, 2, 3), [((4, 4, 4), [0])]), ((1, 2, 3), [((5,), [1]), ((6, 6), [2])])]
    # Widths are the tree's: (4, 4, 8) adds one position to (4, 4, 4), so both fit.
    units = split_units([((1, 2, 3), [((4, 4, 4), [0]), ((4, 4, 8), [1]), ((6, 6), [2])])], 7)
    assert units == [
        ((1, 2, 3), [((4, 4, 4), [0]), ((4, 4, 8), [1])]),
        ((1, 2, 3), [((6, 6), [2])]),
    ]


@pytest.mark.parametrize(
    ("a", "b", "shared"),
    [((), (1,), 0), ((1, 2, 3), (1, 2, 3), 3), ((1, 2, 3), (1, 2), 2), ((1, 2, 3), (1, 5, 3), 1)],
)
def test_common_start(a, b, shared):
    assert _common(a, b) == _common(b, a) == shared


def test_mmlu_prompts_share_their_shots(real_tokenizer, monkeypatch):
    """The real MMLU prompt: questions of a subject pack below its shots, same numbers."""
    from llamaforge.eval import shared_rows
    from llamaforge.eval.likelihood import loglikelihood
    from llamaforge.eval.tasks.mmlu import LETTERS, build_prompt

    def doc(i, subject):
        choices = [f"the {i * k} cats" for k in range(1, 5)]
        return {"subject": subject, "question": f"question {i} is?", "choices": choices,
                "answer": i % 4}  # fmt: skip

    requests = []
    for subject in ("anatomy", "virology"):
        shots = [doc(100 + k, subject) for k in range(5)]
        for i in range(6):
            prompt = build_prompt(doc(i, subject), shots)
            requests += [(prompt, f" {letter}") for letter in LETTERS]
    model = tiny_transformer(real_tokenizer.vocab_size, max_seq_len=512)
    shapes = count_rows(model)
    shared = loglikelihood(model, real_tokenizer, requests, batch_size=16)
    packed = sum(batch * width for batch, width in shapes)
    monkeypatch.setattr(shared_rows, "MIN_SHARED", 1 << 30)
    shapes.clear()
    alone = loglikelihood(model, real_tokenizer, requests, batch_size=16)
    assert [lp for lp, _ in shared] == pytest.approx([lp for lp, _ in alone], abs=1e-5)
    assert [g for _, g in shared] == [g for _, g in alone]
    # Twelve questions, one input each; with the shots once per row far fewer positions.
    assert packed < 0.5 * sum(batch * width for batch, width in shapes)
