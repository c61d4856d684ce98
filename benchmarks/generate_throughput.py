"""Cached greedy decoding throughput: llamaforge (eager and compiled) vs transformers.

Same config, same weights, same torch, same prompts, one process. Every side
decodes greedily with a KV cache and produces exactly ``--new`` tokens per
prompt (ours passes no EOS, transformers gets ``min_new_tokens``); the
transformers side uses its default dynamic cache. ``llamaforge compiled`` is
the static-shape step of ``llamaforge.inference.static_decode`` (compiled
once before timing; CUDA graphs on GPU). Sides run in turns after one
warm-up call each. Prints generated tokens/s (prefill included), min /
median / max seconds per side, the ratios to transformers, how many tokens
agree, and two floors per generated token:

* weight bytes / measured memory bandwidth (a ``copy_`` of a 256 MiB buffer,
  read + write): the time to stream every weight once, what batch-small
  decoding cannot beat;
* the empty step: one call of a compiled graph doing a single tiny op, plus
  the argmax and ``.tolist()`` every step of our loop pays (the fixed cost
  a static step cannot remove).

    python benchmarks/generate_throughput.py [--dim 512 --layers 8 --batch 4 --prompt 64
        --new 128 --device cpu|cuda --no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import hf_twin, spread, time_in_turns

from llamaforge.inference import SamplingConfig, generate_ids
from llamaforge.model import ModelConfig, build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_bandwidth(device: torch.device, mib: int = 256, repeats: int = 5) -> float:
    """Bytes/s of the best of ``repeats`` copies of a ``mib`` MiB buffer (read + write)."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def empty_step_seconds(batch: int, vocab: int, device: torch.device, repeats: int = 50) -> float:
    """Median seconds of a compiled one-op step plus argmax and ``.tolist()``."""
    step = torch.compile(lambda x: x + 1, dynamic=False)
    logits = torch.zeros(batch, vocab, device=device)
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        step(logits).argmax(-1).tolist()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=64, help="prompt length in tokens")
    parser.add_argument("--new", type=int, default=128, help="tokens generated per prompt")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--ragged", action="store_true", help="prompt i is shorter by 8*i tokens (left padding)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled side")
    parser.add_argument(
        "--compile-backend", default="inductor", help="aot_eager: tracing only, for smoke runs"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        vocab_size=args.vocab,
        max_seq_len=max(512, args.prompt + args.new),
        init_std=0.05,  # peakier logits than 0.02, fewer near-ties between the sides
    )
    ours = build_model(cfg, device=device).eval()
    theirs = hf_twin(ours)
    lengths = [
        max(1, args.prompt - 8 * i) if args.ragged else args.prompt for i in range(args.batch)
    ]
    prompts = [torch.randint(1, cfg.vocab_size, (n,)).tolist() for n in lengths]
    input_ids = torch.zeros(args.batch, args.prompt, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, p in enumerate(prompts):
        input_ids[i, args.prompt - len(p) :] = torch.tensor(p)
        attention_mask[i, args.prompt - len(p) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    sampling = SamplingConfig(max_new_tokens=args.new)

    def ours_with(compile: bool | str):
        return lambda: generate_ids(ours, prompts, sampling, eos_id=None, compile=compile)

    def run_theirs():
        with torch.inference_mode():
            out = theirs.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=args.new,
                min_new_tokens=args.new,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )
        return out[:, args.prompt :].tolist()

    sides = {"llamaforge": ours_with(False), "transformers": run_theirs}
    compile_s = None
    if not args.no_compile:
        start = time.perf_counter()
        ours_with(args.compile_backend)()  # compile outside the timing
        compile_s = time.perf_counter() - start
        sides["llamaforge compiled"] = ours_with(args.compile_backend)
    samples, results = time_in_turns(sides, warmup=1, repeats=args.repeats)
    n_tokens = args.batch * args.new
    print(
        f"config: dim={cfg.dim} layers={cfg.n_layers} heads={cfg.n_heads} vocab={cfg.vocab_size} "
        f"params={cfg.num_params() / 1e6:.1f}M batch={args.batch} prompt={lengths} "
        f"new={args.new} greedy float32 device={device} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    if compile_s is not None:
        print(f"first compiled call (compile + one generation): {compile_s:.1f} s")
    median = {name: statistics.median(times) for name, times in samples.items()}
    print(f"{'decoder':<21}{'median tok/s':>13}{'best tok/s':>12}{'vs transformers':>17}")
    for name, times in samples.items():
        ratio = median["transformers"] / median[name]
        print(
            f"{name:<21}{n_tokens / median[name]:>13,.0f}{n_tokens / min(times):>12,.0f}"
            f"{ratio:>16.2f}x"
        )
    for name, times in samples.items():
        print(f"seconds per generation, {name}: {spread(times)}")
    reference = results["transformers"]
    for name, ids in results.items():
        if name == "transformers":
            continue
        agree = sum(
            a == b for x, y in zip(ids, reference, strict=True) for a, b in zip(x, y, strict=False)
        )
        first_diff = [
            next((j for j, (a, b) in enumerate(zip(x, y, strict=False)) if a != b), None)
            for x, y in zip(ids, reference, strict=True)
        ]
        print(
            f"token agreement {name} vs transformers: {agree}/{n_tokens} "
            f"({100 * agree / n_tokens:.1f}%); first difference per sequence: {first_diff}"
        )
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    bandwidth = memory_bandwidth(device)
    empty = empty_step_seconds(args.batch, cfg.vocab_size, device)
    per_token = {name: t / args.new for name, t in median.items()}
    print(
        f"floors per step: weights {weight_bytes / 2**20:,.1f} MiB / {bandwidth / 1e9:.1f} GB/s "
        f"measured = {1e3 * weight_bytes / bandwidth:.3f} ms; empty compiled step "
        f"{1e3 * empty:.3f} ms; measured per step: "
        + ", ".join(f"{name} {1e3 * t:.3f} ms" for name, t in per_token.items())
    )


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
