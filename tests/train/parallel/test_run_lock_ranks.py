"""A run folder locked by another job stops every rank of a distributed run at once."""

from __future__ import annotations

import pytest

from tests.train.parallel.launch import run_ranks, tiny_config, train
from tests.train.test_run_lock import start_holder, stop


def test_every_rank_is_refused_when_another_process_holds_the_run_folder(tmp_path) -> None:
    config = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    try:
        with pytest.raises(AssertionError, match="a rank failed") as failed:
            run_ranks(train, config, ["parallel.dp=2", f"train.run_dir={str(run_dir)!r}"],
                      world=2, workdir=tmp_path)  # fmt: skip
    finally:
        stop(holder)
    details = str(failed.value)
    assert f"RunFolderLocked: {run_dir} is in use by another trainer (pid {holder.pid}" in details
    assert "RunFolderLocked: rank 0 could not lock" in details  # rank 1 stopped too, no hang
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()
