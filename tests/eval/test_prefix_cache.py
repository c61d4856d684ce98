"""Prefix sharing (each context once, in a row with its endings) gives the plain numbers."""

import pytest
import torch

from llamaforge.errors import ConfigError
from llamaforge.eval.likelihood import (
    loglikelihood,
    score_token_sequences,
    supports_prefix_cache,
)
from tests.eval.toy import TOK, ToyModel, count_rows, tiny_transformer


def test_shared_prefix_equals_uncached_on_random_token_items():
    model = tiny_transformer(vocab_size=50, max_seq_len=24)
    gen = torch.Generator().manual_seed(3)

    def rand(n):
        return torch.randint(0, 50, (n,), generator=gen).tolist()

    contexts = [rand(n) for n in (3, 9, 17, 20, 1)]
    items = []
    for ctx in contexts:
        for n_cont in (1, 2, 4, 3):
            items.append(((ctx + rand(n_cont))[-25:], n_cont))
    items.append((rand(25), 4))  # a full window (25 tokens = max_seq_len + 1)
    items.append((contexts[1] + [7], 0))  # nothing to score
    for batch_size in (1, 3, 16):
        cached = score_token_sequences(model, items, max_seq_len=24, batch_size=batch_size)
        plain = score_token_sequences(
            model, items, max_seq_len=24, batch_size=batch_size, prefix_sharing=False
        )
        for (lp_c, g_c), (lp_p, g_p) in zip(cached, plain, strict=True):
            assert lp_c == pytest.approx(lp_p, abs=1e-5)
            assert g_c == g_p
    assert cached[-1] == (0.0, True)


@pytest.mark.parametrize("window", [40, 13])
def test_continuations_that_begin_alike_score_like_the_plain_path(window):
    """PIQA-like minimal pairs, continuations that extend one another, and a greedy one."""
    model = tiny_transformer(vocab_size=50, max_seq_len=40)
    gen = torch.Generator().manual_seed(4)

    def rand(n):
        return torch.randint(0, 50, (n,), generator=gen).tolist()

    items = []
    for n_ctx in (2, 6, 11):
        ctx, start = rand(n_ctx), rand(5)
        pair = [start + [1] + rand(3), start + [2] + rand(2)]  # one edit apart, ragged
        nested = [start[:1], start[:3], start]  # each a start of the next
        for cont in pair + nested + [rand(4)]:
            items.append(((ctx + cont)[-(window + 1) :], len(cont)))
    # The model's own greedy continuation: the flag must come out True on both paths.
    ctx = rand(4)
    greedy = []
    with torch.no_grad():
        for _ in range(3):
            logits = model(torch.tensor([ctx + greedy]))
            greedy.append(int(logits[0, -1].argmax()))
    items += [(ctx + greedy, 3), (ctx + greedy[:2] + [(greedy[2] + 1) % 50], 3)]
    model = model.eval()
    for batch_size in (1, 4):
        shared = score_token_sequences(model, items, max_seq_len=window, batch_size=batch_size)
        plain = score_token_sequences(
            model, items, max_seq_len=window, batch_size=batch_size, prefix_sharing=False
        )
        assert [lp for lp, _ in shared] == pytest.approx([lp for lp, _ in plain], abs=1e-5)
        assert [g for _, g in shared] == [g for _, g in plain]
    assert shared[-2][1] and not shared[-1][1]


def test_text_requests_match_with_truncation_and_varied_lengths(real_tokenizer):
    model = tiny_transformer(real_tokenizer.vocab_size, max_seq_len=24)
    passage = "the answer to question 12 is the 84 cats on a mat. the answer to question 5 is"
    requests = []
    for ctx in (passage, "the answer to question 3 is", "question 7", passage + " the 35"):
        for cont in (" the 21 cats", " 35", " cats on a mat and the 9 cats on a mat", " mat"):
            requests.append((ctx, cont))
    requests.append(("", "cats on a mat"))  # empty context: nothing to share
    assert len(real_tokenizer.encode(passage + " the 21 cats")) > 25  # truncation happens
    plain = loglikelihood(model, real_tokenizer, requests, batch_size=4, prefix_sharing=False)
    for batch_size in (2, 5, 32):
        cached = loglikelihood(model, real_tokenizer, requests, batch_size=batch_size)
        assert [lp for lp, _ in cached] == pytest.approx([lp for lp, _ in plain], abs=1e-5)
        assert [g for _, g in cached] == [g for _, g in plain]
    assert model.training


