"""A rank SIGKILLed mid-run under real torchrun, then the job relaunched.

torchrun notices the dead rank and tears the job down; the relaunch
(the same command) resumes from the last valid sharded checkpoint and ends
with exactly the losses of an uninterrupted 2-rank run (same layout, same
arithmetic: compared for equality). About 20 s on a busy 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.parallel.launch import run_ranks, tiny_config, train

MAX_STEPS, EVERY = 24, 4
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def torchrun(config: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--standalone", "-m", "llamaforge", "train", str(config), "--quiet",
            "--no-report", "parallel.dp=2", f"train.run_dir={str(run_dir)!r}"]  # fmt: skip


def run_job(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run torchrun in its own process group and kill the whole group on a timeout,
    so a stalled job never leaves orphaned ranks behind."""
    job = subprocess.Popen(command, env=ENV, text=True, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        out, err = job.communicate(timeout=timeout)
    finally:
        kill_group(job)
    return subprocess.CompletedProcess(command, job.returncode, out, err)


def kill_group(job: subprocess.Popen) -> None:
    """SIGKILL torchrun and every rank it started (they share its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def worker_pids(launcher: int) -> list[int]:
    """The ranks: children of torchrun (Linux /proc)."""
    path = Path(f"/proc/{launcher}/task/{launcher}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def final_losses(run_dir: Path) -> dict[int, float]:
    """Loss per step, the last row of a step winning (a relaunch re-logs lost steps)."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a killed rank 0 was writing
        if row["split"] == "train":
            losses[row["step"]] = row["loss"]
    return losses


def test_killed_rank_then_relaunch_resumes_and_matches(tmp_path) -> None:
    config = tiny_config(tmp_path, max_steps=MAX_STEPS, every=EVERY,
                         train={"val_every_steps": 0})  # fmt: skip
    uninterrupted = tmp_path / "uninterrupted"
    run_ranks(train, config, ["parallel.dp=2", f"train.run_dir={str(uninterrupted)!r}"],
              workdir=tmp_path)  # fmt: skip

    run_dir = tmp_path / "run"
    first_checkpoint = run_dir / "checkpoints" / f"step_{EVERY:08d}"
    job = subprocess.Popen(torchrun(config, run_dir), env=ENV, text=True, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (first_checkpoint / "manifest.json").is_file():
            if job.poll() is not None or time.monotonic() > deadline:
                kill_group(job)
                pytest.fail(
                    f"the job ended or stalled before its first checkpoint: {job.communicate()[1]}"
                )
            time.sleep(0.003)
        ranks = worker_pids(job.pid)
        assert len(ranks) == 2
        os.kill(ranks[-1], signal.SIGKILL)
        _, err = job.communicate(timeout=120)
    finally:
        kill_group(job)
    assert job.returncode != 0, err  # torchrun reports the failed job
    assert not (run_dir / "summary.json").exists()  # it really died mid-run
    assert max(final_losses(run_dir)) < MAX_STEPS

    done = run_job(torchrun(config, run_dir), timeout=240)
    assert done.returncode == 0, done.stderr
    assert final_losses(run_dir) == final_losses(uninterrupted)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["stopped_by"], summary["n_devices"]) == (
        MAX_STEPS,
        "finished",
        2,
    )
