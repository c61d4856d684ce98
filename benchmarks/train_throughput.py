"""Training-step throughput: llamaforge vs transformers, and the activation-checkpointing table.

Part 1 (``compare``) times one full optimizer step (forward, fp32 cross-entropy,
backward, clip to 1.0, AdamW) of our ``Transformer`` and of a
``transformers.LlamaForCausalLM`` holding exactly our weights, on the same
batch, in one process. Both go through the very same
``llamaforge.train.step.train_step`` and ``build_optimizer`` (the HF model is
wrapped to return its logits), so the only difference is the model code.
Prints tokens/s of each, the ratio ours / transformers (> 1: we are faster)
and the losses of the first and last step, which must agree: same weights,
same batch, same optimizer (our default, fused AdamW, which is also the
default of transformers' ``Trainer`` on torch >= 2.8), same loss value. A third
side runs the twin with the for-loop AdamW that ``torch.optim.AdamW()``
resolves to on CPU, what a plain PyTorch loop around transformers gets.
Our side computes the loss chunked (``llamaforge.train.chunked_loss``), the
twin from full logits.

Part 2 (``ac``) prints a Markdown table for the activation-checkpointing
modes (none / full / selective, paper §2.4): tokens/s, the memory the forward
pass leaves alive for the backward pass ("saved activations"), and the peak
memory of forward+backward above the model+optimizer baseline (process RSS
on CPU, the CUDA allocator's peak on GPU). Memory comes from one fresh
subprocess per mode, and one more for the transformers twin (no
checkpointing), compared with ours without; speed from one model switching
modes step by step.

    python benchmarks/train_throughput.py [--part all|compare|ac] [--dim 512 --layers 8
        --heads 8 --vocab 32000 --batch 4 --seq 256 --precision fp32|bf16 --repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from common import hf_twin, spread
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from tqdm.auto import tqdm

from llamaforge.model import ModelConfig, build_model
from llamaforge.train.activation_checkpoint import MODES, apply_activation_checkpointing
from llamaforge.train.config import OptimConfig
from llamaforge.train.optim import build_optimizer
from llamaforge.train.step import StepResult, autocast_context, lm_loss, train_step

CONFIG_FLAGS = ("dim", "layers", "heads", "vocab", "batch", "seq", "precision", "device")
INT_FLAGS = (
    ("dim", 512, "model width"),
    ("layers", 8, "number of transformer blocks"),
    ("heads", 8, "attention heads"),
    ("vocab", 32000, "vocabulary size"),
    ("batch", 4, "sequences per step"),
    ("seq", 256, "tokens per sequence"),
    ("warmup", 1, "untimed rounds before timing"),
    ("repeats", 5, "timed rounds; the median step time is kept"),
)
Batch = tuple[torch.Tensor, torch.Tensor]


def model_config(args: argparse.Namespace) -> ModelConfig:
    shape = {"dim": args.dim, "n_layers": args.layers, "n_heads": args.heads}
    return ModelConfig(**shape, vocab_size=args.vocab, max_seq_len=max(args.seq, 256))


def random_batch(cfg: ModelConfig, batch: int, seq: int, device: str) -> Batch:
    """Uniform random tokens; targets are the inputs shifted by one, as in pretraining."""
    data = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device=device)
    return data[:, :-1], data[:, 1:]


class LogitsOnly(nn.Module):
    """Makes a ``LlamaForCausalLM`` look like our model to ``train_step``: tokens in, logits out.

    Its loss is then computed by our ``lm_loss`` (fp32 cross-entropy) rather
    than by ``labels=``, so both sides pay for exactly the same loss code.
    """

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=tokens, use_cache=False).logits


def hf_logits_twin(model: nn.Module) -> nn.Module:
    """The transformers twin, returning plain logits to our loss."""
    return LogitsOnly(hf_twin(model)).train()


def timed_steps(
    steps: list[Callable[[], StepResult]], warmup: int, repeats: int, desc: str
) -> list[tuple[list[float], list[float]]]:
    """Per step function: the timed seconds (after ``warmup`` rounds) and every loss.

    The step functions take turns, one step each per round, so a change in
    the machine's load (other jobs on a shared box) hits all of them alike
    instead of whichever happened to run last.
    """
    seconds: list[list[float]] = [[] for _ in steps]
    losses: list[list[float]] = [[] for _ in steps]
    for index in tqdm(range(warmup + repeats), desc=desc, unit="round", leave=False):
        for slot, step in enumerate(steps):
            start = time.perf_counter()
            result = step()  # float(loss) inside train_step synchronises CUDA
            elapsed = time.perf_counter() - start
            losses[slot].append(result.loss)
            if index >= warmup:
                seconds[slot].append(elapsed)
    return list(zip(seconds, losses, strict=True))


def step_fn(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, precision: str, mode: str = ""
) -> Callable[[], StepResult]:
    """One ``train_step`` (clip 1.0); with ``mode``, first switch the model to that AC mode."""

    def run() -> StepResult:
        if mode:
            apply_activation_checkpointing(model, mode)
        return train_step(model, optimizer, [batch], 1, grad_clip=1.0, precision=precision)

    return run


def compare(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    cfg = model_config(args)
    ours = build_model(cfg, device=args.device)
    theirs = hf_logits_twin(ours)
    batch = random_batch(cfg, args.batch, args.seq, args.device)
    optim_cfg = OptimConfig()
    loop_twin = hf_logits_twin(ours)
    loop_cfg = OptimConfig(implementation="for-loop")  # torch's CPU default for AdamW
    steps = [
        step_fn(m, build_optimizer(m, optim_cfg), batch, args.precision) for m in (ours, theirs)
    ]
    steps.append(step_fn(loop_twin, build_optimizer(loop_twin, loop_cfg), batch, args.precision))
    results = timed_steps(steps, args.warmup, args.repeats, "llamaforge vs transformers")
    n_tokens = args.batch * args.seq
    print(
        f"\n## Training step: llamaforge vs transformers ({args.warmup} warm-up, "
        f"median of {args.repeats}, alternating)\n"
    )
    last = args.warmup + args.repeats
    print(f"| model | tokens/s | best-step tokens/s | loss step 1 | loss step {last} |")
    print("|---|---:|---:|---:|---:|")
    names = ("llamaforge", "transformers", "transformers, for-loop AdamW")
    for name, (seconds, losses) in zip(names, results, strict=True):
        median, best = n_tokens / statistics.median(seconds), n_tokens / min(seconds)
        print(f"| {name} | {median:,.0f} | {best:,.0f} | {losses[0]:.6f} | {losses[-1]:.6f} |")
    (ours_s, ours_losses), (hf_s, hf_losses), (loop_s, _) = results
    print(
        f"\nratio ours / transformers = {statistics.median(hf_s) / statistics.median(ours_s):.2f} "
        f"(medians), {min(hf_s) / min(ours_s):.2f} (best steps); > 1: llamaforge is faster"
    )
    print(
        f"ratio ours / transformers with torch's default (for-loop) AdamW = "
        f"{statistics.median(loop_s) / statistics.median(ours_s):.2f} (medians)"
    )
    for name, (seconds, _) in zip(names, results, strict=True):
        print(f"step seconds, {name}: {spread(seconds)}")
    diffs = [abs(a - b) for a, b in zip(ours_losses, hf_losses, strict=True)]
    print(f"max |loss ours - transformers| over all steps = {max(diffs):.2e}")


class LiveStorageMeter(TorchDispatchMode):
    """Weakly tracks the storage of every tensor an op creates while active.

    After the forward pass, the storages still alive are what autograd,
    ``torch.utils.checkpoint`` and the selective-checkpoint cache keep for the
    backward pass (plus the logits and loss). Counting them this way sees all
    three; ``saved_tensors_hooks`` would not, because checkpointing installs
    its own hooks inside each block and the innermost hooks win, so the
    outputs selective mode keeps would be invisible.
    """

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[weakref.ref] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.refs.append(weakref.ref(leaf.untyped_storage()))
        return out

    def live_bytes(self, exclude: set[int]) -> int:
        alive = {}
        for ref in self.refs:
            storage = ref()
            if storage is not None and storage.data_ptr() not in exclude:
                alive[storage.data_ptr()] = storage.nbytes()
        return sum(alive.values())


def saved_activation_bytes(model: nn.Module, batch: Batch, precision: str) -> int:
    """Bytes held between forward and backward (parameters and inputs excluded)."""
    device = next(model.parameters()).device
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
    meter = LiveStorageMeter()
    with meter, autocast_context(device, precision):
        logits = model(batch[0])
    with meter:
        loss = lm_loss(logits, batch[1])
    del logits
    gc.collect()
    held = meter.live_bytes(exclude)  # before backward frees the saved tensors
    loss.backward()
    model.zero_grad(set_to_none=True)
    return held


def _proc_status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            lines = [line.split() for line in status if line.startswith(field + ":")]
    except OSError:
        return None
    return int(lines[0][1]) * 1024 if lines else None


def _reset_peak(device: torch.device) -> int:
    """Restart the high-water mark at the current usage; return that usage.

    On Linux, writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to the
    current RSS, so transients before the step (imports, construction) do
    not mask its peak.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    current = _proc_status_bytes("VmRSS")
    return current if current is not None else _peak_bytes(device)


