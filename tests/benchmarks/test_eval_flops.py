"""benchmarks/eval_flops.py counts the matmul FLOPs our scoring really runs."""

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from eval_flops import count, layer_flops  # noqa: E402

from llamaforge.eval.token_scoring import score_token_sequences  # noqa: E402
from llamaforge.model import ModelConfig, build_model  # noqa: E402


def test_the_count_of_our_side_equals_the_matmul_flops_of_a_real_run():
    cfg = ModelConfig(dim=64, n_layers=3, n_heads=4, vocab_size=97, max_seq_len=64)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    lengths = [(7, [3, 5]), (4, [2, 6]), (9, [1, 4]), (5, [4, 6, 2])]
    groups = []
    for g, (context, endings) in enumerate(lengths):
        prefix = [(g * 13 + k) % 90 + 1 for k in range(context)]
        groups.append(
            (prefix, [[(e * 7 + k) % 90 + 3 for k in range(n)] for e, n in enumerate(endings)])
        )
    apart = [(prefix, [list(c) for c in cs]) for prefix, cs in groups]
    groups[-1][1][1][:3] = groups[-1][1][0][:3]  # the first input is now a start of the second
    items = [(prefix + c, len(c)) for prefix, continuations in groups for c in continuations]
    counter = FlopCounterMode(display=False)
    with counter:  # batch 1: no padding, which the count leaves out
        score_token_sequences(model, items, max_seq_len=cfg.max_seq_len, batch_size=1)
    flops = counter.get_flop_counts()["Global"]
    matmuls = sum(v for op, v in flops.items() if "mm" in str(op) and "bmm" not in str(op))
    ours, theirs = count(cfg, groups)
    assert matmuls == ours
    # The three positions the two inputs no longer differ in run once, through every layer.
    per_position, _ = layer_flops(cfg)
    ours_apart, _ = count(cfg, apart)
    assert ours_apart - ours == 3 * (cfg.n_layers * per_position + 2 * 64 * 97)
    per_layer = 8 * 64 * 64 + 6 * 64 * cfg.ffn_hidden_dim
    inputs = [c - 1 + n for c, endings in lengths for n in endings]
    assert theirs == sum(cfg.n_layers * i * per_layer + i * 2 * 64 * 97 for i in inputs)
