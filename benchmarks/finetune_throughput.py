"""Finetuning-step throughput: full vs LoRA, packed vs unpacked, ours vs transformers + peft.

One run, one model config, one synthetic instruction set (random token ids
with Alpaca-like lengths: a prompt that is not scored, then a scored response
and EOS), every variant on the same examples:

* ``ours full   packed``    all weights trained, several examples per row
  (block-diagonal attention, ``documents``), the default layout;
* ``ours full   unpacked``  one example per row, length-grouped, right-padded;
* ``ours LoRA   packed`` / ``ours LoRA unpacked``  rank-8 adapters on wq, wv
  (the LoRA paper's choice and both libraries' default), base frozen;
* ``hf+peft LoRA unpacked`` ``transformers.LlamaForCausalLM`` with exactly our
  weights and ``peft.get_peft_model`` with the same rank/alpha/targets, fed the
  unpacked batches (transformers' SDPA path takes no block-diagonal documents)
  through the same optimizer (AdamW over the trainable parameters), the same
  masked token-mean loss, the same clipping.

Every step goes through ``llamaforge.train.step.train_step(masked=True)``:
only the model differs between "ours LoRA unpacked" and "hf+peft", so their
ratio measures the model and adapter code. Tokens/s counts real (non-padding)
positions, so packed and unpacked are compared on the work that matters.
Speed: all five variants are built in one process and timed in turns
(round-robin, median of ``--repeats`` rounds after a warm-up round), so a
change of machine load hits them alike. Peak memory is measured in a fresh
subprocess per variant: on CPU the peak
resident size (``VmHWM``, reset after the imports) minus the resident size then,
i.e. model + optimizer + activations; on a GPU ``torch.cuda.max_memory_allocated``. The machine's load average is printed at the start
and the end: on a shared machine, ratios are meaningful, absolute numbers
less so.

    python benchmarks/finetune_throughput.py [--dim 256 --layers 4 --heads 4 --vocab 8000
        --seq 256 --rows 8 --steps 6 --repeats 3 --device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from llamaforge.finetune.examples import Example
from llamaforge.finetune.lora import LoRAConfig, apply_lora
from llamaforge.finetune.source import FinetuneLoader
from llamaforge.model import ModelConfig, build_model
from llamaforge.train.batches import IGNORE
from llamaforge.train.config import OptimConfig
from llamaforge.train.optim import build_optimizer
from llamaforge.train.step import train_step

VARIANTS = (
    "ours full packed",
    "ours full unpacked",
    "ours LoRA packed",
    "ours LoRA unpacked",
    "hf+peft LoRA unpacked",
)
LORA = LoRAConfig(enabled=True, rank=8, alpha=16, target_modules=("wq", "wv"))


def examples(vocab: int, seq: int, count: int, seed: int = 0) -> list[Example]:
    """Alpaca-like lengths: prompt 20-45 % of the example, total 16..seq positions."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(16, seq + 1))
        prompt = max(1, int(n * rng.uniform(0.2, 0.45)))
        ids = rng.integers(3, vocab, n + 1)
        ids[-1] = 2  # EOS closes the response
        targets = ids[1:].copy()
        targets[: prompt - 1] = IGNORE
        out.append(Example(ids[:-1].astype(np.int64), targets.astype(np.int64)))
    return out


class LogitsOnly(nn.Module):
    """A (peft-wrapped) ``LlamaForCausalLM`` made to look like our model: tokens in, logits out."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=tokens, use_cache=False).logits


def build(variant: str, cfg: ModelConfig, device: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if variant.startswith("hf+peft"):
        import peft
        from common import hf_twin

        twin = hf_twin(model)
        config = peft.LoraConfig(r=LORA.rank, lora_alpha=LORA.alpha, lora_dropout=0.0,
                                 target_modules=["q_proj", "v_proj"], bias="none")  # fmt: skip
        return LogitsOnly(peft.get_peft_model(twin, config))
    if "LoRA" in variant:
        apply_lora(model, LORA)
    return model


def loader(variant: str, data: list[Example], seq: int, rows: int) -> FinetuneLoader:
    return FinetuneLoader(data, seq, rows, packing=not variant.endswith("unpacked"), seed=0)


def real_tokens(batch: tuple) -> int:
    """Positions that hold an example: padding has input id 0, which no example here uses."""
    return int((batch[0] != 0).sum())


class Variant:
    """One variant's model, optimizer and batches (built once, timed in turns with the others)."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        cfg = ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                          vocab_size=args.vocab, multiple_of=32, max_seq_len=args.seq)  # fmt: skip
        self.name = name
        self.model = build(name, cfg, args.device)
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.optimizer = build_optimizer(self.model, OptimConfig(lr=1e-4, warmup_steps=1))
        source = loader(name, examples(args.vocab, args.seq, args.examples), args.seq, args.rows)
        self.batches = [source.next_batch() for _ in range(args.steps)]
        if name.startswith("hf+peft"):
            self.batches = [b[:2] + (None,) for b in self.batches]  # no documents: unpacked
        self.tokens = sum(real_tokens(b) for b in self.batches)
        self.device, self.losses, self.times = args.device, [], []

    def run(self) -> float:
        start = time.perf_counter()
        for batch in self.batches:
            result = train_step(self.model, self.optimizer, [batch], 1, 1.0, masked=True)
            self.losses.append(result.loss)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start


