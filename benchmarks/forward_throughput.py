"""Forward and forward+backward throughput: llamaforge vs transformers' LlamaForCausalLM.

Same config, same weights, same torch, same inputs, one process. Prints tokens/s
for each and the ratio (ours / transformers; > 1 means we are faster).

    python benchmarks/forward_throughput.py [--dim 512 --layers 8 --batch 4 --seq 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import hf_twin

from llamaforge.model import ModelConfig, build_model


def time_pair(fn_a, fn_b, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn_a`` and ``fn_b``, run in turns so load spikes hit both."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    samples_a, samples_b = [], []
    for _ in range(repeats):
        for fn, samples in ((fn_a, samples_a), (fn_b, samples_b)):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return statistics.median(samples_a), statistics.median(samples_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        vocab_size=args.vocab,
        max_seq_len=max(args.seq, 256),
    )
    ours = build_model(cfg)
    theirs = hf_twin(ours).train()
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
    autocast_dtype = getattr(torch, args.dtype)

    with torch.no_grad():
        diff = (ours(tokens) - theirs(tokens).logits).abs().max().item()

    def forward(model, hf: bool):
        def run():
            with (
                torch.no_grad(),
                torch.autocast("cpu", autocast_dtype, enabled=args.dtype != "float32"),
            ):
                out = model(tokens)
                return out.logits if hf else out

        return run

    def train_step(model, hf: bool):
        def run():
            with torch.autocast("cpu", autocast_dtype, enabled=args.dtype != "float32"):
                out = model(tokens)
                logits = out.logits if hf else out
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())
            loss.backward()
            model.zero_grad(set_to_none=True)

        return run

    n_tokens = args.batch * args.seq
    print(
        f"config: dim={cfg.dim} layers={cfg.n_layers} heads={cfg.n_heads} vocab={cfg.vocab_size} "
        f"params={cfg.num_params() / 1e6:.1f}M batch={args.batch} seq={args.seq} dtype={args.dtype} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    print(f"max |logits ours - transformers| = {diff:.2e}")
    print(f"{'pass':<18}{'llamaforge tok/s':>18}{'transformers tok/s':>20}{'ratio':>8}")
    for name, make in (("forward", forward), ("forward+backward", train_step)):
        t_ours, t_hf = time_pair(
            make(ours, False), make(theirs, True), warmup=2, repeats=args.repeats
        )
        print(
            f"{name:<18}{n_tokens / t_ours:>18,.0f}{n_tokens / t_hf:>20,.0f}{t_hf / t_ours:>8.2f}"
        )


if __name__ == "__main__":
    main()
