"""Matmul FLOPs of PIQA-shaped scoring, ours against lm-eval's HFLM, at the paper's shapes.

Why it exists: the in-process comparison of ``eval_vs_lm_eval.py`` runs a
small model on a CPU, where both sides call the same MKL matmuls. If both ran
their matmuls at the same speed and everything else were free, our speed-up
could not exceed the ratio of matmul FLOPs. This counts that ratio on the
benchmark's own items (same generator, same trained tokenizer) for the
benchmark's model and for LLaMA 7B / 65B (Table 2), so the bound of an *exact*
scorer is a number, not a guess.

Counted per request, as the two sides lay the work out:

* HFLM: one input ``context + continuation[:-1]`` per request, every layer on
  every position, the output projection on every position;
* ours (``eval.token_scoring``): one row ``context + ending_1 + ending_2``
  per item (the context once), every layer but the last on every position,
  the last layer's keys and values on every position and its queries,
  attention output and feed-forward on the scored positions only, the output
  projection on the scored positions only.

Attention's two products (query-key and weights-value) and padding are left
out on both sides (padding is ~3 % of positions on both at batch 16): the
figure is the linear layers' FLOPs, which are ~70-76 % of both sides' time in
``eval_vs_lm_eval.py --profile`` on a 2-core CPU.

    python benchmarks/eval_flops.py [--items 200 --choices 2 --goal-words 4,12 --sol-words 3,15]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import report_load
from eval_vs_lm_eval import items

from llamaforge.eval.likelihood import split_request
from llamaforge.eval.shared_rows import tree_width
from llamaforge.model import ModelConfig
from llamaforge.model.config import PRESETS
from llamaforge.tokenizer import train_tokenizer


def layer_flops(cfg: ModelConfig) -> tuple[int, int]:
    """(FLOPs of one position through one layer's linears, of its key/value products alone)."""
    kv = 2 * 2 * cfg.dim * cfg.dim  # wk and wv (LLaMA-1 has as many key heads as query heads)
    attention_in_out = 2 * 2 * cfg.dim * cfg.dim  # wq and wo
    feed_forward = 2 * 3 * cfg.dim * cfg.ffn_hidden_dim
    return kv + attention_in_out + feed_forward, kv


def count(cfg: ModelConfig, groups: list[tuple[list[int], list[list[int]]]]) -> tuple[float, float]:
    """(ours, HFLM) matmul FLOPs for groups of ``(context tokens, [continuation tokens, ...])``.

    The model input of one request is ``context + continuation`` without its
    last token. Ours computes, per context, the context but its last token
    once and the tree of the inputs' rests (``shared_rows.ending_tree``: the
    last context token, then each continuation but its last token, common
    starts once); every tree position is scored.
    """
    per_layer, kv = layer_flops(cfg)
    head = 2 * cfg.dim * cfg.vocab_size
    ours = theirs = 0.0
    for context, continuations in groups:
        prefix = len(context) - 1  # the last context token is the first scored position
        rests = [((context[-1], *c[:-1]), []) for c in continuations]
        scored = tree_width(rests)
        row = prefix + scored
        ours += (cfg.n_layers - 1) * row * per_layer + row * kv
        ours += scored * (per_layer - kv) + scored * head
        for c in continuations:
            inputs = prefix + len(c)
            theirs += cfg.n_layers * inputs * per_layer + inputs * head
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--choices", type=int, default=2)
    for flag, default in (("goal-words", "4,12"), ("sol-words", "3,15")):
        parser.add_argument(f"--{flag}", default=default, help="LOW,HIGH words (uniform)")
    parser.add_argument(
        "--minimal-pairs",
        action="store_true",
        help="the second solution is the first with one word replaced (as eval_vs_lm_eval.py)",
    )
    args = parser.parse_args()
    words = {k: tuple(map(int, getattr(args, k).split(","))) for k in ("goal_words", "sol_words")}
    docs = items(
        args.items,
        **words,
        extra_choices=max(0, args.choices - 2),
        minimal_pairs=args.minimal_pairs,
    )
    with tempfile.TemporaryDirectory() as root:
        lines = [f"{d['goal']} {d['sol1']} {d['sol2']}" for d in docs] * 3
        tokenizer = train_tokenizer(
            Path(root) / "tok.model", texts=lines, vocab_size=300, progress=False, num_threads=1
        )
        groups = []
        for d in docs:
            context = f"Question: {d['goal']}\nAnswer:"
            endings = [" " + s for s in [d["sol1"], d["sol2"], *d["more"]][: args.choices]]
            splits = [split_request(tokenizer, context, e) for e in endings]
            groups.append((splits[0][0], [c for _, c in splits]))
    positions = sum(len(c) + sum(map(len, e)) for c, e in groups)
    print(f"{len(docs)} items x {args.choices} endings; {positions} context+ending tokens; "
          f"the benchmark's tokenizer (300 pieces)")  # fmt: skip
    shapes = {
        "eval_vs_lm_eval (dim 256, 4 layers, vocab 300)": ModelConfig(
            dim=256, n_layers=4, n_heads=4, vocab_size=tokenizer.vocab_size
        ),
        **{f"LLaMA {name} (vocab 32000)": PRESETS[name] for name in ("7B", "65B")},
    }
    print("\n| model | ours GFLOP | HFLM GFLOP | HFLM / ours |\n|---|---:|---:|---:|")
    for name, cfg in shapes.items():
        ours, theirs = count(cfg, groups)
        print(f"| {name} | {ours / 1e9:,.1f} | {theirs / 1e9:,.1f} | {theirs / ours:.2f}x |")
    print("\nAt equal matmul speed, an exact scorer whose other work were free reaches at most "
          "the last column times (HFLM's total time / HFLM's matmul time).")  # fmt: skip


if __name__ == "__main__":
    with report_load():
        main()
