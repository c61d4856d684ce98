"""What the benchmarks share: the transformers twin of our model, and noise reporting.

Every benchmark prints the load average when it starts and ends
(:func:`load_line`, or :func:`report_load` around ``main``) and, for every
side it times, min / median / max (:func:`spread`): on a shared machine the
spread shows the noise a single ratio would hide.

The twin is built through our own Hugging Face export (``formats.huggingface.
to_hf``), so every comparison also exercises the converter, and it is pinned
to the same SDPA attention kernel we call: the comparison then measures the
code around the kernels, not a kernel choice.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn


def hf_twin(model: nn.Module) -> nn.Module:
    """A transformers ``LlamaForCausalLM`` holding exactly our weights, on our device."""
    from transformers import LlamaForCausalLM

    from llamaforge.formats.huggingface import to_hf

    with tempfile.TemporaryDirectory() as folder:
        to_hf(model, folder)
        twin = LlamaForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="sdpa"
        )
    return twin.to(next(model.parameters()).device)


def load_line(when: str) -> str:
    """``load average at <when>: 1-min 5-min 15-min (N CPUs)``."""
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"load average at {when}: {loads} (1, 5, 15 min; {os.cpu_count()} CPUs)"


@contextlib.contextmanager
def report_load() -> Iterator[None]:
    """Print the load average before and after the body (also when it fails)."""
    print(load_line("start"), flush=True)
    try:
        yield
    finally:
        print(load_line("end"), flush=True)


def spread(samples: Sequence[float], scale: float = 1.0, unit: str = "s", digits: int = 4) -> str:
    """``min a / median b / max c <unit>`` of ``samples`` times ``scale``, ``digits`` significant."""
    values = [x * scale for x in samples]
    if not values:
        return "no samples"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"min {low:.{digits}g} / median {mid:.{digits}g} / max {high:.{digits}g} {unit} (n={len(values)})"


def time_in_turns(
    fns: dict[str, Callable[[], object]], warmup: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Seconds of every call of each function, and its last result.

    The functions take turns, one call each per round (``warmup`` untimed
    rounds first), so a change in the machine's load hits every side alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, object] = {}
    for index in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            elapsed = time.perf_counter() - start
            if index >= warmup:
                samples[name].append(elapsed)
    return samples, results
