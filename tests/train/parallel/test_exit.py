"""How a process that created a process group ends (``mesh.exit_process``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.train.parallel.launch import free_port


def child(out: Path) -> None:
    import atexit

    from llamaforge.train.parallel import mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0",
                      LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")  # fmt: skip
    mesh.init_parallel(1, 1, "cpu")
    assert mesh.created_process_group()
    mesh.shutdown_parallel()
    sys.stdout = open(out / "stdout.txt", "w")  # noqa: SIM115 (exit_process must flush it)
    print("buffered, not flushed")
    atexit.register(lambda: (out / "finalized").write_text("atexit ran"))
    mesh.exit_process(7)


def test_exit_process_leaves_without_finalizing_and_flushes(tmp_path) -> None:
    """After a trained FSDP run gloo's threads outlive destroy_process_group (mesh.py,
    "Leaving"), so a rank must not finalize with them; it still must not lose output.

    Forked (torch is already imported); the child's exit code, its buffered
    output and the absent atexit marker show what ``exit_process`` did.
    """
    pid = os.fork()
    if pid == 0:
        try:
            child(tmp_path)
        finally:
            os._exit(99)  # child() raised before exit_process
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert (tmp_path / "stdout.txt").read_text() == "buffered, not flushed\n"
    assert not (tmp_path / "finalized").exists()
