import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaforge.data.loader import FeistelPermutation, TokenLoader
from llamaforge.errors import ConfigError, DataError


def take(loader, n):
    return [loader.next_batch() for _ in range(n)]


def window_of(row: torch.Tensor, seq_len: int, offset: int = 0) -> int:
    """Sources are arange streams, so a row's first token tells which window it is."""
    start = int(row[0]) - offset
    assert start % seq_len == 0
    return start // seq_len


@given(n=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_feistel_is_a_bijection(n, seed):
    perm = FeistelPermutation(n, (seed, 1, 2))(np.arange(n))
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_feistel_looks_shuffled_and_depends_on_the_key():
    n = 5000
    a = FeistelPermutation(n, (0, 0, 0))(np.arange(n))
    b = FeistelPermutation(n, (0, 0, 1))(np.arange(n))
    assert abs(np.corrcoef(np.arange(n), a)[0, 1]) < 0.1
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    assert np.mean(a == np.arange(n)) < 0.01


def test_windows_targets_and_one_epoch_covers_every_train_window_once(token_folder):
    seq_len, n_tokens = 16, 16 * 50 + 5
    src = token_folder(np.arange(n_tokens), shard_tokens=97)
    loader = TokenLoader([(src, 1.0)], seq_len, batch_size=7, val_fraction=0.1, seed=3)
    assert loader.n_train == [45] and loader.n_val == [5]  # (805 - 1) // 16 = 50 windows
    batches = take(loader, 13)  # 91 sequences: two epochs of 45 and one more
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == y.dtype == torch.int64 and x.shape == (91, seq_len)
    torch.testing.assert_close(y, x + 1)  # targets are the next tokens, windows span shards
    order = [window_of(row, seq_len) for row in x]
    assert sorted(order[:45]) == list(range(45)) == sorted(order[45:90])
    assert order[:45] != order[45:90] and order[:45] != list(range(45))
    assert loader.epochs == [91 / 45]
    assert len(list(TokenLoader(src, seq_len, 7, max_batches=3))) == 3


def test_validation_is_the_fixed_held_out_tail(token_folder):
    seq_len = 8
    src = token_folder(np.arange(8 * 200 + 1))
    train = TokenLoader([(src, 1.0)], seq_len, 10, val_fraction=0.1)
    val = TokenLoader([(src, 1.0)], seq_len, 4, split="val", val_fraction=0.1)
    assert len(val) == 5  # 20 held-out windows
    seen_train = {window_of(r, seq_len) for x, _ in take(train, 40) for r in x}
    first = [window_of(r, seq_len) for x, _ in val for r in x]
    assert first == list(range(180, 200)) and seen_train == set(range(180))
    again = [window_of(r, seq_len) for x, _ in val for r in x]
    assert again == first
    capped = TokenLoader([(src, 1.0)], seq_len, 4, split="val", val_fraction=0.1, max_batches=2)
    assert len(list(capped)) == len(capped) == 2


def test_validation_interleaves_sources_by_weight(token_folder):
    a = token_folder(np.arange(4001))
    b = token_folder(20000 + np.arange(4001))
    val = TokenLoader([(a, 3.0), (b, 1.0)], 10, 4, split="val", val_fraction=0.1, max_batches=5)
    rows = torch.cat([x for x, _ in val])
    from_b = (rows[:, 0] >= 20000).float()
    assert from_b.mean().item() == pytest.approx(0.25, abs=0.06)
    runs = from_b.unfold(0, 8, 1).sum(1)  # every 8 consecutive rows mix both sources
    assert bool(((runs > 0) & (runs < 8)).all())


def test_mixture_proportions_follow_weights(token_folder):
    weights = [0.6, 0.3, 0.1]
    sources = [(token_folder(20000 * s + np.arange(2001)), w) for s, w in enumerate(weights)]
    loader = TokenLoader(sources, 16, 16, val_fraction=0.05, seed=11)
    firsts = torch.cat([x[:, 0] for x, _ in take(loader, 300)])
    shares = [float(((firsts // 20000) == s).float().mean()) for s in range(3)]
    assert shares == pytest.approx(weights, abs=0.03)
    counts = [int(((firsts // 20000) == s).sum()) for s in range(3)]
    assert loader.cursors == counts and sum(counts) == 300 * 16
    assert loader.epochs == pytest.approx(
        [c / n for c, n in zip(counts, loader.n_train, strict=True)]
    )


def test_ranks_split_every_global_batch(token_folder):
    sources = [(token_folder(np.arange(3001)), 2.0), (token_folder(30000 + np.arange(1501)), 1.0)]
    single = TokenLoader(sources, 12, 6, seed=5)
    ranks = [TokenLoader(sources, 12, 2, seed=5, rank=r, world_size=3) for r in range(3)]
    for _ in range(10):
        x, y = single.next_batch()
        parts = [rank.next_batch() for rank in ranks]
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x)
        torch.testing.assert_close(torch.cat([p[1] for p in parts]), y)
    assert all(r.state_dict() == single.state_dict() for r in ranks)

    val_single = TokenLoader(sources, 12, 4, split="val", val_fraction=0.2)
    val_ranks = [
        TokenLoader(sources, 12, 2, split="val", val_fraction=0.2, rank=r, world_size=2)
        for r in range(2)
    ]
    for (x, _), *parts in zip(val_single, *val_ranks, strict=True):
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x)


@pytest.mark.parametrize("split", ["train", "val"])
def test_resume_is_exact(token_folder, split):
    sources = [(token_folder(np.arange(5001)), 1.0), (token_folder(40000 + np.arange(2001)), 0.5)]
    kwargs = dict(split=split, val_fraction=0.5, seed=7)
    reference = take(TokenLoader(sources, 10, 4, **kwargs), 12)

    first = TokenLoader(sources, 10, 4, **kwargs)
    take(first, 7)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = TokenLoader(sources, 10, 4, **kwargs)
    resumed.load_state_dict(state)
    for (x, y), (rx, ry) in zip(take(resumed, 5), reference[7:], strict=True):
        torch.testing.assert_close(x, rx)
        torch.testing.assert_close(y, ry)


def test_seed_determines_the_stream(token_folder):
    src = [(token_folder(np.arange(3001)), 1.0)]
    a, b, c = (TokenLoader(src, 8, 4, seed=s) for s in (1, 1, 2))
    xa, xb, xc = (torch.cat([x for x, _ in take(loader, 5)]) for loader in (a, b, c))
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)


def test_clear_errors(token_folder):
    good = token_folder(np.arange(1000))
    with pytest.raises(DataError, match="too few for one training window"):
        TokenLoader([(token_folder(np.arange(16)), 1.0)], 16, 1, val_fraction=0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="weights must be positive"):
            TokenLoader([(good, 1.0), (good, bad)], 8, 1)
    with pytest.raises(ConfigError, match="unknown split 'test'"):
        TokenLoader([(good, 1.0)], 8, 1, split="test")
    with pytest.raises(ConfigError, match="val_fraction > 0"):
        TokenLoader([(good, 1.0)], 8, 1, split="val", val_fraction=0)
    with pytest.raises(DataError, match="fewer than one global batch"):
        TokenLoader([(good, 1.0)], 8, 4, split="val", val_fraction=0.01)
    with pytest.raises(ConfigError, match="rank 2"):
        TokenLoader([(good, 1.0)], 8, 1, rank=2, world_size=2)
    other_vocab = token_folder(np.arange(1000), vocab_size=70000)
    with pytest.raises(DataError, match="same tokenizer"):
        TokenLoader([(good, 1.0), (other_vocab, 1.0)], 8, 1)
    with pytest.raises(DataError, match="not a finished token folder"):
        TokenLoader([(good.parent / "missing", 1.0)], 8, 1)

    state = TokenLoader([(good, 1.0)], 8, 2).state_dict()
    with pytest.raises(ConfigError, match="data sources changed"):
        TokenLoader([(token_folder(np.arange(2000)), 1.0)], 8, 2).load_state_dict(state)
    with pytest.raises(ConfigError, match="seq_len"):
        TokenLoader([(good, 1.0)], 4, 2).load_state_dict(state)
