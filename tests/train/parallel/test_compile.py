"""``train.compile`` under FSDP2 x TP/SP with selective activation checkpointing, 2 CPU ranks.

What this covers: Dynamo and AOT autograd tracing each transformer block
through DTensor tensor/sequence parallelism, the selective-checkpoint policy
and FSDP2's (untraced) hooks, forward and backward, plus the recompile for
evaluation under ``no_grad``. The backend is ``aot_eager`` (the traced
forward/backward graphs run as ATen ops), so the test takes seconds; it does
not cover inductor's generated kernels, which the single-process compile test
in ``tests/train/test_trainer.py`` exercises.

Tolerance: the same as eager TP (rtol 1e-4 / atol 1e-5 against the
single-process fp32 run; observed ~1e-7), since aot_eager runs the same ops.
The layout is tp=2 (FSDP on a 1-rank dp mesh): the one where a gradient went
missing before the embedding's async collective was resolved in eager code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train.parallel.launch import curve, run_ranks

OVERRIDES = [
    "parallel.tp=2",
    "train.compile=true",
    "train.compile_backend=aot_eager",
    "train.activation_checkpointing=selective",
]


def train_and_report_compilation(config: Path, overrides: list[str], report: Path) -> None:
    """Train on this rank, then record what Dynamo compiled (rank 0)."""
    from torch._dynamo.utils import counters

    from llamaforge.train.config import load_train_config
    from llamaforge.train.trainer import Trainer

    counters.clear()
    trainer = Trainer(load_train_config(config, overrides), progress=False)
    try:
        trainer.run()
    finally:
        trainer.close()
    if trainer.is_main:
        compiled = [layer._compiled_call_impl is not None for layer in trainer.model.layers]
        summary = {
            "compiled_blocks": compiled,
            "graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": dict(counters["graph_break"]),
            "block_types": [type(layer).__name__ for layer in trainer.model.layers],
        }
        report.write_text(json.dumps(summary), encoding="utf-8")


def test_compiled_tp_blocks_follow_the_eager_single_process_trajectory(reference, tmp_path):
    config, single = reference
    run_dir, report = tmp_path / "run", tmp_path / "compiled.json"
    run_ranks(train_and_report_compilation, config,
              [*OVERRIDES, f"train.run_dir={str(run_dir)!r}"], report,
              workdir=tmp_path)  # fmt: skip
    compiled = json.loads(report.read_text())
    assert compiled["compiled_blocks"] == [True, True]
    assert compiled["graphs"] >= 2  # training graph + the no_grad one used by validation
    assert compiled["graph_breaks"] == {}
    assert all("CheckpointedBlock" in name for name in compiled["block_types"])

    expected, got = curve(single), curve(run_dir)
    assert [s for s, _, _ in got] == list(range(1, 7))
    torch.testing.assert_close(
        torch.tensor([(loss, norm) for _, loss, norm in got], dtype=torch.float64),
        torch.tensor([(loss, norm) for _, loss, norm in expected], dtype=torch.float64),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    val_expected, val_got = curve(single, "val"), curve(run_dir, "val")
    torch.testing.assert_close([v for _, v, _ in val_got], [v for _, v, _ in val_expected],
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_full_checkpointing_of_compiled_tp_blocks_is_refused_up_front() -> None:
    """torch 2.13's AOT autograd cannot trace it (see parallelize.py): say so before sharding."""
    from types import SimpleNamespace

    from llamaforge.errors import ConfigError
    from llamaforge.train.parallel.parallelize import parallelize

    untouched = torch.nn.Linear(2, 2)  # not a Transformer: any sharding attempt would fail
    with pytest.raises(ConfigError, match="'selective', or train.compile = false"):
        parallelize(untouched, SimpleNamespace(tp=2), precision="fp32",
                    activation_checkpointing="full", compile=True)  # fmt: skip


def test_compile_backend_is_a_checked_setting(tmp_path) -> None:
    from llamaforge.errors import ConfigError
    from llamaforge.train.config import load_train_config
    from tests.train.parallel.launch import tiny_config

    config = tiny_config(tmp_path)
    assert load_train_config(config).train.compile_backend == "inductor"
    assert load_train_config(config, ["train.compile_backend=aot_eager"]).train.compile_backend \
        == "aot_eager"  # fmt: skip
    with pytest.raises(ConfigError, match="train.compile_backend must be one of"):
        load_train_config(config, ["train.compile_backend=cudagraph"])
