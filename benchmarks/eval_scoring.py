"""Requests/s of multiple-choice scoring with and without prefix sharing.

A HellaSwag-like workload: N contexts of ``--context`` tokens, each with 4
endings of 12-24 tokens, scored by ``llamaforge.eval.likelihood.loglikelihood``
on a randomly initialised tiny preset (the speed does not depend on the
weights). Both modes run in turns, median of ``--repeats``; the script also
checks that the two give the same log-likelihoods.

    python benchmarks/eval_scoring.py --preset tiny-10M --contexts 16 --context 384
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from common import spread

from llamaforge.eval.likelihood import score_token_sequences
from llamaforge.model import Transformer, get_preset


def workload(
    vocab: int, contexts: int, context_len: int, seed: int = 0
) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    items = []
    for _ in range(contexts):
        context = [1] + [rng.randrange(3, vocab) for _ in range(context_len - 1)]
        for _ in range(4):
            ending = [rng.randrange(3, vocab) for _ in range(rng.randint(12, 24))]
            items.append((context + ending, len(ending)))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny-10M")
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--context", type=int, default=384, help="context length in tokens")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset(args.preset)
    if args.context + 24 > cfg.max_seq_len:
        parser.error(f"--context + 24 must fit the preset's {cfg.max_seq_len} positions")
    model = Transformer(cfg).eval()
    items = workload(cfg.vocab_size, args.contexts, args.context)
    times: dict[bool, list[float]] = {True: [], False: []}
    scores = {}
    for _ in range(args.repeats):
        for share in (False, True):
            start = time.perf_counter()
            scores[share] = score_token_sequences(
                model,
                items,
                max_seq_len=cfg.max_seq_len,
                batch_size=args.batch_size,
                prefix_sharing=share,
            )
            times[share].append(time.perf_counter() - start)
    diff = max(abs(a[0] - b[0]) for a, b in zip(scores[True], scores[False], strict=True))
    print(
        f"{args.preset}, {args.contexts} contexts x 4 endings, context {args.context} tokens, "
        f"batch {args.batch_size}, torch {torch.__version__}, {args.threads} threads"
    )
    print("| prefix sharing | requests/s | relative |")
    print("| --- | --- | --- |")
    base = len(items) / statistics.median(times[False])
    for share in (False, True):
        rate = len(items) / statistics.median(times[share])
        print(f"| {'on' if share else 'off'} | {rate:,.1f} | {rate / base:.2f} |")
    for share in (False, True):
        print(f"seconds, prefix sharing {'on' if share else 'off'}: {spread(times[share])}")
    print(f"max |difference| of log-likelihoods: {diff:.2e}")


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
