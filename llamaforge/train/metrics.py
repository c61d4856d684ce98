"""Throughput accounting (FLOPs, MFU) and the run's metric log (JSONL + TensorBoard).

MFU (model FLOPs utilisation, PaLM appendix B) is achieved model FLOPs per
second over the hardware peak. Model FLOPs come from
``ModelConfig.flops_per_token`` (6N plus causal attention); recomputation by
activation checkpointing is deliberately not counted, so MFU measures useful
work and drops when checkpointing costs time, as it should.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from llamaforge.model.config import ModelConfig

# Dense (no sparsity) bf16 tensor-core peaks per GPU, from NVIDIA's data sheets.
# Looked up by substring of torch.cuda.get_device_name(), most specific first.
_BF16_PEAK: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200 NVL", 835e12),
    ("H200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),  # SXM and PCIe
)
# Plain FP32 (CUDA cores) peaks, used for fp32 when TF32 matmuls are off
# (PyTorch's default); with TF32 on, the tensor-core rate is half the bf16 one.
_FP32_PEAK: tuple[tuple[str, float], ...] = (
    ("GH200", 67e12),
    ("H200 NVL", 60e12),
    ("H200", 67e12),
    ("H100 NVL", 60e12),
    ("H100 PCIe", 51e12),
    ("H100", 67e12),
    ("A100", 19.5e12),
)


def model_flops_per_token(model_cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) at sequence length ``seq_len``."""
    return model_cfg.flops_per_token(seq_len)


def mfu(
    tokens_per_second: float, flops_per_token: float, peak_flops: float, n_devices: int = 1
) -> float:
    """Fraction of the devices' peak spent on model FLOPs (nan when the peak is unknown)."""
    if peak_flops <= 0 or n_devices <= 0:
        return math.nan
    return tokens_per_second * flops_per_token / (peak_flops * n_devices)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_matmul_flops(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int = 512,
    seconds: float = 0.25,
) -> float:
    """Best observed FLOP/s of a square ``size`` matmul, timed for about ``seconds``."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: thread pools, kernel selection
    _synchronize(device)
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == math.inf:
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / max(best, 1e-9)


def _lookup(name: str, table: tuple[tuple[str, float], ...]) -> float | None:
    return next((peak for key, peak in table if key in name), None)


def _tf32_enabled() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32)


@functools.cache
def _detect(device: torch.device, dtype: torch.dtype) -> float:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        bf16 = _lookup(name, _BF16_PEAK)
        if bf16 is not None:
            if dtype in (torch.bfloat16, torch.float16):
                return bf16
            if _tf32_enabled():
                return bf16 / 2
            return _lookup(name, _FP32_PEAK) or bf16 / 16
        warnings.warn(
            f"no peak-FLOPs entry for GPU {name!r}; using its measured matmul throughput "
            "(MFU will read high). Set log.peak_flops_per_device to the data-sheet value.",
            stacklevel=3,
        )
        return measure_matmul_flops(device, dtype, size=4096, seconds=0.5)
    return measure_matmul_flops(device, dtype)


def detect_peak_flops(device: str | torch.device, dtype: torch.dtype = torch.bfloat16) -> float:
    """Peak FLOP/s of one device for matmuls in ``dtype`` (cached per device and dtype).

    GPUs: the data-sheet dense peak from the table above (A100, H100, H200).
    CPUs publish no usable peak (it depends on AVX-512/AMX, clocks and how
    many cores are really free), so the CPU "peak" is the best throughput of
    a 512x512 matmul measured for a quarter of a second with the current
    thread count: CPU MFU is then the fraction of what this machine's BLAS
    achieves on a large GEMM. It is noisy on shared machines and optimistic
    for small models; ``log.peak_flops_per_device`` overrides it.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _detect(device, dtype)


@dataclass
class TrainResult:
    """What a run reports at the end (``summary.json``, ``report.md``)."""

    steps: int
    tokens: int
    params: int
    train_loss: float
    val_loss: float | None
    initial_val_loss: float | None
    tokens_per_s: float
    mfu: float
    wall_time_s: float  # training time summed over all sessions of the run
    device: str
    n_devices: int
    skipped_steps: int
    stopped_by: str  # "finished", "SIGINT" or "SIGTERM"
    checkpoint: str
    peak_flops: float

    @property
    def train_ppl(self) -> float:
        return math.exp(min(self.train_loss, 50.0))

    @property
    def val_ppl(self) -> float | None:
        return None if self.val_loss is None else math.exp(min(self.val_loss, 50.0))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_ppl": self.train_ppl, "val_ppl": self.val_ppl}


_RESERVED = frozenset({"step", "split", "timestamp"})


def _plain(value: Any) -> Any:
    """Python numbers for tensors and numpy scalars (JSON cannot hold them)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


class MetricsLogger:
    """Append-only ``run_dir/metrics.jsonl`` and TensorBoard scalars, one call per step.

    Each :meth:`log` writes one JSON object per line (``step``, ``split``,
    ``timestamp`` and the metrics) and flushes it, so a crash loses at most the
    line being written; a line cut short by a kill is terminated before the
    next one is appended, and readers skip it. A resumed run appends to the
    same file: readers keep the last row of a step logged twice. NaN and
    infinite values are written as Python's ``json`` writes them (``NaN``,
    ``Infinity``): a skipped step's loss stays visible, and ``json.loads``
    and pandas read them.

    TensorBoard events go to ``run_dir/tensorboard`` under ``<split>/<name>``;
    pass ``start_step`` when resuming so TensorBoard hides the events a
    crashed run wrote after its last checkpoint (``purge_step``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        tensorboard: bool = True,
        jsonl: bool = True,
        start_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = None
        self._writer = None
        if jsonl:
            self._file = self.path.open("a", encoding="utf-8")
            if self._ends_mid_line():
                self._file.write("\n")
                self._file.flush()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only when used

            self._writer = SummaryWriter(
                log_dir=str(self.run_dir / "tensorboard"), purge_step=start_step
            )

    def _ends_mid_line(self) -> bool:
        size = self.path.stat().st_size
        if size == 0:
            return False
        with self.path.open("rb") as handle:
            handle.seek(size - 1)
            return handle.read(1) != b"\n"

    def log(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        """Record ``metrics`` of ``step``; non-numeric values go to the JSONL only."""
        clash = _RESERVED.intersection(metrics)
        if clash:
            raise ValueError(f"metric names {sorted(clash)} are reserved by MetricsLogger")
        metrics = {name: _plain(value) for name, value in metrics.items()}
        if self._file is not None:
            row = {"step": int(step), "split": split, "timestamp": time.time(), **metrics}
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        if self._writer is not None:
            for name, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{split}/{name}", value, global_step=int(step))
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
