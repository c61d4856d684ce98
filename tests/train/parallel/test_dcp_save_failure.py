"""A sharded save that cannot write on one rank: one line on every rank, nothing older lost.

The failure is injected in the rank process only (a wrapper around DCP's
per-item writer on rank 1, which writes part of its shard and then raises
ENOSPC as a full disk does); running as root would bypass a read-only folder.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import torch.distributed.checkpoint.filesystem as dcp_filesystem

from llamaforge.train.checkpoint import verify_checkpoint
from llamaforge.train.checkpoint_files import sha256_file
from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.train.parallel.launch import run_ranks, tiny_config

FAILING_SAVE = ".tmp-step_00000002-"


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def train_with_a_full_disk_on_rank_1(config: Path, overrides: list[str], out: Path) -> None:
    """``llamaforge train`` on this rank; rank 1's disk fills up during the step-2 save."""
    from llamaforge.cli import main

    rank = int(os.environ["RANK"])
    if rank == 1:
        real_write_item = dcp_filesystem._write_item

        def disk_fills_up(transforms, stream, data, *args, **kwargs):
            if not Path(stream.name).parent.name.startswith(FAILING_SAVE):
                return real_write_item(transforms, stream, data, *args, **kwargs)
            previous = Path(stream.name).parents[1] / "step_00000001"
            (out / "before.json").write_text(json.dumps(_snapshot(previous)))
            stream.write(b"\0" * 100)  # what fitted
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        dcp_filesystem._write_item = disk_fills_up
    with open(out / f"stderr{rank}.txt", "w", encoding="utf-8") as stderr:
        sys.stderr = stderr
        code = main(["train", str(config), *overrides, "--quiet", "--no-report"])
    (out / f"rc{rank}.txt").write_text(str(code))


def test_a_full_disk_on_one_rank_is_one_line_per_rank_and_the_previous_checkpoint_survives(
    tmp_path,
) -> None:
    config = tiny_config(tmp_path, max_steps=2, every=1)
    run_dir, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    overrides = ["parallel.dp=2", f"train.run_dir={str(run_dir)!r}"]
    run_ranks(train_with_a_full_disk_on_rank_1, config, overrides, out, world=2, workdir=tmp_path)

    for rank in (0, 1):
        assert (out / f"rc{rank}.txt").read_text() == "2"
        err = (out / f"stderr{rank}.txt").read_text()
        assert "Traceback" not in err
        (line,) = [line for line in err.splitlines() if ": error: " in line]
        assert "saving checkpoint step_00000002 failed on rank 1" in line
        assert "No space left on device" in line and "previous checkpoints are unchanged" in line
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000001"]  # no temporary
    previous = checkpoints / "step_00000001"
    verify_checkpoint(previous)
    assert _snapshot(previous) == json.loads((out / "before.json").read_text())

    # Space freed: the run resumes from step 1 (here in one process, resharded) and finishes.
    resumed = Trainer(load_train_config(config, [overrides[1]]), progress=False).run()
    assert resumed.steps == 2
    verify_checkpoint(checkpoints / "step_00000002")