def test_the_context_runs_once_per_group():
    model = tiny_transformer(vocab_size=TOK.vocab_size, max_seq_len=128)
    shapes = count_rows(model)
    context = "A long passage that four endings share. It goes on"
    requests = [(context, f" ending {c}{'!' * k}") for k, c in enumerate("ABCD")]
    loglikelihood(model, TOK, requests, batch_size=8)
    prefix_len = len(TOK.encode(context)) - 1
    # One row: the context once, then the four inputs' tree. Each input is the
    # context's last token and its continuation but the last token: "n ending "
    # once, then "" (A), "B", "C!" and "D!!".
    assert shapes == [(1, prefix_len + len("n ending ") + 1 + 2 + 3)]
    # In a window too short for all four, the row splits and the context repeats.
    small = tiny_transformer(vocab_size=TOK.vocab_size, max_seq_len=prefix_len + 14)
    rows = count_rows(small)
    loglikelihood(small, TOK, requests, batch_size=8)
    # Sorted, each adds what it does not share: 9 + 1 + 2 fit, D!!'s 3 more do not:
    # rows {A, B, C!} (9 + 1 + 2) and {D!!} (9 + 3), both 12 wide.
    assert rows == [(2, prefix_len + 12)]


def test_models_without_a_cache_take_the_plain_path():
    toy = ToyModel()
    assert not supports_prefix_cache(toy)
    assert supports_prefix_cache(tiny_transformer(vocab_size=10))
    requests = [("shared context", " a"), ("shared context", " bb")]
    assert len(loglikelihood(toy, TOK, requests)) == 2
    with pytest.raises(ConfigError, match="prefix_sharing"):
        loglikelihood(toy, TOK, requests, prefix_sharing=True)


@pytest.mark.parametrize("sharing", [None, False])
def test_one_input_from_two_splits_scores_both_items(sharing):
    """Context "a b" + " c" and "a" + " b c" are one model input; each item keeps its score."""
    model = tiny_transformer(vocab_size=50, max_seq_len=24)
    tokens = [1, 7, 9, 4, 11]
    items = [(tokens, 1), (tokens, 2), (tokens, 3)]
    together = score_token_sequences(model, items, max_seq_len=24, prefix_sharing=sharing)
    alone = [score_token_sequences(model, [it], max_seq_len=24)[0] for it in items]
    assert [lp for lp, _ in together] == pytest.approx([lp for lp, _ in alone], abs=1e-5)
    assert len({round(lp, 4) for lp, _ in together}) == 3  # three different numbers


def test_scores_read_in_chunks_of_rows_equal_one_chunk(monkeypatch):
    """The log-sum-exp is taken a few rows at a time (bounded memory at a large vocabulary)."""
    from llamaforge.eval import token_scoring

    model = tiny_transformer(vocab_size=50, max_seq_len=24)
    gen = torch.Generator().manual_seed(8)
    items = [
        (torch.randint(0, 50, (n,), generator=gen).tolist(), k)
        for n, k in ((9, 3), (14, 6), (5, 1))
    ]
    items += [(items[0][0][:6] + [3, 4], 2)]  # shares a context with the first: a tree row
    whole = score_token_sequences(model, items, max_seq_len=24, batch_size=4)
    monkeypatch.setattr(token_scoring, "READ_CHUNK_ELEMENTS", 50 * 2)  # two rows at a time
    chunked = score_token_sequences(model, items, max_seq_len=24, batch_size=4)
    assert [lp for lp, _ in chunked] == pytest.approx([lp for lp, _ in whole], abs=1e-6)
    assert [g for _, g in chunked] == [g for _, g in whole]
    plain = score_token_sequences(model, items, max_seq_len=24, batch_size=1, prefix_sharing=False)
    assert [lp for lp, _ in chunked] == pytest.approx([lp for lp, _ in plain], abs=1e-5)
