"""Cached greedy decoding throughput: llamaforge vs transformers' LlamaForCausalLM.

Same config, same weights, same torch, same prompts, one process. Both decode
greedily with a KV cache and produce exactly ``--new`` tokens per prompt (our
side passes no EOS, transformers gets ``min_new_tokens``). Prints generated
tokens/s (prefill included) for each, the ratio (ours / transformers; > 1
means we are faster) and how many generated tokens agree.

    python benchmarks/generate_throughput.py [--dim 512 --layers 8 --batch 4 --prompt 64 --new 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import hf_twin

from llamaforge.inference import SamplingConfig, generate_ids
from llamaforge.model import ModelConfig, build_model


def time_alternating(fns: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Best and median seconds of each function, run in turns after one warm-up each.

    Turns (A B A B ...) rather than blocks (A A A B B B) so that load from
    other processes hits both sides alike; the best time is the least
    disturbed one, the number to compare on a shared machine.
    """
    results = {name: fn() for name, fn in fns.items()}
    samples: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            samples[name].append(time.perf_counter() - start)
    best = {name: min(times) for name, times in samples.items()}
    median = {name: statistics.median(times) for name, times in samples.items()}
    return best, median, results


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        vocab_size=args.vocab,
        max_seq_len=max(512, args.prompt + args.new),
        init_std=0.05,  # peakier logits than 0.02, fewer near-ties between the two
    )
    ours = build_model(cfg).eval()
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

    sampling = SamplingConfig(max_new_tokens=args.new)

    def run_ours():
        return generate_ids(ours, prompts, sampling, eos_id=None)

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

    best, median, results = time_alternating(
        {"llamaforge": run_ours, "transformers": run_theirs}, args.repeats
    )
    ids_ours, ids_hf = results["llamaforge"], results["transformers"]
    n_tokens = args.batch * args.new
    agree = sum(
        a == b for x, y in zip(ids_ours, ids_hf, strict=True) for a, b in zip(x, y, strict=False)
    )
    first_diff = [
        next((j for j, (a, b) in enumerate(zip(x, y, strict=False)) if a != b), None)
        for x, y in zip(ids_ours, ids_hf, strict=True)
    ]
    print(
        f"config: dim={cfg.dim} layers={cfg.n_layers} heads={cfg.n_heads} vocab={cfg.vocab_size} "
        f"params={cfg.num_params() / 1e6:.1f}M batch={args.batch} prompt={lengths} "
        f"new={args.new} greedy float32 torch={torch.__version__} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"{'decoder':<14}{'best s':>9}{'median s':>10}{'best tok/s':>12}")
    for name in ("llamaforge", "transformers"):
        print(f"{name:<14}{best[name]:>9.3f}{median[name]:>10.3f}{n_tokens / best[name]:>12,.0f}")
    ratio = best["transformers"] / best["llamaforge"]
    ratio_median = median["transformers"] / median["llamaforge"]
    print(f"speed ratio (llamaforge / transformers): {ratio:.2f}x best, {ratio_median:.2f}x median")
    print(
        f"token agreement: {agree}/{n_tokens} ({100 * agree / n_tokens:.1f}%); "
        f"first difference per sequence: {first_diff}"
    )


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
