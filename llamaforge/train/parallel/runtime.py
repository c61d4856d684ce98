"""What the trainer does differently when it runs under a process group.

The single-process trainer stays the reference; this class holds the few
distributed decisions so the loop reads the same in both cases:

* the model is built on the meta device, parallelized (``parallelize``),
  then only this rank's shards are allocated and initialised
  (``meta_init``), before the optimizer is built, so AdamW holds the sharded
  DTensor parameters;
* the data loader reads slice ``dp_rank`` of ``dp`` (tensor-parallel peers
  read the same sequences);
* losses are averaged over all ranks (mean over tp replicas of the dp mean =
  the dp mean), gradient norms are reduced over the mesh;
* a stop signal seen by any rank stops every rank at the same step (Slurm
  and torchrun deliver SIGTERM to ranks at slightly different moments; ranks
  leaving the loop at different steps would deadlock in the next collective).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from llamaforge.train.config import TrainConfig
from llamaforge.train.optim import build_optimizer
from llamaforge.train.parallel.dcp import DistributedCheckpointManager
from llamaforge.train.parallel.fsdp import clip_grad_norm
from llamaforge.train.parallel.mesh import ParallelContext, init_parallel, shutdown_parallel
from llamaforge.train.parallel.meta_init import materialize_and_init
from llamaforge.train.parallel.parallelize import parallelize


class DistributedRuntime:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.ctx: ParallelContext = init_parallel(
            cfg.parallel.dp, cfg.parallel.tp, cfg.train.device
        )
        self.clip_fn = clip_grad_norm

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    def prepare(self, model: nn.Module) -> torch.optim.Optimizer:
        """Parallelize ``model`` in place and build its optimizer over the sharded parameters.

        A model built on the meta device (what the trainer passes) gets its
        shards allocated and initialised only after sharding, with the
        single-process initial weights (``meta_init``).
        """
        train = self.cfg.train
        parallelize(
            model,
            self.ctx,
            precision=train.precision,
            activation_checkpointing=train.activation_checkpointing,
            compile=train.compile,
            compile_backend=train.compile_backend,
        )
        if any(param.is_meta for param in model.parameters()):
            materialize_and_init(model, self.ctx.device, train.seed)
        return build_optimizer(model, self.cfg.optim)

    def loss_reduce(self, loss: torch.Tensor) -> torch.Tensor:
        """Mean over every rank (gloo has no AVG, so SUM then divide)."""
        loss = loss.detach().clone()
        dist.all_reduce(loss)
        return loss / self.ctx.world_size

    def count_reduce(self, count: int) -> float:
        """Scored targets of the global batch: summed over data-parallel ranks only
        (the tp ranks of one data-parallel group hold the same batch)."""
        (total,) = self.ctx.all_reduce([float(count)])
        return total / self.ctx.tp

    def mean_eval_loss(self, loss: float, count: int) -> float:
        """Token-weighted mean of per-rank held-out losses."""
        total, tokens = self.ctx.all_reduce([loss * count, float(count)])
        return total / tokens

    def agree_stop(self, local: str | None) -> str | None:
        """The stop request of any rank, on every rank (this rank's signal name if it had one)."""
        (anyone,) = self.ctx.all_reduce([1.0 if local else 0.0], op="max")
        return local or ("SIGTERM" if anyone else None)

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank; every rank gets the answer."""
        (anyone,) = self.ctx.all_reduce([1.0 if flag else 0.0], op="max")
        return anyone > 0

    def checkpoint_manager(self) -> DistributedCheckpointManager:
        ckpt = self.cfg.checkpoint
        return DistributedCheckpointManager(self.cfg.checkpoint_dir, ckpt.keep_last, self.ctx)

    def mfu_spread(self, own_mfu: float) -> dict[str, float]:
        """Lowest and highest per-rank MFU (one small all-gather, on logged steps only)."""
        ranks = self.ctx.all_gather(own_mfu)
        return {"mfu_min": min(ranks), "mfu_max": max(ranks)}

    def close(self) -> None:
        shutdown_parallel()
