"""Scoring below a shared preamble: off, and the attention weights of the cost model.

The items of ``eval_vs_lm_eval.py`` (PIQA-shaped questions, two solutions)
behind one fixed text of ``--preamble-words`` words, as a k-shot prompt with
the same shots for every question. One in-process side per setting, in
turns: ``off`` packs no preamble (each context in its own row), ``cost=W``
packs with ``shared_rows.ATTENTION_COST = W``. The default weight is the one
that was fastest here (docs/performance.md).

    python benchmarks/preamble_sharing.py [--preamble-words 100 --dim 256 --items 100
        --weights 2,4,8 --repeats 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from common import report_load, spread, time_in_turns
from eval_vs_lm_eval import items, preamble_text

from llamaforge.eval import shared_rows
from llamaforge.eval.likelihood import loglikelihood
from llamaforge.model import ModelConfig, build_model
from llamaforge.tokenizer import train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("preamble-words", 100), ("dim", 256), ("items", 100), ("repeats", 4)):
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--weights", default="2,4,8")
    args = parser.parse_args()
    docs = items(args.items)
    with tempfile.TemporaryDirectory() as root:
        lines = [f"{d['goal']} {d['sol1']} {d['sol2']}" for d in docs] * 3
        tokenizer = train_tokenizer(
            Path(root) / "tok.model", texts=lines, vocab_size=300, progress=False, num_threads=1
        )
    torch.manual_seed(0)
    cfg = ModelConfig(dim=args.dim, n_layers=4, n_heads=4, vocab_size=tokenizer.vocab_size,
                      max_seq_len=2048)  # fmt: skip
    model = build_model(cfg).eval()
    preamble = preamble_text(args.preamble_words)
    requests = [(f"{preamble}Question: {d['goal']}\nAnswer:", " " + s)
                for d in docs for s in (d["sol1"], d["sol2"])]  # fmt: skip
    tokens = sum(len(tokenizer.encode(c + e)) for c, e in requests) / len(requests)
    print(f"dim={cfg.dim} layers={cfg.n_layers} window={cfg.max_seq_len}; {len(requests)} "
          f"requests of {tokens:.0f} tokens on average; preamble "
          f"{len(tokenizer.encode(preamble))} tokens; {torch.get_num_threads()} threads")  # fmt: skip
    default = (shared_rows.MIN_SHARED, shared_rows.ATTENTION_COST)

    def side(min_shared: int, weight: float):
        def run():
            shared_rows.MIN_SHARED, shared_rows.ATTENTION_COST = min_shared, weight
            try:
                return [lp for lp, _ in loglikelihood(model, tokenizer, requests, batch_size=16)]
            finally:
                shared_rows.MIN_SHARED, shared_rows.ATTENTION_COST = default

        return run

    sides = {"off": side(1 << 30, default[1])}
    for weight in map(float, args.weights.split(",")):
        sides[f"cost={weight:g}"] = side(default[0], weight)
    samples, results = time_in_turns(sides, warmup=1, repeats=args.repeats)
    reference = results["off"]
    for name, times in samples.items():
        diff = max(abs(a - b) for a, b in zip(results[name], reference, strict=True))
        speedup = statistics.median(samples["off"]) / statistics.median(times)
        print(f"{name}: seconds {spread(times)}; {speedup:.2f}x off; max |diff| {diff:.1e}")
    print(f"(default ATTENTION_COST = {default[1]:g})")


if __name__ == "__main__":
    with report_load():
        main()