def _peak_bytes(device: torch.device) -> int:
    """Peak CUDA allocation, or peak RSS of this process.

    ``VmHWM`` rather than ``getrusage().ru_maxrss``: Linux carries
    ``ru_maxrss`` over from the parent through fork and exec, so a worker
    launched by a big parent would report the parent's peak.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def ac_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One mode, measured in a process of its own so no other mode's peak pollutes it.

    The peak is read inside ``clip_fn``, i.e. after the backward pass and
    before AdamW's first step allocates its state (twice the parameters,
    the same in every mode): what it measures is the forward+backward
    high-water mark above the model+optimizer baseline, gradients included.
    It is the process's first step: later ones would reuse memory the
    allocator kept from it without raising the RSS.
    """
    torch.manual_seed(0)
    cfg = model_config(args)
    device = torch.device(args.device)
    if args.ac_worker == "transformers":  # the twin, no checkpointing: the memory comparison
        model = hf_logits_twin(build_model(cfg, device=device))
    else:
        model = apply_activation_checkpointing(build_model(cfg, device=device), args.ac_worker)
    optimizer = build_optimizer(model, OptimConfig())
    batch = random_batch(cfg, args.batch, args.seq, args.device)
    gc.collect()
    baseline = _reset_peak(device)
    peak: list[int] = []

    def clip_and_probe(params: Any, max_norm: float) -> torch.Tensor:
        peak.append(_peak_bytes(device))
        return nn.utils.clip_grad_norm_(params, max_norm)

    first = train_step(model, optimizer, [batch], 1, 1.0, args.precision, clip_fn=clip_and_probe)
    return {
        "mode": args.ac_worker,
        "saved_bytes": saved_activation_bytes(model, batch, args.precision),
        "peak_delta_bytes": peak[0] - baseline,
        "grad_norm": first.grad_norm,
        "loss": first.loss,
    }


