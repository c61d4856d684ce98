"""One writer per run folder: an exclusive ``flock`` on ``<folder>/.llamaforge.lock``.

Two trainers on one run folder would delete each other's in-flight
checkpoint temporaries, interleave ``metrics.jsonl`` rows and resume each
other's checkpoints. :class:`RunLock` prevents it:

* The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on a lock file in
  ``train.run_dir`` and, when ``checkpoint.dir`` lies outside it, one in the
  checkpoint folder too. The kernel drops a flock when its holder dies, so a
  SIGKILL never leaves a stale lock; the file itself stays (deleting it would
  let a third process lock a fresh file while the second still holds the
  old one), holding the last holder's pid for the error message.
* A second writer is refused with one line naming the holder's pid.
* Under torchrun only global rank 0 takes the lock (one lock per job, which
  is what "one writer" means when all ranks write one checkpoint); every
  rank learns the outcome, so the whole job stops together when it is held.
* The trainer probes the lock before allocating the model (a refused run
  costs nothing) and holds it from just before resuming until the run ends.
* flock works on local filesystems and on NFS (Linux emulates it with
  POSIX record locks); on filesystems without locks a run is refused with
  the OS error. There is no lock on platforms without ``fcntl`` (Windows).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from llamaforge.errors import LlamaforgeError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".llamaforge.lock"


class RunFolderLocked(LlamaforgeError):
    """Another process is training in this run folder."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process whose pid is not recorded yet"


class RunLock:
    """Exclusive lock of the folders one run writes; use as a context manager, re-entrant."""

    def __init__(
        self,
        folders: list[Path],
        is_main: bool = True,
        any_rank: Callable[[bool], bool] | None = None,
    ) -> None:
        resolved: list[Path] = []
        for folder in folders:
            folder = Path(folder)
            if not any(folder.resolve().is_relative_to(p.resolve()) for p in resolved):
                resolved.append(folder)
        self.folders = resolved
        self.is_main = is_main
        self.any_rank = any_rank
        self._fds: list[int] = []
        self._depth = 0

    def _try(self) -> str | None:
        """Lock every folder; on failure release what was taken and say why."""
        for folder in self.folders:
            path = folder / LOCK_NAME
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                self._release()
                return f"cannot create the lock file {path} ({error.strerror or error})"
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                self._release()
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return (
                        f"{folder} is in use by another trainer ({_holder(path)} holds "
                        f"{path}); wait for it to finish or stop it, or use another "
                        "train.run_dir"
                    )
                return f"cannot lock {path} ({error.strerror or error})"
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fds.append(fd)
        return None

    def _acquire(self) -> None:
        problem = self._try() if (self.is_main and fcntl is not None) else None
        if self.any_rank is not None and self.any_rank(problem is not None) and problem is None:
            problem = f"rank 0 could not lock {self.folders[0]} (see its error)"
        if problem is not None:
            raise RunFolderLocked(problem)

    def _release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the last descriptor drops the flock
        self._fds = []

    def probe(self) -> None:
        """Refuse now if another process holds the lock; takes nothing."""
        if self._depth == 0:
            self._acquire()
            self._release()

    def __enter__(self) -> RunLock:
        if self._depth == 0:
            self._acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._release()
