"""Forward and forward+backward throughput: llamaforge vs transformers' LlamaForCausalLM.

Same config, same weights, same torch, same inputs, one process. Prints tokens/s
for each (median) and the ratio (ours / transformers; > 1 means we are faster),
then min / median / max step seconds per side; the sides run in turns.

    python benchmarks/forward_throughput.py [--dim 512 --layers 8 --batch 4 --seq 256]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from common import hf_twin, spread, time_in_turns

from llamaforge.model import ModelConfig, build_model


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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    def sync() -> None:  # CUDA runs asynchronously: wait, or the timer sees launches only
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        vocab_size=args.vocab,
        max_seq_len=max(args.seq, 256),
    )
    ours = build_model(cfg, device=device)
    theirs = hf_twin(ours).train()
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=device)
    autocast_dtype = getattr(torch, args.dtype)

    with torch.no_grad():
        diff = (ours(tokens) - theirs(tokens).logits).abs().max().item()

    def forward(model, hf: bool):
        def run():
            with (
                torch.no_grad(),
                torch.autocast(device.type, autocast_dtype, enabled=args.dtype != "float32"),
            ):
                out = model(tokens)
            sync()
            return out.logits if hf else out

        return run

    def train_step(model, hf: bool):
        def run():
            with torch.autocast(device.type, autocast_dtype, enabled=args.dtype != "float32"):
                out = model(tokens)
                logits = out.logits if hf else out
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())
            loss.backward()
            model.zero_grad(set_to_none=True)
            sync()

        return run

    n_tokens = args.batch * args.seq
    print(
        f"config: dim={cfg.dim} layers={cfg.n_layers} heads={cfg.n_heads} vocab={cfg.vocab_size} "
        f"params={cfg.num_params() / 1e6:.1f}M batch={args.batch} seq={args.seq} dtype={args.dtype} "
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    print(f"max |logits ours - transformers| = {diff:.2e}")
    print(f"{'pass':<18}{'llamaforge tok/s':>18}{'transformers tok/s':>20}{'ratio':>8}")
    spreads = []
    for name, make in (("forward", forward), ("forward+backward", train_step)):
        samples, _ = time_in_turns(
            {"llamaforge": make(ours, False), "transformers": make(theirs, True)},
            warmup=2,
            repeats=args.repeats,
        )
        t_ours = statistics.median(samples["llamaforge"])
        t_hf = statistics.median(samples["transformers"])
        print(
            f"{name:<18}{n_tokens / t_ours:>18,.0f}{n_tokens / t_hf:>20,.0f}{t_hf / t_ours:>8.2f}"
        )
        spreads += [f"  {name} {side}: {spread(times)}" for side, times in samples.items()]
    print("seconds per pass:")
    print("\n".join(spreads))


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
