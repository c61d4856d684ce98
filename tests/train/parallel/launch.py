"""Run a function on 2 CPU ranks (gloo) from a test, and build tiny distributed configs.

The ranks are forked from the test process: they inherit the imported torch
and llamaforge, so a 2-rank run costs the training, not two interpreter
start-ups (spawn or torchrun would add ~5 s per run on a busy 2-core
machine). Only the kill test uses a real ``torchrun``, since what it checks
is torchrun tearing the job down.
"""

from __future__ import annotations

import json
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from tests.train.test_trainer import make_tokens, write_config

SEQ_LEN = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn: Callable, args: tuple, errors: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
    )  # fmt: skip
    torch.set_num_threads(1)
    try:
        fn(*args)
    except BaseException:
        (errors / f"rank{rank}.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise
    finally:
        from llamaforge.train.parallel import shutdown_parallel

        shutdown_parallel()


def run_ranks(fn: Callable, *args: Any, world: int = 2, workdir: Path) -> None:
    """``fn(*args)`` on ``world`` forked ranks; a failure re-raises with the rank's traceback."""
    errors = workdir / "rank-errors"
    errors.mkdir(parents=True, exist_ok=True)
    try:
        mp.start_processes(
            _entry, args=(world, free_port(), fn, args, errors), nprocs=world,
            start_method="fork", join=True,
        )  # fmt: skip
    except Exception as error:
        details = "\n".join(p.read_text() for p in sorted(errors.glob("*.txt")))
        raise AssertionError(f"a rank failed:\n{details}") from error


def train(config: Path, overrides: list[str]) -> None:
    """What ``llamaforge train CONFIG overrides`` does on one rank (no report)."""
    from llamaforge.train.config import load_train_config
    from llamaforge.train.trainer import Trainer

    trainer = Trainer(load_train_config(config, overrides), progress=False)
    try:
        trainer.run()
    finally:
        trainer.close()


def tiny_config(root: Path, max_steps: int = 6, every: int = 3, **sections: dict) -> Path:
    """2 layers, dim 32, 4 heads, vocab 300, seq 32; a global batch of 8 sequences.

    With ``micro_batch_size`` 2 the single process accumulates 4 micro-batches
    per step, dp=2 accumulates 2 per rank, tp=2 accumulates 4: the same 8
    sequences per step in every layout, so the loss curves must agree.
    """
    tokens = root / "tokens"
    if not tokens.exists():
        make_tokens(tokens)
    tables = {
        "data": {"micro_batch_size": 2, "batch_tokens": 8 * SEQ_LEN},
        "train": {"max_steps": max_steps, "val_every_steps": every, "val_batches": 2},
        "checkpoint": {"every_steps": every, "keep_last": 0},
    }
    for name, table in sections.items():
        tables.setdefault(name, {}).update(table)
    return write_config(root / "run.toml", tokens, root / "unused", **tables)


def curve(run_dir: Path, split: str = "train") -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("grad_norm", 0.0)) for r in rows if r["split"] == split]
