"""Training throughput and MFU per device, on one process or a torchrun job.

Times full optimizer steps (forward, fp32 cross-entropy, backward, clipping,
AdamW) of a LLaMA-shaped model on random tokens, with the very code the
trainer runs: ``train_step``, and under torchrun the same FSDP2 x TP mesh
(``llamaforge.train.parallel``). Warm-up steps (allocator, kernel selection,
``torch.compile``) are excluded; each rank reports its own tokens/s and MFU,
rank 0 prints one JSON line per rank and the mean.

The default shape is a ~1.2B-parameter model for one GPU (dim 2048, 20
layers, 16 heads, vocab 32000, 2048-token sequences, bf16). The flags shrink
it for a CPU smoke run:

    python benchmarks/mfu.py                                          # GPU, ~1.2B
    torchrun --nproc_per_node 8 benchmarks/mfu.py --dp 4 --tp 2 --compile
    python benchmarks/mfu.py --dim 64 --layers 2 --heads 4 --vocab 256 --seq 64 \\
        --batch 2 --steps 3 --warmup 1 --precision fp32                # CPU, seconds

MFU uses ``ModelConfig.flops_per_token`` (6N + attention) over the device
peak of ``llamaforge.train.metrics.detect_peak_flops`` (data-sheet bf16 peak
on A100/H100/H200; a measured matmul rate on CPU), or ``--peak-flops``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from llamaforge.model import ModelConfig, build_model
from llamaforge.train.config import OptimConfig
from llamaforge.train.metrics import _synchronize, detect_peak_flops, mfu
from llamaforge.train.optim import build_optimizer
from llamaforge.train.step import train_step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default, text in (
        ("dim", 2048, "model width"),
        ("layers", 20, "transformer blocks"),
        ("heads", 16, "attention heads"),
        ("vocab", 32000, "vocabulary size"),
        ("seq", 2048, "tokens per sequence"),
        ("batch", 4, "sequences per micro-batch per data-parallel rank"),
        ("steps", 10, "timed optimizer steps"),
        ("warmup", 3, "untimed steps first"),
        ("dp", 0, "data-parallel degree under torchrun (0: world size / tp)"),
        ("tp", 1, "tensor-parallel degree under torchrun"),
    ):
        parser.add_argument(f"--{name}", type=int, default=default, help=text)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--ac", choices=["none", "full", "selective"], default="none")
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend on one process (aot_eager: tracing only, for smoke runs)",
    )
    parser.add_argument("--peak-flops", type=float, default=0.0, help="per device; 0 = detect")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                      vocab_size=args.vocab, max_seq_len=args.seq)  # fmt: skip
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(0)
    hooks, ctx, rank, dp_rank = {}, None, 0, 0
    if world > 1 or args.dp * args.tp > 1:
        from llamaforge.train.parallel import init_parallel
        from llamaforge.train.parallel.fsdp import clip_grad_norm
        from llamaforge.train.parallel.parallelize import parallelize

        ctx = init_parallel(args.dp or world // args.tp, args.tp)
        device, rank, dp_rank = ctx.device, ctx.rank, ctx.dp_rank
        model = build_model(cfg, device=device)
        parallelize(model, ctx, precision=args.precision, activation_checkpointing=args.ac,
                    compile=args.compile)  # fmt: skip
        hooks = {"clip_fn": clip_grad_norm}
        step_precision = "fp32"  # FSDP's mixed-precision policy casts
    else:
        from llamaforge.train.activation_checkpoint import apply_activation_checkpointing

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = apply_activation_checkpointing(build_model(cfg, device=device), args.ac)
        step_precision = args.precision
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4, warmup_steps=1))
    forward = (
        torch.compile(model, backend=args.compile_backend)
        if args.compile and ctx is None
        else model
    )
    generator = torch.Generator().manual_seed(1 + dp_rank)

    def batch() -> list[tuple[torch.Tensor, torch.Tensor]]:
        tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=generator)
        return [(tokens[:, :-1], tokens[:, 1:])]

    times = []
    for step in range(args.warmup + args.steps):
        _synchronize(device)
        start = time.perf_counter()
        result = train_step(forward, optimizer, batch(), 1, 1.0, step_precision, **hooks)
        _synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak = args.peak_flops or detect_peak_flops(device, dtype)
    # Every rank of a data-parallel group processes the group's tokens, tp ranks share them.
    tp = ctx.tp if ctx else 1
    per_device = args.batch * args.seq / statistics.median(times) / tp
    row = {
        "rank": rank, "device": str(device), "params": cfg.num_params(),
        "tokens_per_s_per_device": per_device, "peak_flops": peak,
        "mfu": mfu(per_device, cfg.flops_per_token(args.seq), peak), "last_loss": result.loss,
        "step_s_min": min(times), "step_s_median": statistics.median(times),
        "step_s_max": max(times),
    }  # fmt: skip
    rows = ctx.gather(row) if ctx else [row]
    if rank == 0:
        for item in rows or []:
            print(json.dumps(item))
        print(json.dumps({"mean_mfu": statistics.mean(r["mfu"] for r in rows or []),
                          "world_size": world, "args": vars(args)}))  # fmt: skip
    if ctx is not None:
        from llamaforge.train.parallel import shutdown_parallel

        shutdown_parallel()


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
