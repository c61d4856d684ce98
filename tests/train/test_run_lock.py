"""One writer per run folder: the lock is exclusive, names its holder, and dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llamaforge.train.run_lock import LOCK_NAME, RunFolderLocked, RunLock

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from pathlib import Path
from llamaforge.train.run_lock import RunLock
with RunLock([Path(p) for p in sys.argv[1:]]):
    print("locked", flush=True)
    time.sleep(600)
"""


def start_holder(*folders: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, folders)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert child.stdout.readline().strip() == "locked"
    return child


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()


def test_a_second_writer_is_refused_naming_the_holder_and_sigkill_frees_the_lock(tmp_path):
    run = tmp_path / "run"
    holder = start_holder(run)
    try:
        with pytest.raises(RunFolderLocked) as refused, RunLock([run]):
            pytest.fail("took a lock another process holds")
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and str(run) in message
        assert "\n" not in message
        with pytest.raises(RunFolderLocked, match=f"pid {holder.pid}"):
            RunLock([run]).probe()
    finally:
        holder.send_signal(signal.SIGKILL)
        stop(holder)
    assert (run / LOCK_NAME).read_text().strip() == str(holder.pid)  # the file stays, stale
    with RunLock([run]):  # but the kernel dropped the lock with its holder
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())
    RunLock([run]).probe()  # released on exit


def test_a_checkpoint_folder_outside_the_run_folder_is_locked_too(tmp_path):
    shared = tmp_path / "shared-checkpoints"
    holder = start_holder(tmp_path / "run-a", shared)
    try:
        locked = pytest.raises(RunFolderLocked, match=f"{shared}.*pid {holder.pid}")
        with locked, RunLock([tmp_path / "run-b", shared]):
            pass
        with RunLock([tmp_path / "run-b"]):  # another folder is free
            pass
        with RunLock([tmp_path / "run-b", tmp_path / "run-b" / "checkpoints"]) as lock:
            assert lock.folders == [tmp_path / "run-b"]  # one lock when nested
    finally:
        stop(holder)


def test_the_lock_is_reentrant_in_one_process_and_released_at_the_end(tmp_path):
    lock = RunLock([tmp_path])
    with lock:
        with lock:
            pass
        holder = subprocess.run(
            [sys.executable, "-c", HOLDER, str(tmp_path)], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
        )  # fmt: skip
        assert holder.returncode != 0 and f"pid {os.getpid()}" in holder.stderr
    child = start_holder(tmp_path)  # free again after the outer block
    stop(child)


def test_a_run_folder_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("keep me")
    with pytest.raises(RunFolderLocked, match="cannot create the lock file"):
        RunLock([blocker]).probe()
    assert blocker.read_text() == "keep me"
