"""Scale-out with PyTorch's own engine: a ("dp", "tp") device mesh, FSDP2, TP + SP, DCP.

Launch with ``torchrun --nproc_per_node N -m llamaforge train CONFIG`` and
``parallel.dp * parallel.tp == N`` (see ``docs/distributed.md``). Modules:
``mesh`` (process group and mesh), ``tensor_parallel``, ``fsdp`` (sharding,
mixed precision, clipping), ``parallelize`` (their order), ``dcp`` (sharded
checkpoints), ``runtime`` (what the trainer does differently).
"""

from llamaforge.train.parallel.mesh import (
    ParallelContext,
    init_parallel,
    shutdown_parallel,
    wants_distributed,
)

__all__ = ["ParallelContext", "init_parallel", "shutdown_parallel", "wants_distributed"]
