"""Sharded (DCP) checkpoints: exact resume, resharding across layouts, export, verification.

Resuming with the same layout must reproduce the uninterrupted curve exactly
(same arithmetic in the same order). Resuming with another layout (dp=2 ->
tp=2, 2 ranks -> 1 process, 1 process -> 2 ranks) follows the single-process
reference within the fp32 tolerance of the equivalence tests, rtol 1e-4 /
atol 1e-5.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llamaforge.errors import CheckpointError
from llamaforge.formats import convert, from_hf, load_any
from llamaforge.formats.dcp import read_dcp_weights
from llamaforge.train.checkpoint import CheckpointWarning, latest_valid, verify_checkpoint
from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.train.parallel.launch import curve, run_ranks, train

TOL = {"rtol": 1e-4, "atol": 1e-5}


def resumed_overrides(checkpoint: Path, run_dir: Path) -> list[str]:
    return [
        f"checkpoint.resume={str(checkpoint)!r}",
        f"checkpoint.dir={str(run_dir / 'checkpoints')!r}",
        f"train.run_dir={str(run_dir)!r}",
    ]


def assert_follows(run_dir: Path, expected_dir: Path, exact: bool = False) -> None:
    """Steps 4-6 of ``run_dir`` (resumed at step 3) against the same steps of ``expected_dir``."""
    got = curve(run_dir)
    expected = [row for row in curve(expected_dir) if row[0] > 3]
    assert [s for s, _, _ in got] == [4, 5, 6]
    if exact:
        assert got == expected
    else:
        torch.testing.assert_close(
            [(loss, norm) for _, loss, norm in got],
            [(loss, norm) for _, loss, norm in expected], **TOL,
        )  # fmt: skip


def test_dcp_checkpoint_holds_shards_of_every_rank_and_verifies(dp2_run) -> None:
    folder = dp2_run / "checkpoints" / "step_00000003"
    names = {p.name for p in folder.iterdir()}
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "rng_rank00000.pt", "rng_rank00001.pt",
            "config.json", "state.json", "manifest.json"} <= names  # fmt: skip
    assert "model.safetensors" not in names  # nothing was gathered on one rank
    verify_checkpoint(folder)


def test_resume_with_the_same_layout_reproduces_the_curve_exactly(dp2_run, reference, tmp_path):
    config, _ = reference
    run_dir = tmp_path / "resumed"
    start = dp2_run / "checkpoints" / "step_00000003"
    run_ranks(train, config, ["parallel.dp=2", *resumed_overrides(start, run_dir)],
              workdir=tmp_path)  # fmt: skip
    assert_follows(run_dir, dp2_run, exact=True)


def test_reshard_dp2_checkpoint_into_tp2(dp2_run, reference, tmp_path) -> None:
    config, single = reference
    run_dir = tmp_path / "tp2"
    start = dp2_run / "checkpoints" / "step_00000003"
    run_ranks(train, config, ["parallel.tp=2", *resumed_overrides(start, run_dir)],
              workdir=tmp_path)  # fmt: skip
    assert_follows(run_dir, single)


def test_two_ranks_to_one_process_with_activation_checkpointing(dp2_run, reference, tmp_path):
    config, single = reference
    run_dir = tmp_path / "one"
    start = dp2_run / "checkpoints" / "step_00000003"
    overrides = ["train.activation_checkpointing=selective", *resumed_overrides(start, run_dir)]
    Trainer(load_train_config(config, overrides), progress=False).run()  # no process group
    assert_follows(run_dir, single)
    # ... and it writes the single-file format again from then on
    assert (run_dir / "checkpoints" / "step_00000006" / "model.safetensors").is_file()


def test_one_process_checkpoint_into_two_ranks(reference, tmp_path) -> None:
    config, single = reference
    run_dir = tmp_path / "dp2"
    start = single / "checkpoints" / "step_00000003"
    run_ranks(train, config, ["parallel.dp=2", *resumed_overrides(start, run_dir)],
              workdir=tmp_path)  # fmt: skip
    assert_follows(run_dir, single)


def test_export_to_native_and_hf_gathers_the_full_model(dp2_run, reference, tmp_path) -> None:
    _, single = reference
    folder = dp2_run / "checkpoints" / "step_00000006"
    sharded = read_dcp_weights(folder)
    native = convert(folder, tmp_path / "native", dst_format="native")
    exported = load_file(native / "model.safetensors")
    assert exported.keys() == sharded.keys()
    for name, tensor in exported.items():
        assert torch.equal(tensor, sharded[name]), name
    # the same weights the single process reached, up to fp32 reduction order
    expected = load_file(single / "checkpoints" / "step_00000006" / "model.safetensors")
    torch.testing.assert_close(exported, expected, rtol=1e-4, atol=1e-5)
    hf_model, _ = from_hf(convert(folder, tmp_path / "hf", dst_format="hf"))
    native_model, _ = load_any(native)
    tokens = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hf_model(tokens), native_model(tokens))


def test_a_corrupt_shard_falls_back_to_the_previous_checkpoint(dp2_run, tmp_path) -> None:
    directory = tmp_path / "checkpoints"
    shutil.copytree(dp2_run / "checkpoints", directory)
    shard = directory / "step_00000006" / "__1_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(CheckpointWarning, match="corrupted"):
        assert latest_valid(directory) == directory / "step_00000003"
    (directory / "step_00000003" / ".metadata").unlink()
    with pytest.raises(CheckpointError, match=".metadata"):
        verify_checkpoint(directory / "step_00000003")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        assert latest_valid(directory) is None
