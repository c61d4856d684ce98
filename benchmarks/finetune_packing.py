"""Packed vs unpacked finetuning batches, and the attention kernel behind packing.

Part 1, the kernel: forward + backward of one attention layer over rows
packed with several examples, as (a) SDPA with the block-diagonal boolean
mask that ``Transformer.forward(documents=...)`` builds, (b) PyTorch's
``flex_attention`` with the same mask as a block mask (compiled; skipped where
it cannot run backward, e.g. on CPU in torch 2.13), and (c) plain causal SDPA
over the same rows (what costs the same but lets examples attend to each
other: the speed of light, not an exact option).

Part 2, the training step: the same synthetic Alpaca-like examples (prompt
20-120 tokens not scored, response 10-250 scored + EOS) through
``FinetuneLoader`` packed and unpacked (length-grouped, right-padded), each
step ``train_step(masked=True)``. Tokens/s counts real (non-padding)
positions. "Exact" is checked, not assumed: the response loss of every
example at the initial weights, summed over one epoch, must agree between
the layouts.

    python benchmarks/finetune_packing.py [--device cpu|cuda --dim 256 --layers 4 --seq 512]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import spread

from llamaforge.finetune.examples import Example
from llamaforge.finetune.source import FinetuneLoader
from llamaforge.model import ModelConfig, build_model
from llamaforge.model.transformer import document_mask
from llamaforge.train.batches import IGNORE
from llamaforge.train.config import OptimConfig
from llamaforge.train.optim import build_optimizer
from llamaforge.train.step import train_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls after one untimed call."""
    fn()
    samples = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return samples


def kernels(args, device) -> None:
    b, h, s, d = args.rows, args.heads, args.seq, args.dim // args.heads
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (
        torch.randn(b, h, s, d, device=device, dtype=dtype, requires_grad=True) for _ in range(3)
    )
    docs = torch.repeat_interleave(torch.arange(s // args.doc_len, device=device), args.doc_len)
    docs = torch.cat([docs, docs.new_full((s - len(docs),), -1)]).expand(b, s)
    mask = document_mask(docs)

    def run(attend):
        out = attend()
        out.float().sum().backward()

    results = {
        "sdpa causal (not exact)": lambda: run(
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        ),
        "sdpa block-diagonal mask": lambda: run(
            lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        ),
    }
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def mask_mod(bi, hi, qi, ki):
            return (docs[bi, qi] == docs[bi, ki]) & (qi >= ki)

        block = create_block_mask(mask_mod, b, None, s, s, device=str(device))
        flex = torch.compile(flex_attention)
        run(lambda: flex(q, k, v, block_mask=block))  # compile and check backward runs
        results["flex_attention block mask"] = lambda: run(lambda: flex(q, k, v, block_mask=block))
    except Exception as error:  # noqa: BLE001 - report why it is unavailable
        print(
            f"flex_attention unavailable on {device.type}: {type(error).__name__}: {str(error)[:120]}"
        )
    print(
        f"\nattention fwd+bwd, {b} rows x {s} positions, examples of {args.doc_len}, {h} heads x {d}"
    )
    for name, fn in results.items():
        print(f"  {name:28s} {spread(timed(fn, device, args.repeats), 1e3, 'ms')}")


def synthetic_examples(n: int, vocab: int, seq: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt, response = int(rng.integers(20, 120)), int(rng.integers(10, 250))
        length = min(prompt + response + 1, seq)
        ids = rng.integers(3, vocab, size=length + 1)
        targets = ids[1:].copy()
        targets[: min(prompt, length - 1)] = IGNORE
        out.append(Example(ids[:-1], targets))
    return out


def real_tokens(batch) -> int:
    targets = batch[1]
    if len(batch) == 3:  # packed: the padding is the last document of each row, all ignored
        docs = batch[2]
        pad = docs == docs.max(dim=1, keepdim=True).values
        pad &= targets == IGNORE
        return int((~pad).sum())
    width = targets.shape[1]
    last = torch.where(targets != IGNORE, torch.arange(width), -1).max(dim=1).values
    return int((last + 1).sum())


def epoch_loss(model, examples, args, packing: bool, device) -> tuple[float, int]:
    """Summed response loss and scored tokens over every example exactly once."""
    loader = FinetuneLoader(examples, args.seq, args.rows, packing=packing, split="val")
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            batch = [t.to(device) for t in batch]
            logits = model(batch[0], documents=batch[2]) if len(batch) == 3 else model(batch[0])
            total += float(F.cross_entropy(logits.float().flatten(0, 1), batch[1].flatten(),
                                           ignore_index=IGNORE, reduction="sum"))  # fmt: skip
            count += int((batch[1] != IGNORE).sum())
    return total, count


def steps(args, device) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads, vocab_size=args.vocab,
                      multiple_of=64, max_seq_len=args.seq)  # fmt: skip
    base = build_model(cfg, device=device)
    examples = synthetic_examples(args.examples, args.vocab, args.seq)
    precision = "bf16" if device.type == "cuda" else "fp32"
    print(f"\ntraining steps, {cfg.n_layers} layers x {cfg.dim}, {args.rows} rows of <= {args.seq}")
    runs = {}
    for packing in (True, False):
        loader = FinetuneLoader(examples, args.seq, args.rows, packing=packing, seed=0)
        model = copy.deepcopy(base)
        optimizer = build_optimizer(model, OptimConfig(lr=1e-4))
        batches = [[t.to(device) for t in loader.next_batch()] for _ in range(args.steps + 1)]
        runs[packing] = (model, optimizer, batches, loader.steps_for_epochs(1), [])
    # Steps alternate between the layouts so load spikes on a shared machine hit both.
    for index in range(args.steps + 1):
        for model, optimizer, batches, _, rates in runs.values():
            batch = batches[index]
            sync(device)
            start = time.perf_counter()
            train_step(model, optimizer, iter([batch]), 1, 1.0, precision, masked=True)
            sync(device)
            if index:  # the first step of each is a warm-up
                rates.append((real_tokens(batch), batch[0].numel(), time.perf_counter() - start))
    for packing, (_, _, _, epoch, rates) in runs.items():
        tokens, positions = sum(r[0] for r in rates), sum(r[1] for r in rates)
        per_step = statistics.median(r[0] / r[2] for r in rates)
        print(f"  {'packed' if packing else 'unpacked':9s} {per_step:10,.0f} real tokens/s (median "
              f"step; {tokens / positions:.0%} of positions real; epoch = {epoch} steps); "
              f"step {spread([r[2] for r in rates])}")  # fmt: skip
    (pt, pc), (ut, uc) = (epoch_loss(base, examples, args, p, device) for p in (True, False))
    print(
        f"  response loss at init, every example once: packed {pt / pc:.6f}, unpacked "
        f"{ut / uc:.6f} ({pc} vs {uc} scored tokens; relative difference {abs(pt - ut) / ut:.1e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--doc-len", type=int, default=150)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}")
    kernels(args, device)
    steps(args, device)


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
