"""Run untrusted, model-generated Python (HumanEval, MBPP) behind an operating-system boundary.

The threat model, what the boundary is made of and what it does not cover
are in docs/evaluation.md ("Running generated code"). In short, each program
runs in a fresh sandbox built by :mod:`llamaforge.eval.sandbox_jail`: its own
user (uid 65534, no capabilities), PID, network, mount, IPC and UTS
namespaces, a read-only root holding only the system libraries and the Python
installation, one size-capped ``noexec`` tmpfs as its only writable place,
the seccomp filter of :mod:`llamaforge.eval.sandbox_seccomp`, resource limits,
and, inside, the audit hook of :mod:`llamaforge.eval.sandbox_worker`. On the
wall-clock limit the namespace's init is killed, and with it everything in
the namespace.

This process is the supervisor. It writes the user namespace's id maps, waits,
and decides the result itself: ``passed`` only when the harness wrote this
run's random nonce after the program's last line *and* exited with status 0;
``failed`` otherwise (the program raised, exited early, was killed, or faked
its output); ``timeout`` (wall clock or CPU time), ``memory`` (address-space
cap) and ``refused`` (the audit hook stopped something) when those happened.
A refusal wins even when the program caught the error; a program that ran
to its end passes even if it printed "MemoryError" (docs/evaluation.md,
"Verdict order").

Where the boundary cannot be built (no user namespaces, no seccomp, another
architecture), :func:`run_program` raises :class:`SandboxUnavailable` unless
called with ``unsafe=True``, which runs the program with only the inner
layers (a separate ``python -I -S`` process, resource limits, the audit hook,
a throw-away folder): the ``--unsafe-code-execution`` of ``llamaforge eval``.
"""

from __future__ import annotations

import contextlib
import functools
import marshal
import math
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from llamaforge.errors import ConfigError, LlamaforgeError

Status = Literal["passed", "failed", "timeout", "refused", "memory"]

_HERE = Path(__file__).resolve().parent
_JAIL, _WORKER = _HERE / "sandbox_jail.py", _HERE / "sandbox_worker.py"
_OUTPUT_TAIL = 2000  # characters of stdout/stderr kept in a result
_SETUP_S = 10.0  # beyond the program's limit: interpreter start and namespace set-up
_NOBODY = 65534


