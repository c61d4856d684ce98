"""Run untrusted, model-generated Python (HumanEval, MBPP) with several layers of protection.

**This is defence in depth, not a security boundary.** It is built to stop
the accidents that generated code really causes (infinite loops, runaway
memory, ``rm -rf``-like file operations, stray network calls, fork bombs) on
the machine that runs the evaluation. It is *not* built to contain a
determined attacker: a bug in CPython or in a C extension, a kernel exploit,
or a clever escape from the audit hook can get through. To execute untrusted
code at scale, run the whole evaluation inside a throw-away container or VM
(or under nsjail / gVisor / firejail) with no network, and use this module
inside it as the inner layers.

The layers, from the outside in:

1. **A separate process** (``sys.executable -I -S -B -X utf8``): ``-I``
   (isolated mode) ignores ``PYTHON*`` environment variables and keeps the
   current directory off ``sys.path``; ``-S`` skips ``site``, so only the
   standard library is importable (all HumanEval/MBPP need, and it halves the
   start-up); ``-B`` writes no ``.pyc`` files. The program cannot touch the
   evaluator's memory.
2. **A throw-away working directory** (``tempfile.mkdtemp``), deleted
   afterwards whatever happened, holding only the program, and a **scrubbed
   environment**: nothing of the parent's environment is passed (no tokens,
   no proxies); ``HOME`` and ``TMPDIR`` point into the folder; ``PATH`` is the
   system default.
3. **Resource limits** set with ``resource.setrlimit`` in ``preexec_fn`` (in
   the child, before ``exec``), so they cover the whole interpreter:
   ``RLIMIT_AS`` (address space: a huge allocation raises ``MemoryError``
   instead of swapping the machine to death), ``RLIMIT_CPU`` (CPU seconds: the
   kernel kills a busy loop even if the parent dies), ``RLIMIT_FSIZE`` (no
   file, stdout/stderr included, grows past the cap), ``RLIMIT_NOFILE``,
   ``RLIMIT_CORE = 0`` (no core dumps) and ``RLIMIT_NPROC``. The kernel does
   **not** enforce ``RLIMIT_NPROC`` for root, which is who runs inside most
   containers; there, layer 5 is what stops fork storms.
4. **A wall-clock timeout**: the child leads its own session
   (``start_new_session=True``), so on timeout ``os.killpg`` kills the
   whole process group with SIGKILL, including anything it managed to start
   (the group is also killed after a normal exit).
5. **An audit hook** (PEP 578) installed by :mod:`llamaforge.eval.sandbox_worker`
   before the program runs; Python code cannot remove it. It refuses network
   access (every ``socket.*`` event), process creation (``os.fork``,
   ``os.forkpty``, ``os.exec*``, ``os.posix_spawn``, ``os.system``,
   ``subprocess.Popen``, and importing ``_posixsubprocess``), signalling other
   processes, raising resource limits, loading native code through
   ``ctypes``, writing/deleting/renaming files outside the working directory,
   and *reading* files outside the working directory and the Python
   installation (so the user's home and the repository stay unread; note
   that a virtual environment inside the repository is part of the Python
   installation). Paths are resolved with ``os.path.realpath`` so symlinks
   do not help. A refused operation raises ``PermissionError`` in the program
   and the result is ``refused`` with the first reason, even if the program
   catches the error.

Result statuses: ``passed`` (the program ran to its end), ``failed`` (it
raised, ``sys.exit`` included, or ended the process itself), ``timeout``
(wall-clock or CPU limit), ``refused`` (layer 5 stopped something) and
``memory`` (``MemoryError`` under the address-space cap). A program can lie
about its own result (it shares the process with the reporting code): the
sandbox protects the machine, not the benchmark from a cheating model.

Programs run one per process, each isolated from the others. That costs
50-150 ms of start-up per program (``preexec_fn`` rules out vfork, so a large
evaluator process, e.g. with torch loaded, is slower to fork): 164 HumanEval
programs take 5-25 s, and ``run_programs(workers=...)`` runs several at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from llamaforge.errors import ConfigError

Status = Literal["passed", "failed", "timeout", "refused", "memory"]

_WORKER = Path(__file__).with_name("sandbox_worker.py")
_OUTPUT_TAIL = 2000  # characters of stdout/stderr kept in a result


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. ``cpu_s = None`` means ``ceil(timeout_s) + 1``.

    ``processes`` is ``RLIMIT_NPROC`` (the user's process *and thread* count
    at which forking fails; ignored by the kernel for root); None leaves it.
    """

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int | None = None
    file_size_mb: int = 16
    open_files: int = 64
    processes: int | None = 1

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"sandbox timeout_s must be > 0, got {self.timeout_s!r}")
        for field in ("memory_mb", "file_size_mb", "open_files"):
            if getattr(self, field) < 1:
                raise ConfigError(f"sandbox {field} must be >= 1, got {getattr(self, field)!r}")


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    detail: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _set_limits(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec: keep it to plain system calls."""
    mib = 1024 * 1024
    cpu = limits.cpu_s if limits.cpu_s is not None else math.ceil(limits.timeout_s) + 1
    # The soft CPU limit sends SIGXCPU (fatal); the hard one a second later SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)


def _scrubbed_env(folder: str) -> dict[str, str]:
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update({name: folder for name in ("HOME", "TMPDIR", "TMP", "TEMP")})
    # Numeric libraries would otherwise start one thread per core at import.
    env.update({name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pid, signal.SIGKILL)


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4 * _OUTPUT_TAIL))
            return f.read().decode("utf-8", errors="replace")[-_OUTPUT_TAIL:]
    except OSError:
        return ""


def _read_report(fd: int) -> list[tuple[str, str]]:
    """Lines the worker wrote; non-blocking, since an escaped child could hold the pipe open."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    lines = b"".join(chunks).decode("utf-8", errors="replace").splitlines()
    return [tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in lines]


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``source`` as a Python program in a fresh sandbox; never raises for its failures."""
    limits = limits or SandboxLimits()
    folder = os.path.realpath(tempfile.mkdtemp(prefix="llamaforge-sandbox-"))
    read_end, write_end = os.pipe()
    try:
        program = Path(folder, "program.py")
        program.write_text(source, encoding="utf-8")
        stdout_path, stderr_path = Path(folder, "stdout.txt"), Path(folder, "stderr.txt")
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    "-X",
                    "utf8",
                    str(_WORKER),
                    str(write_end),
                    "program.py",
                ],
                cwd=folder,
                env=_scrubbed_env(folder),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(write_end,),
                start_new_session=True,
                preexec_fn=lambda: _set_limits(limits),
            )
        os.close(write_end)
        write_end = -1
        try:
            proc.wait(timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)
        proc.wait()
        return _classify(
            _read_report(read_end),
            proc.returncode,
            timed_out,
            limits,
            _read_tail(stdout_path),
            _read_tail(stderr_path),
        )
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        shutil.rmtree(folder, ignore_errors=True)


def _classify(
    report: list[tuple[str, str]],
    returncode: int,
    timed_out: bool,
    limits: SandboxLimits,
    stdout: str,
    stderr: str,
) -> SandboxResult:
    def result(status: Status, detail: str) -> SandboxResult:
        return SandboxResult(status, detail, stdout, stderr)

    refusals = [detail for status, detail in report if status == "refused"]
    if refusals:
        return result("refused", refusals[0])
    if timed_out:
        return result("timeout", f"killed after the wall-clock limit of {limits.timeout_s} s")
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return result("timeout", "killed at the CPU-time limit")
    final = report[-1] if report else ("", "")
    if final[0] == "memory" or (not report and "MemoryError" in stderr):
        return result("memory", f"ran out of its {limits.memory_mb} MiB address space")
    if final[0] == "passed" and returncode == 0:
        return result("passed", "")
    if final[0] == "failed":
        return result("failed", final[1])
    return result("failed", f"the process ended with code {returncode} before the program did")


def run_programs(
    sources: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
) -> list[SandboxResult]:
    """Run each program in its own sandbox, ``workers`` at a time; results in input order."""
    if workers < 1:
        raise ConfigError(f"sandbox workers must be >= 1, got {workers}")
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(sources), disable=not progress, desc="running programs") as bar,
    ):
        futures = [pool.submit(run_program, source, limits) for source in sources]
        results = []
        for future in futures:
            results.append(future.result())
            bar.update()
    return results