def ac_table(args: argparse.Namespace) -> None:
    """Memory per mode from fresh worker processes; speed from one model switching modes.

    Speed is timed here, on a single model whose wrapping changes before each
    step (``apply_activation_checkpointing`` works on a live model), the
    three modes taking turns so load spikes on a shared machine spread over
    all of them rather than landing on one mode's process.
    """
    rows = []
    for mode in tqdm((*MODES, "transformers"), desc="memory (subprocesses)", leave=False):
        command = [sys.executable, os.path.abspath(__file__), "--ac-worker", mode]
        for flag in CONFIG_FLAGS:
            command += [f"--{flag}", str(getattr(args, flag))]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
        rows.append(json.loads(lines[-1]))
    theirs = rows.pop()
    torch.manual_seed(0)
    cfg = model_config(args)
    model = build_model(cfg, device=args.device)
    optimizer = build_optimizer(model, OptimConfig())
    batch = random_batch(cfg, args.batch, args.seq, args.device)
    steps = [step_fn(model, optimizer, batch, args.precision, mode) for mode in MODES]
    timings = timed_steps(steps, args.warmup, args.repeats, "AC modes")
    rates = [args.batch * args.seq / statistics.median(seconds) for seconds, _ in timings]
    peak_name = "peak CUDA alloc delta" if args.device.startswith("cuda") else "peak RSS delta"
    print(f"\n## Activation checkpointing ({args.warmup} warm-up, median of {args.repeats})\n")
    print(
        f"| mode | tokens/s | relative speed | saved activations (MiB) | {peak_name} (MiB) "
        "| loss step 1 | grad norm step 1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row, rate in zip(rows, rates, strict=True):
        print(
            f"| {row['mode']} | {rate:,.0f} | {rate / rates[0]:.2f} "
            f"| {row['saved_bytes'] / 2**20:,.1f} | {row['peak_delta_bytes'] / 2**20:,.1f} "
            f"| {row['loss']:.6f} | {row['grad_norm']:.6f} |"
        )
    for mode, (seconds, _) in zip(MODES, timings, strict=True):
        print(f"step seconds, {mode}: {spread(seconds)}")
    ours = rows[0]
    print(
        f"\nforward+backward {peak_name}: llamaforge (no AC) {ours['peak_delta_bytes'] / 2**20:,.1f} "
        f"MiB, transformers {theirs['peak_delta_bytes'] / 2**20:,.1f} MiB, ratio "
        f"{ours['peak_delta_bytes'] / theirs['peak_delta_bytes']:.2f} (< 1: we use less); "
        f"saved activations {ours['saved_bytes'] / 2**20:,.1f} vs "
        f"{theirs['saved_bytes'] / 2**20:,.1f} MiB; loss step 1 {ours['loss']:.6f} vs "
        f"{theirs['loss']:.6f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part",
        choices=["all", "compare", "ac"],
        default="all",
        help="which benchmark to run (default: both)",
    )
    for flag, default, text in INT_FLAGS:
        parser.add_argument(f"--{flag}", type=int, default=default, help=text)
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="fp32, or bf16 autocast over fp32 weights (the paper's setting)",
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: cuda if available, else cpu)",
    )
    parser.add_argument("--ac-worker", choices=(*MODES, "transformers"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag, _, _ in INT_FLAGS:
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag} must be {'>= 0' if flag == 'warmup' else '>= 1'}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.ac_worker:
        print(json.dumps(ac_worker(args)))
        return
    cfg = model_config(args)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"config: dim={cfg.dim} layers={cfg.n_layers} heads={cfg.n_heads} vocab={cfg.vocab_size} "
        f"params={cfg.num_params() / 1e6:.1f}M batch={args.batch} seq={args.seq} "
        f"precision={args.precision} device={args.device} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} cpus={os.cpu_count()} load average={load}"
    )
    if args.part in ("all", "compare"):
        compare(args)
    if args.part in ("all", "ac"):
        ac_table(args)


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
