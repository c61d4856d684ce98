"""The sandbox's operating-system boundary: namespaces, a read-only root, seccomp, limits.

Started by :mod:`llamaforge.eval.sandbox` as ``python -I -S -B sandbox_jail.py
CTL_OUT CTL_IN STATUS_FD REPORT_FD`` with its configuration (a :mod:`marshal`
dict of plain values: the program, the limits, a nonce) on stdin; :mod:`json`
would double the start-up. Standard library only; system calls through
:mod:`ctypes`. Two processes:

* **the keeper** (this script's process) reads its configuration, calls
  ``unshare`` for new user, mount, PID, network, IPC and UTS namespaces, and
  waits while the supervisor writes the user namespace's uid/gid maps (a
  process cannot map an unprivileged id for itself). It then forks the
  sandbox's init and stays outside the new PID namespace as its keeper: it
  kills the init at the wall-clock limit (the init is its own unreaped child,
  so its pid cannot have been reused) and writes the wait status to
  ``STATUS_FD``.
* **the init** is PID 1 of the new PID namespace, so when it dies the kernel
  kills everything else in the namespace: nothing outlives the call, not a
  thread, not a child started with ``setsid``. It builds the file system (a
  read-only tmpfs root with read-only bind mounts of ``/usr``, ``/lib*``,
  ``/bin``, ``/sbin``, the Python installation and every file the
  interpreter has mapped, ``/dev/{null,zero,full,random,urandom}``, and one
  writable tmpfs ``/sandbox`` with a size cap, mounted ``noexec``), enters
  it with ``pivot_root``, becomes uid/gid 65534 with no capabilities and no
  supplementary groups, closes every file descriptor but stdout, stderr and
  the report pipe, sets the resource limits and then runs the harness
  (:func:`sandbox_worker.run`), which installs the seccomp filter
  (:mod:`sandbox_seccomp`) and the audit hook before the program's first
  line. The init never calls ``execve``: the filter forbids it.

A set-up failure is written to ``STATUS_FD`` as ``setup<TAB>reason`` and the
supervisor reports the boundary as broken instead of scoring the program.
"""

import ctypes
import marshal
import os
import resource
import select
import signal
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # trusted siblings only
import sandbox_seccomp  # noqa: E402
import sandbox_worker  # noqa: E402

