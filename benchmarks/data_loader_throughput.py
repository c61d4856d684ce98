"""Data loader throughput: sequences/s and tokens/s of TokenLoader on synthetic shards.

Writes random tokens into two token folders (a temporary directory, removed
afterwards), then times ``next_batch()`` for a two-source mixture. The
trainer needs far less than this: a 7B step on one GPU consumes a few
thousand tokens per second per device.

    python benchmarks/data_loader_throughput.py [--tokens 20000000 --seq 2048 --batch 8]
        [--shard-tokens 5000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import spread
from tqdm.auto import tqdm

from llamaforge.data import ShardWriter, TokenLoader


def write_random_folder(out: Path, n_tokens: int, seed: int, shard_tokens: int = 5_000_000) -> Path:
    rng = np.random.default_rng(seed)
    with ShardWriter(
        out, vocab_size=32000, eos_id=2, bos_id=1, shard_tokens=shard_tokens
    ) as writer:
        for start in tqdm(range(0, n_tokens, 1_000_000), desc=f"writing {out.name}", unit="M tok"):
            writer.add_tokens(rng.integers(0, 32000, size=min(1_000_000, n_tokens - start)))
        writer.finish()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000_000, help="tokens per source")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument(
        "--shard-tokens", type=int, default=5_000_000,
        help="tokens per shard; small values give many shards (more than open files are kept)",
    )  # fmt: skip
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        a = write_random_folder(Path(tmp) / "a", args.tokens, 0, args.shard_tokens)
        b = write_random_folder(Path(tmp) / "b", args.tokens // 4, 1, args.shard_tokens)
        loader = TokenLoader([(a, 0.8), (b, 0.2)], args.seq, args.batch)
        loader.next_batch()  # warm-up: opens the first shards
        seconds = []
        for _ in tqdm(range(args.batches), desc="loading", unit="batch"):
            start = time.perf_counter()
            loader.next_batch()
            seconds.append(time.perf_counter() - start)
        elapsed = sum(seconds)
    sequences = args.batches * args.batch
    print(
        f"{sequences / elapsed:,.0f} sequences/s, {sequences * args.seq / elapsed / 1e6:,.1f}M tokens/s "
        f"(seq_len {args.seq}, batch {args.batch}, "
        f"{-(-args.tokens // args.shard_tokens) + -(-args.tokens // 4 // args.shard_tokens)} shards)"
    )
    print(f"per batch: {spread(seconds, 1e3, 'ms')}")


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