class SandboxUnavailable(LlamaforgeError):
    """The OS boundary cannot be built here and unsafe execution was not asked for."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. ``cpu_s = None`` means ``ceil(timeout_s) + 1``.

    ``disk_mb`` caps the sandbox's only writable place (a tmpfs) in total;
    ``file_size_mb`` caps every file, stdout and stderr included. ``processes``
    is ``RLIMIT_NPROC``, which bounds threads (the seccomp filter already
    forbids every other process); the kernel counts it per user over the
    whole machine.
    """

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int | None = None
    file_size_mb: int = 16
    disk_mb: int = 64
    open_files: int = 64
    processes: int = 1

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"sandbox timeout_s must be > 0, got {self.timeout_s!r}")
        for field in ("memory_mb", "file_size_mb", "disk_mb", "open_files", "processes"):
            if getattr(self, field) < 1:
                raise ConfigError(f"sandbox {field} must be >= 1, got {getattr(self, field)!r}")

    def resolved(self) -> dict:
        cpu = self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1
        return dict(asdict(self), cpu_s=cpu)


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    detail: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _env(home: str) -> dict[str, str]:
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update({name: home for name in ("HOME", "TMPDIR", "TMP", "TEMP")})
    env.update({name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def _read_all(fd: int) -> str:
    """What is in the pipe now; non-blocking, since a writer might still hold it open."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4 * _OUTPUT_TAIL))
            return f.read().decode("utf-8", errors="replace")[-_OUTPUT_TAIL:]
    except OSError:
        return ""


def _write_id_maps(pid: int) -> None:
    """Map uid/gid 65534 inside to 65534 (when root) or to our own ids outside."""
    uid, gid = (_NOBODY, _NOBODY) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    if os.geteuid() != 0:  # an unprivileged map needs setgroups denied first
        Path(f"/proc/{pid}/setgroups").write_text("deny")
    Path(f"/proc/{pid}/uid_map").write_text(f"{_NOBODY} {uid} 1")
    Path(f"/proc/{pid}/gid_map").write_text(f"{_NOBODY} {gid} 1")


class _Run:
    """One program in one sandbox: files, pipes, the child and what it said."""

    def __init__(self, source: str, limits: SandboxLimits, audit_hook: bool, jailed: bool):
        self.limits, self.jailed = limits, jailed
        self.nonce = secrets.token_hex(16)
        self.folder = Path(os.path.realpath(tempfile.mkdtemp(prefix="llamaforge-sandbox-")))
        self.config = {
            "source": source,
            "nonce": self.nonce,
            "limits": limits.resolved(),
            "audit_hook": audit_hook,
            "root": str(self.folder / "root"),
            "as_root": os.geteuid() == 0,
        }
        self.fds: list[int] = []

    def pipe(self) -> tuple[int, int]:
        pair = os.pipe()
        self.fds += pair
        return pair

    def close(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.remove(fd)
            os.close(fd)

    def execute(self) -> tuple[int | None, bool, str, str]:
        """(wait status or None, timed out, report text, status text)."""
        report_r, report_w = self.pipe()
        status_r, status_w = self.pipe()
        if self.jailed:
            # uid 65534 must reach the mount point: traverse, but not list, this folder
            self.folder.chmod(0o711)
            (self.folder / "root").mkdir(mode=0o755)
            ctl_out_r, ctl_out_w = self.pipe()
            ctl_in_r, ctl_in_w = self.pipe()
            child_fds = (ctl_out_w, ctl_in_r, status_w, report_w)
            argv = [str(_JAIL), *map(str, child_fds)]
            cwd, home, preexec = "/", "/sandbox", None
        else:
            (self.folder / "program.py").write_text(
                self.config["source"], encoding="utf-8", errors="surrogatepass"
            )
            child_fds = (report_w,)
            argv = [str(_WORKER), str(report_w)]
            cwd, home = str(self.folder), str(self.folder)
            preexec = functools.partial(_set_limits, self.config["limits"])
        out_path, err_path = self.folder / "stdout.txt", self.folder / "stderr.txt"

        def private(path, flags):  # only we read the program's output
            return os.open(path, flags | os.O_EXCL, 0o600)

        with (
            open(out_path, "wb", opener=private) as out,
            open(err_path, "wb", opener=private) as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-X", "utf8", *argv],
                cwd=cwd,
                env=_env(home),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                pass_fds=child_fds,
                start_new_session=True,
                preexec_fn=preexec,
            )
        for fd in child_fds:
            self.close(fd)
        try:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(marshal.dumps(self.config))
                proc.stdin.close()
            if self.jailed:
                self._map_user_namespace(proc.pid, ctl_out_r, ctl_in_w)
            wall = self.limits.timeout_s + (_SETUP_S if self.jailed else 0.0)
            try:
                proc.wait(timeout=wall)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the init dies with its keeper (PDEATHSIG)
            proc.wait()
        self.stdout, self.stderr = _read_tail(out_path), _read_tail(err_path)
        return proc.returncode, timed_out, _read_all(report_r), _read_all(status_r)

    def _map_user_namespace(self, pid: int, ctl_out_r: int, ctl_in_w: int) -> None:
        if select.select([ctl_out_r], [], [], _SETUP_S)[0] and os.read(ctl_out_r, 1) == b"u":
            try:
                _write_id_maps(pid)
            except OSError:
                return  # closing the pipe unmapped tells the keeper to give up
            os.write(ctl_in_w, b"g")

    def cleanup(self) -> None:
        for fd in list(self.fds):
            self.close(fd)
        shutil.rmtree(self.folder, ignore_errors=True)


def _set_limits(limits: dict) -> None:
    """Unsafe mode only, in the child before exec (inside the jail the init sets them)."""
    mib = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)


def _run(source: str, limits: SandboxLimits, audit_hook: bool, jailed: bool) -> SandboxResult:
    run = _Run(source, limits, audit_hook, jailed)
    try:
        returncode, timed_out, report, status = run.execute()
    finally:
        run.cleanup()
    setup = [line.split("\t", 1)[1] for line in status.splitlines() if line.startswith("setup\t")]
    if setup:
        raise SandboxUnavailable(f"the code sandbox could not be set up: {setup[0]}")
    if jailed:  # the keeper's report on the init; none if the keeper itself was killed
        kept = [line.split("\t")[1:] for line in status.splitlines() if line.startswith("kept\t")]
        if not kept and not timed_out:  # the keeper died on its own: a harness bug, not a verdict
            raise SandboxUnavailable(f"the code sandbox's keeper failed: {run.stderr[-300:]!r}")
        timed_out = timed_out or not kept or kept[0][1] == "1"
        code = os.waitstatus_to_exitcode(int(kept[0][0])) if kept else None
    else:
        code = returncode
    return _classify(report, code, timed_out, limits, run)


def _classify(report: str, code, timed_out: bool, limits: SandboxLimits, run: _Run):
    def result(status: Status, detail: str = "") -> SandboxResult:
        return SandboxResult(status, detail, run.stdout, run.stderr)

    lines = [
        tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in report.splitlines()
    ]
    refusals = [detail for status, detail in lines if status == "refused"]
    if refusals:  # even one the program caught: trying is what the status reports
        return result("refused", refusals[0])
    if timed_out:
        return result("timeout", f"killed after the wall-clock limit of {limits.timeout_s} s")
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return result("timeout", "killed at the CPU-time limit")
    if ("passed", run.nonce) in lines and code == 0:  # even if it printed "MemoryError"
        return result("passed")
    if ("memory", "MemoryError") in lines or "MemoryError" in run.stderr:
        return result("memory", f"ran out of its {limits.memory_mb} MiB address space")
    failures = [detail for status, detail in lines if status == "failed"]
    if failures:
        return result("failed", failures[-1])
    return result("failed", f"the harness ended with code {code} before the program's end")


@functools.cache
def probe_boundary() -> tuple[bool, str]:
    """(whether the OS boundary can be built here, why not); run once per process."""
    if not sys.platform.startswith("linux"):
        return False, f"the sandbox needs Linux namespaces and seccomp; this is {sys.platform}"
    try:
        result = _run(
            "import os\nassert os.getuid() != 0\n", SandboxLimits(timeout_s=10), True, True
        )
    except (OSError, LlamaforgeError) as error:
        return False, str(error)
    if not result.passed:
        return False, f"a trivial program did not pass inside it ({result.status}: {result.detail})"
    return True, ""


def require_boundary(unsafe: bool = False) -> None:
    """Raise :class:`SandboxUnavailable`, saying why, unless the boundary works or ``unsafe``."""
    available, why = probe_boundary()
    if not available and not unsafe:
        raise SandboxUnavailable(
            f"refusing to run generated code: the OS sandbox is unavailable here ({why}); "
            "pass --unsafe-code-execution to run it with only the in-process guards, "
            "ideally inside a throw-away VM or container"
        )


def run_program(
    source: str,
    limits: SandboxLimits | None = None,
    *,
    unsafe: bool = False,
    audit_hook: bool = True,
) -> SandboxResult:
    """Run ``source`` as a Python program in a fresh sandbox; never raises for its failures.

    ``unsafe=True`` allows the inner layers alone where the boundary is
    unavailable (it is used whenever available). ``audit_hook=False`` leaves
    the inner hook out, which tests use to check the boundary on its own.
    """
    require_boundary(unsafe)
    return _run(source, limits or SandboxLimits(), audit_hook, probe_boundary()[0])


def run_programs(
    sources: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
    unsafe: bool = False,
    audit_hook: bool = True,
) -> list[SandboxResult]:
    """Run each program in its own sandbox, ``workers`` at a time; results in input order."""
    if workers < 1:
        raise ConfigError(f"sandbox workers must be >= 1, got {workers}")
    require_boundary(unsafe)
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(sources), disable=not progress, desc="running programs") as bar,
    ):
        run = functools.partial(run_program, limits=limits, unsafe=unsafe, audit_hook=audit_hook)
        futures = [pool.submit(run, source) for source in sources]
        results = []
        for future in futures:
            results.append(future.result())
            bar.update()
    return results
