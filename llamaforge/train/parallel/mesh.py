"""Process group and the 2-D ("dp", "tp") device mesh of a torchrun launch.

Decisions:

* A run is distributed when torchrun launched it with ``WORLD_SIZE > 1`` or
  when the config asks for ``parallel.dp * parallel.tp > 1``; otherwise the
  single-process trainer runs unchanged and no process group is created.
  ``parallel.dp * parallel.tp`` must equal the world size: a silent guess
  (e.g. filling dp with whatever is left) would change the global batch.
* Backend: NCCL on CUDA (one GPU per process, ``LOCAL_RANK``), gloo on CPU.
  gloo runs FSDP2 and DTensor tensor parallelism, bf16 all-gathers included,
  so the CPU tests exercise the same code as a GPU cluster.
* The mesh is ``init_device_mesh(device, (dp, tp), ("dp", "tp"))``: tp is the
  inner (fastest-varying) dimension, so tensor-parallel peers are neighbouring
  ranks, i.e. on the same node under torchrun's rank assignment, where the
  bandwidth its per-layer collectives need is.
* **Leaving.** ``destroy_process_group`` does not end gloo's C++ threads
  (``pt_gloo_runloop``, ``gloo_tcp_loop``): FSDP's mesh info, DTensor state
  and torch internals keep the process groups referenced, so the threads live
  until the interpreter itself is torn down, and their work objects are then
  destroyed while Python finalizes (the abort PyTorch describes in
  pytorch/pytorch#179291; under load the race is lost now and then:
  "terminate called without an active exception", SIGABRT, after a run that
  had finished). So a process that created a process group ends with
  :func:`exit_process`: leave the group, flush, then ``os._exit`` without
  interpreter finalization (``python -m llamaforge`` does this).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from llamaforge.errors import ConfigError


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (or Slurm via torchrun), 1 when launched directly."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE={raw!r} is not an integer") from None


def wants_distributed(dp: int, tp: int) -> bool:
    return launched_world_size() > 1 or dp * tp > 1


@dataclass
class ParallelContext:
    """Where this process sits: its rank, its device and the ("dp", "tp") mesh."""

    mesh: DeviceMesh
    device: torch.device
    rank: int
    world_size: int

    @property
    def dp(self) -> int:
        return self.mesh["dp"].size()

    @property
    def tp(self) -> int:
        return self.mesh["tp"].size()

    @property
    def dp_rank(self) -> int:
        return self.mesh["dp"].get_local_rank()

    @property
    def tp_rank(self) -> int:
        return self.mesh["tp"].get_local_rank()

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, reports, summaries and progress bars."""
        return self.rank == 0

    # ---- small collectives over the whole world ---------------------------------
    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """Element-wise sum or max of a few floats over all ranks (one collective)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return tensor.tolist()

    def all_gather(self, value: float) -> list[float]:
        """One float from every rank, in rank order."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self._comm_device)
        out = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return [float(t) for t in out]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (None elsewhere)."""
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


_CREATED_GROUP = False  # init_parallel created a process group in this process


def init_parallel(dp: int, tp: int, device_name: str = "auto") -> ParallelContext:
    """Join (or create) the process group and build the mesh; check ``dp * tp`` first."""
    world = launched_world_size()
    if dp * tp != world:
        how = (
            f"launch with `torchrun --nproc_per_node {dp * tp} -m llamaforge train CONFIG`"
            if world == 1
            else f"set parallel.dp and parallel.tp so that their product is {world}"
        )
        raise ConfigError(
            f"parallel.dp * parallel.tp = {dp} * {tp} = {dp * tp}, but the job has "
            f"WORLD_SIZE={world} processes; {how}"
        )
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    global _CREATED_GROUP
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        _CREATED_GROUP = True
    mesh = init_device_mesh(device.type, (dp, tp), mesh_dim_names=("dp", "tp"))
    return ParallelContext(
        mesh=mesh, device=device, rank=dist.get_rank(), world_size=dist.get_world_size()
    )


def shutdown_parallel() -> None:
    """Leave the process group (idempotent), so the process exits without gloo/NCCL warnings."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def created_process_group() -> bool:
    """Whether this process created a process group (its C++ threads then outlive it)."""
    return _CREATED_GROUP


def exit_process(code: int) -> NoReturn:
    """End a process that created a process group, without interpreter finalization.

    Why: see "Leaving" in the module docstring. Everything Python would do at
    exit that matters here is done first: the group is left (a no-op when the
    trainer already left it), logging handlers and ``sys.stdout``/``stderr``
    are flushed. ``atexit`` handlers do not run; nothing in llamaforge uses
    them, and locks held through file descriptors are released by the OS.
    """
    try:
        shutdown_parallel()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
                stream.flush()
        os._exit(code)
