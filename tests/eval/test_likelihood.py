import math

import pytest
import torch
from torch import nn

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.likelihood import (
    loglikelihood,
    loglikelihood_rolling,
    rolling_windows,
    split_request,
)
from tests.eval.toy import TOK, ToyModel, tid, tiny_transformer  # noqa: F401


def reference(model, tokenizer, context, continuation):
    """Token-by-token log-prob, each position from an unbatched, unpadded forward pass.

    Like lm-eval, a too-long request is cut once from the left, to max_seq_len + 1 tokens.
    """
    ctx, cont = split_request(tokenizer, context, continuation)
    tokens = (ctx + cont)[-(model.config.max_seq_len + 1) :]
    total, greedy = 0.0, True
    with torch.no_grad():
        for pos in range(len(tokens) - len(cont), len(tokens)):
            logits = model(torch.tensor([tokens[:pos]]))[0, -1].double()
            total += float(logits.log_softmax(-1)[tokens[pos]])
            greedy &= int(logits.argmax()) == tokens[pos]
    return total, greedy


def test_split_moves_trailing_space_of_context():
    ctx, cont = split_request(TOK, "Q: ", "yes")
    assert ctx == TOK.encode("Q:")
    assert cont == TOK.encode(" yes", bos=False)
    assert split_request(TOK, "", "ab") == ([0], TOK.encode("ab", bos=False))


def test_toy_loglikelihood_matches_hand_values_and_greedy():
    torch.manual_seed(0)
    model = ToyModel()
    with torch.no_grad():
        model.bigram[tid("a"), tid("b")] = 5.0  # after "a", "b" is the clear argmax
    (lp_ab, greedy_ab), (lp_ac, greedy_ac) = loglikelihood(model, TOK, [("xa", "b"), ("xa", "c")])
    v = TOK.vocab_size
    norm = math.log(math.exp(5.0) + v - 1)
    assert lp_ab == pytest.approx(5.0 - norm, abs=1e-5)
    assert lp_ac == pytest.approx(-norm, abs=1e-5)
    assert greedy_ab and not greedy_ac


def test_batched_equals_direct_with_toy_model_and_order_restored():
    torch.manual_seed(0)
    model = ToyModel(max_seq_len=12)
    with torch.no_grad():
        model.bigram.normal_()
        model.first.normal_()
    requests = [
        ("Q: what is it? ", "a cat"),
        ("", "hello"),
        ("Q: what is it?", " a dog"),
        ("a much longer context than the window allows", " yes"),
        ("Q: what is it? ", "a"),
        ("Q: what is it? ", "b"),  # same model input as the previous one
        ("x", ""),
    ]
    got = loglikelihood(model, TOK, requests, batch_size=2)
    for (ctx, cont), (lp, greedy) in zip(requests, got, strict=True):
        ref_lp, ref_greedy = reference(model, TOK, ctx, cont)
        assert lp == pytest.approx(ref_lp, abs=1e-4)
        assert greedy == ref_greedy
    assert got[-1] == (0.0, True)
    assert got[4] != got[5]


def test_requests_with_the_same_input_share_one_forward_row():
    model = ToyModel()
    rows = []
    model.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    requests = [("Question? Answer:", f" {c}") for c in "ABCD"] + [("Other:", " A")]
    got = loglikelihood(model, TOK, requests, batch_size=8)
    assert sum(rows) == 2 and len(got) == 5


def test_continuation_longer_than_window_is_an_error():
    with pytest.raises(DataError, match="request 0"):
        loglikelihood(ToyModel(max_seq_len=4), TOK, [("a", "bcdefg")])
    with pytest.raises(ConfigError, match="max_seq_len"):
        loglikelihood(nn.Identity(), TOK, [("a", "b")])


def test_rolling_windows_cover_each_token_once():
    tokens = list(range(10, 21))
    for max_len in (1, 3, 4, 11, 50):
        windows = rolling_windows(tokens, 0, max_len)
        targets = [t for full, n in windows for t in full[len(full) - n :]]
        assert targets == tokens
        assert all(len(full) <= max_len + 1 for full, _ in windows)
        assert windows[0][0][0] == 0


def test_rolling_equals_full_context_for_a_bigram_model():
    torch.manual_seed(1)
    small, big = ToyModel(max_seq_len=4), ToyModel(max_seq_len=64)
    with torch.no_grad():
        small.bigram.normal_()
        big.bigram.copy_(small.bigram)
    texts = ["the quick brown fox", "", "ab"]
    rolled = loglikelihood_rolling(small, TOK, texts, batch_size=3)
    full = loglikelihood_rolling(big, TOK, texts)
    assert rolled == pytest.approx(full, abs=1e-4)
    assert full[1] == 0.0
    assert full[0] == pytest.approx(reference(big, TOK, "", texts[0])[0], abs=1e-4)


def test_loglikelihood_matches_direct_computation_with_real_model(real_tokenizer):
    model = tiny_transformer(real_tokenizer.vocab_size, max_seq_len=24)
    requests = [
        ("the answer to question 3 is", " the 21 cats"),
        ("the answer to question 3 is ", "the 21 cats"),  # trailing space moves over
        ("question", " 12"),
        ("", "cats on a mat"),
        ("the answer to question 12 is the 84 cats on a mat. the answer to question 5 is", " 35"),
    ]
    got = loglikelihood(model, real_tokenizer, requests, batch_size=2, progress=False)
    for (ctx, cont), (lp, greedy) in zip(requests, got, strict=True):
        ref_lp, ref_greedy = reference(model, real_tokenizer, ctx, cont)
        assert lp == pytest.approx(ref_lp, abs=1e-4)
        assert greedy == ref_greedy
    assert got[0][0] == pytest.approx(got[1][0], abs=1e-6)
    assert model.training  # the mode is restored
    assert len(real_tokenizer.encode(requests[-1][0] + requests[-1][1])) > 25  # truncated
