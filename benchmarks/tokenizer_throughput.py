"""Tokenizer throughput: MB/s and tokens/s of one-call-per-document vs ``encode_batch``.

Builds its corpus from text already on this machine (the Python standard
library sources and the installed packages' README files, as ``make demo``
does), trains a tokenizer of the demo's size on it in a temporary folder, then
encodes the whole corpus (best of ``--repeats`` runs):

* ``encode`` in a Python loop, one call per document;
* ``encode_batch`` with 1 and 2 threads (and more with ``--threads``).

The point to check: batch encoding should be far faster than the rest of data
preparation needs (reading JSONL, writing shards), so it is never the
bottleneck.

    python benchmarks/tokenizer_throughput.py [--mb 8 --vocab-size 4000 --threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import spread
from tqdm.auto import tqdm

from llamaforge.data.local_corpus import describe_sources, iter_local_documents
from llamaforge.tokenizer import Tokenizer, train_tokenizer
from llamaforge.tokenizer.tokenizer import usable_cpus


def best_time(fn: Callable[[], list[list[int]]], repeats: int) -> tuple[float, int, list[float]]:
    """Best seconds, tokens produced, and every run's seconds (for the spread)."""
    samples, n_tokens = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        ids = fn()
        samples.append(time.perf_counter() - start)
        n_tokens = sum(len(x) for x in ids)
    return min(samples), n_tokens, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=8.0, help="corpus size in MB")
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    docs = [d.text for d in iter_local_documents(max_bytes=int(args.mb * 1e6))]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tok: Tokenizer = train_tokenizer(
            Path(tmp) / "tokenizer.model", texts=docs, vocab_size=args.vocab_size
        )
        train_s = time.perf_counter() - start

        def loop() -> list[list[int]]:
            return [tok.encode(d) for d in docs]

        def batch(threads: int) -> Callable[[], list[list[int]]]:
            return lambda: tok.encode_batch(docs, num_threads=threads)

        cases = [("encode, one call per document", loop)]
        cases += [(f"encode_batch, {t} thread{'s' * (t > 1)}", batch(t)) for t in args.threads]
        rows, spreads = [], []
        for name, fn in tqdm(cases, desc="timing", unit="case"):
            seconds, n_tokens, samples = best_time(fn, args.repeats)
            rows.append((name, n_bytes / seconds / 1e6, n_tokens / seconds / 1e6))
            spreads.append(f"seconds, {name}: {spread(samples)}")

    print(f"\ncorpus: {n_bytes / 1e6:.1f} MB, {len(docs)} documents from {describe_sources()}")
    print(
        f"tokenizer: vocab {tok.vocab_size}, trained in {train_s:.1f}s; "
        f"{n_bytes / n_tokens:.2f} bytes/token\n"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {usable_cpus()} usable cores, load average {load:.1f} at the end\n")
    print(f"| {'method':<32} | {'MB/s':>7} | {'M tokens/s':>10} |")
    print(f"|{'-' * 34}|{'-' * 9}|{'-' * 12}|")
    for name, mb_s, mtok_s in rows:
        print(f"| {name:<32} | {mb_s:>7.2f} | {mtok_s:>10.2f} |")
    print("\n" + "\n".join(spreads))


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