def peak_memory(name: str, args: argparse.Namespace) -> dict:
    """In a fresh process: the peak memory of building ``name`` and running its steps once."""
    if name.startswith("hf+peft"):
        import peft  # noqa: F401  (its import is not the variant's memory)
        import transformers  # noqa: F401
    baseline = current_rss()
    reset_peak_rss()
    variant = Variant(name, args)
    variant.run()
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = peak_rss() - baseline
    return {"variant": name, "peak_bytes": peak}


def current_rss() -> int:
    """Resident bytes now (Linux ``/proc``; 0 elsewhere, then peaks include the imports)."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM), so imports before it do not count (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
    except OSError:
        pass


def peak_rss() -> int:
    """Peak resident bytes since :func:`reset_peak_rss` (VmHWM; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("dim", 256), ("layers", 4), ("heads", 4), ("vocab", 8000),
                          ("seq", 256), ("rows", 8), ("steps", 6), ("repeats", 3),
                          ("examples", 400)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a subprocess
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(peak_memory(args.variant, args)))
        return
    print(f"start: {load_line()}", flush=True)
    loads = [os.getloadavg()[0]]
    variants = [Variant(name, args) for name in VARIANTS]
    for repeat in range(args.repeats + 1):  # in turns, so load changes hit every variant alike
        for variant in variants:
            elapsed = variant.run()
            if repeat:  # the first round warms up
                variant.times.append(elapsed)
        loads.append(os.getloadavg()[0])
    peaks = {}
    for name in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--variant", name],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]
        loads.append(os.getloadavg()[0])
    results = [
        {"variant": v.name, "tokens_per_s": v.tokens / statistics.median(v.times),
         "real_tokens_per_step": v.tokens / len(v.batches), "first_loss": v.losses[0],
         "trainable": v.trainable, "peak_bytes": peaks[v.name]}
        for v in variants
    ]  # fmt: skip
    print(f"end:   {load_line()}")
    print(f"1-min load over the run: min {min(loads):.2f} median {statistics.median(loads):.2f} "
          f"max {max(loads):.2f}")  # fmt: skip
    print(f"model dim {args.dim}, {args.layers} layers, vocab {args.vocab}, rows of {args.seq}, "
          f"{args.rows} rows/step, {args.steps} steps; median of {args.repeats} rounds "
          f"(variants in turns), {args.device}, torch {torch.__version__}\n")  # fmt: skip
    by = {r["variant"]: r for r in results}
    print(
        "| variant | real tokens/s | real tokens/step | trainable params | peak memory MB (above imports) |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['variant']} | {r['tokens_per_s']:.0f} | {r['real_tokens_per_step']:.0f} | "
              f"{r['trainable']:,} | {r['peak_bytes'] / 2**20:.0f} |")  # fmt: skip
    ratio = lambda a, b: by[a]["tokens_per_s"] / by[b]["tokens_per_s"]  # noqa: E731
    print()
    print(f"LoRA / full (packed):            {ratio('ours LoRA packed', 'ours full packed'):.2f}x")
    print(
        f"packed / unpacked (full):        {ratio('ours full packed', 'ours full unpacked'):.2f}x"
    )
    print(
        f"packed / unpacked (LoRA):        {ratio('ours LoRA packed', 'ours LoRA unpacked'):.2f}x"
    )
    print(f"ours / hf+peft (LoRA, unpacked): "
          f"{ratio('ours LoRA unpacked', 'hf+peft LoRA unpacked'):.2f}x")  # fmt: skip
    print(f"ours packed LoRA / hf+peft:      "
          f"{ratio('ours LoRA packed', 'hf+peft LoRA unpacked'):.2f}x")  # fmt: skip
    full, lora = by["ours full packed"]["peak_bytes"], by["ours LoRA packed"]["peak_bytes"]
    print(f"peak memory LoRA / full (packed): {lora / full:.2f}")
    same = abs(by["ours LoRA unpacked"]["first_loss"] - by["hf+peft LoRA unpacked"]["first_loss"])
    print(f"first-step loss ours vs hf+peft (same weights, same batch): differ by {same:.2e}")


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