del sys.path[0]  # the repository is not bound into the sandbox, nor importable there

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# statvfs flags that a read-only remount of a bind mount must keep (the kernel
# refuses to clear flags that were locked when the namespace was made).
ST_KEEP = os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME | os.ST_RELATIME
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache",)
DEVICES = ("null", "zero", "full", "random", "urandom")
NOBODY = 65534
SANDBOX = "/sandbox"

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    check(
        libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def bind_read_only(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND)
    kept = os.statvfs(source).f_flag & ST_KEEP
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def visible_paths() -> list[str]:
    """What the sandbox must see: system folders, the Python installation, mapped files."""
    paths = [p for p in SYSTEM_DIRS if os.path.lexists(p)]
    paths += [p for p in sys.path if os.path.exists(p)]
    paths += [sys.base_prefix, os.path.realpath(sys.executable)]
    try:  # the interpreter, libpython, libc, libffi...: wherever they live
        with open("/proc/self/maps") as maps:
            paths += [line.split(None, 5)[5].strip() for line in maps if "/" in line]
    except OSError:
        pass
    paths += [p for p in SYSTEM_FILES if os.path.exists(p)]
    return list(dict.fromkeys(p for p in paths if p.startswith("/") and os.path.exists(p)))


def open_sources() -> list[tuple[str, str, int]]:
    """``(path, real path, O_PATH descriptor)`` of each visible path, and of the devices.

    Opened while still uid 0 outside (when run as root) so that a Python
    installed under ``/root`` can be bound although uid 65534 could not look
    it up; mounts then name the descriptor, not the path.
    """
    sources, seen = [], []
    for path in visible_paths():
        if os.path.islink(path) and path in SYSTEM_DIRS:  # merged /usr: /lib -> usr/lib
            sources.append((path, os.readlink(path), -1))
            continue
        real = os.path.realpath(path)
        above = [b for b in seen if real == b or real.startswith(b.rstrip("/") + "/")]
        if above and os.stat(real).st_dev == os.stat(above[-1]).st_dev:
            continue  # visible through a folder bound above it (not a mount of its own)
        sources.append((path, real, os.open(real, os.O_PATH | os.O_CLOEXEC)))
        seen.append(real)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            sources.append(("dev", f"/dev/{name}", os.open(f"/dev/{name}", os.O_PATH)))
    return sources


def build_root(root: str, disk_mb: int, sources: list[tuple[str, str, int]]) -> None:
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=0755")
    for path, real, fd in sources:
        if fd < 0:
            os.symlink(real, root + path)
            continue
        inside, source = root + real, f"/proc/self/fd/{fd}"
        if stat.S_ISDIR(os.stat(fd).st_mode):
            os.makedirs(inside, exist_ok=True)
        elif not os.path.exists(inside):
            os.makedirs(os.path.dirname(inside), exist_ok=True)
            open(inside, "a").close()
        if path == "dev":  # devices stay writable (/dev/null)
            mount(source, inside, None, MS_BIND)
        else:
            bind_read_only(source, inside)
        os.close(fd)
    os.mkdir(root + SANDBOX)
    options = f"size={disk_mb}m,nr_inodes=4096,mode=0700,uid={NOBODY},gid={NOBODY}"
    mount("tmpfs", root + SANDBOX, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
    os.chdir(root)
    pivot = sandbox_seccomp.syscall_number(sandbox_seccomp.PIVOT_ROOT)
    # pivot_root(".", "."): the old root is stacked under the new one, then detached.
    check(libc.syscall(pivot, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detaching the old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def become_nobody(as_root: bool) -> None:
    """uid/gid 65534 and no supplementary groups, keeping (for now) the namespace's capabilities.

    Files can only be created under a mapped id, so this comes before the
    file system is built. The capabilities survive because the namespace's
    uid 0 is not mapped, so the kernel's "leaving uid 0" rule does not apply;
    :func:`drop_capabilities` clears them explicitly.
    """
    if as_root:  # the supervisor left setgroups allowed so that root's groups can go
        os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def drop_capabilities() -> None:
    """Empty effective, permitted and inheritable sets (and so the ambient one)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    header, data = Header(0x20080522, 0), (ctypes.c_uint32 * 6)()  # _LINUX_CAPABILITY_VERSION_3
    capset = sandbox_seccomp.syscall_number(sandbox_seccomp.CAPSET)
    check(libc.syscall(capset, ctypes.byref(header), ctypes.byref(data)), "capset")


def set_limits(limits: dict) -> None:
    mib = 1024 * 1024
    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)


def init(config: dict, status_fd: int, report_fd: int, keeper_alive: int) -> int:
    """PID 1 of the sandbox: build it, enter it, run the harness; returns the exit code.

    It leaves the keeper's process group first (``setsid``): the program runs
    in this process, and ``kill(0, ...)`` reaches the caller's whole group
    across PID namespaces, so without it a program run by a non-root
    supervisor (same uid as the keeper) could kill its keeper and abort the
    evaluation. The supervisor's ``killpg`` then misses the init, so dying
    with the keeper rests on ``PR_SET_PDEATHSIG``, which the kernel clears
    whenever the effective uid changes: it is armed again after
    :func:`become_nobody`, and ``keeper_alive`` (the read end of a pipe the
    keeper holds open) shows whether the keeper died before that.
    """
    try:
        os.setsid()
        check(libc.prctl(1, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks out
        sources = open_sources()
        become_nobody(config["as_root"])
        build_root(config["root"], config["limits"]["disk_mb"], sources)
        check(libc.sethostname(b"sandbox", 7), "sethostname")
        drop_capabilities()
        check(libc.prctl(1, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG) as nobody")
        if select.select([keeper_alive], [], [], 0)[0]:  # end of file: the keeper is gone
            raise OSError("the keeper died during the set-up")
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        keep = sorted({0, 1, 2, report_fd, status_fd})
        for low, high in zip(keep, [*keep[1:], 1 << 20], strict=True):
            os.closerange(low + 1, high)
        # surrogatepass: a text with a lone surrogate is written as it is and fails to
        # compile (a SyntaxError for this program) instead of failing the set-up.
        with open(f"{SANDBOX}/program.py", "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(config["source"])
        os.chdir(SANDBOX)
        set_limits(config["limits"])
    except Exception as error:  # any set-up failure means no boundary
        os.write(status_fd, f"setup\t{type(error).__name__}: {error}\n".encode(errors="replace"))
        return 70
    os.close(status_fd)
    return sandbox_worker.run(
        "program.py",
        report_fd,
        config.pop("nonce"),  # popped: no frame of the harness keeps a copy (sandbox_worker.run)
        SANDBOX,
        audit_hook=config["audit_hook"],
        seccomp=lambda: sandbox_seccomp.install(libc),
        harness=(globals(),),
    )


def keep(pid: int, timeout_s: float) -> tuple[int, bool]:
    """Wait for the init, killing it at the wall-clock limit: (wait status, timed out)."""
    fd = os.pidfd_open(pid)
    timed_out = not select.select([fd], [], [], timeout_s)[0]
    if timed_out:
        os.kill(pid, signal.SIGKILL)  # still our unreaped child: the pid is its
    os.close(fd)
    return os.waitpid(pid, 0)[1], timed_out


def main() -> None:
    ctl_out, ctl_in, status_fd, report_fd = map(int, sys.argv[1:5])
    config = marshal.loads(sys.stdin.buffer.read())
    try:
        check(libc.unshare(NAMESPACES), "unshare")
        os.write(ctl_out, b"u")
        if os.read(ctl_in, 1) != b"g":
            raise OSError("the supervisor did not map the user namespace")
    except OSError as error:
        os.write(status_fd, f"setup\t{error}\n".encode(errors="replace"))
        sys.exit(70)
    os.close(ctl_out)
    os.close(ctl_in)
    keeper_alive, keeper_holds = os.pipe()  # the write end closes when the keeper dies
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(keeper_holds)
            code = init(config, status_fd, report_fd, keeper_alive)
        except BaseException as error:  # a harness bug; the program then fails
            os.write(2, f"sandbox harness error: {type(error).__name__}: {error}\n".encode())
        finally:
            os._exit(code)
    os.close(report_fd)
    os.close(keeper_alive)
    wait_status, timed_out = keep(pid, config["limits"]["timeout_s"])
    os.write(status_fd, f"kept\t{wait_status}\t{int(timed_out)}\n".encode())
    os._exit(0)  # no interpreter tear-down: it only costs time


if __name__ == "__main__":
    main()
