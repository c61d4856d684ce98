"""The sandbox's test harness and inner layer: run one program under an audit hook.

Standard library only. Inside the OS boundary, :mod:`sandbox_jail` calls
:func:`run` in the sandbox's init process; without it (``unsafe`` mode) the
supervisor starts ``python -I -S -B sandbox_worker.py`` with the same
configuration on stdin.

**Pass/fail.** The harness reports to the supervisor through the pipe
``report_fd``: ``refused<TAB>reason`` the moment the hook refuses something,
``failed``/``memory`` when the program raises (``SystemExit`` included), and
``passed<TAB><nonce>`` only after the program's last line ran, followed by
exit status 0. The nonce is a random secret the supervisor gave this run; a
program that writes ``passed`` to any descriptor, exits early with status 0
(``sys.exit(0)``, ``os._exit(0)``) or kills the harness cannot produce that
pair, so it fails. With the audit hook, the nonce is only in the hook's
closure and the hook writes the ``passed`` line on :data:`PASSED_EVENT`
raised from the harness's own frame (:func:`make_hook`): the program's
frames lead to the harness's through ``f_back``, which no audit event
guards, but no frame's locals or globals hold the nonce. Without the hook
the harness's frame holds it and a program that reads the harness's frames
can find it. Neither mode stops ``candidate`` returning an object equal to
everything: a sandbox contains a program, it does not make it honest.

**The audit hook** (PEP 578) is the second layer, useful chiefly for a clear
``refused`` status. Everything it uses is bound in closures when it is
installed, before the program's first line: it reads no module global, calls
no function the program can replace (``os.path.realpath``,
``builtins.isinstance`` and the like are captured), and this module, the jail
and :mod:`ctypes` are removed from ``sys.modules``. It refuses process
creation, signals, ``resource.setrlimit``, every ``ctypes`` event, importing
``_ctypes``/``_posixsubprocess`` under any package name, subinterpreters
(each starts without the hook), network access, the
direct ways to the harness's state (``sys._getframe`` returning a harness
frame, ``sys._current_frames``, ``gc.get_objects``/``get_referrers``/
``get_referents``), changing directory, relative paths with ``..``, symlinks that point outside the sandbox or upwards, opening directories
outside it (so no ``dir_fd`` outside), writing outside the sandbox and
reading outside the sandbox and the Python installation. What it cannot see
(C code, ``os.mknod``, ``os.pidfd_open``) the OS boundary stops.
"""

import contextlib
import os
import sys
import types

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
    "sys._current_frames": "inspecting the harness (sys._current_frames)",
    "gc.get_objects": "inspecting the harness (gc.get_objects)",
    "gc.get_referrers": "inspecting the harness (gc.get_referrers)",
    "gc.get_referents": "inspecting the harness (gc.get_referents)",
    "os.chdir": "changing directory",
    # A subinterpreter starts with no audit hook (hooks belong to one interpreter).
    "cpython.PyInterpreterState_New": "starting a subinterpreter (it would run without this hook)",
}
# Modules opening doors no audit event guards, refused under any package name
# (an extension module's init symbol is named after the last component).
_DENIED_IMPORTS = {
    "_posixsubprocess": "process creation (import of _posixsubprocess)",
    "_ctypes": "native code (import of _ctypes)",
    "_testcapi": "native code (import of _testcapi)",
    "_testinternalcapi": "native code (import of _testinternalcapi)",
    **{
        name: f"subinterpreters (import of {name})"
        for name in (
            "_xxsubinterpreters",
            "_interpreters",
            "_xxinterpchannels",
            "_interpchannels",
            "_interpqueues",
        )
    },  # fmt: skip
}
# Events that change the file system: (path argument, its dir_fd argument or None) pairs.
_WRITE_EVENTS = {
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)),
    "os.link": ((0, 2), (1, 3)),  # both ends: a hard link to a file outside writes through
    "os.symlink": ((1, 2),),  # the target is checked apart
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
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random")
# Raised by the harness's own frame after the program's last line ran; the hook then reports.
PASSED_EVENT = "llamaforge.sandbox.passed"
_HARNESS_MODULES = ("sandbox_worker", "sandbox_jail", "sandbox_seccomp", "ctypes", "_ctypes")


def _python_roots() -> tuple:
    """Folders of the Python installation: the only place outside the sandbox it may read."""
    import sysconfig

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(sysconfig.get_paths().values())
    paths.update(p for p in sys.path if p)
    return tuple(sorted({os.path.realpath(p) for p in paths if p}))


def make_hook(sandbox: str, report_fd: int, harness: tuple = (), passed=None):
    """The audit hook, with every name it uses bound here, out of the program's reach.

    ``harness`` holds the globals of the harness's modules: ``sys._getframe``
    returning one of their frames is refused. ``passed``: ``(frame, line)``,
    the harness frame that may report the program's end and the line it
    reports (``passed<TAB>nonce``); the hook writes that line on the event
    :data:`PASSED_EVENT` raised from that frame, and refuses it from anywhere
    else. Builtins are bound here too (``any``, ``type``, ...): the program can
    reach this module's globals through its frames' ``f_back``, but not a
    closure.
    """
    readable = (sandbox, *_python_roots())
    writable = (sandbox,)
    denied_events, denied_imports = dict(_DENIED_EVENTS), dict(_DENIED_IMPORTS)
    write_events, read_events = dict(_WRITE_EVENTS), frozenset(_READ_EVENTS)
    write_flags, devices = _WRITE_FLAGS, frozenset(_DEVICES)
    realpath, join, split, normpath = (
        os.path.realpath,
        os.path.join,
        os.path.split,
        os.path.normpath,
    )
    isdir, getcwd, write, fsdecode, fspath = (
        os.path.isdir,
        os.getcwd,
        os.write,
        os.fsdecode,
        os.fspath,
    )
    readlink, str_type, int_type, bytes_type = os.readlink, str, int, bytes
    any_, type_, len_, bool_, getframe = any, type, len, bool, sys._getframe
    permission_error, unresolvable = PermissionError, (OSError, TypeError, ValueError)
    passed_event = PASSED_EVENT
    reporter, passed_line = passed if passed is not None else (None, None)
    del passed
    first_refusal: list = []
    checking: list = []  # set while the hook looks up its own caller (a sys._getframe event)

    def refuse(reason: str):
        if not first_refusal:
            first_refusal.append(reason)
            write(report_fd, f"refused\t{reason}\n".encode(errors="replace"))
        raise permission_error(f"refused by the llamaforge sandbox: {reason}")

    def within(path: str, roots: tuple) -> bool:
        return any_(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def resolve(event: str, path, dir_fd=None, follow=True):
        """Absolute real path; None for an open file descriptor."""
        if type_(path) is int_type:
            return None
        path = "." if path is None else fspath(path)
        path = fsdecode(path) if type_(path) is bytes_type else path
        if type_(path) is not str_type:
            refuse(f"{event} on a path of type {type_(path).__name__}")
        if not path.startswith("/"):
            if ".." in path.split("/"):
                refuse(f"{event} on a relative path with '..': {path!r}")
            if type_(dir_fd) is int_type and dir_fd >= 0:  # audit events pass -1 for none
                path = join(readlink(f"/proc/self/fd/{dir_fd}"), path)
            else:
                path = join(getcwd(), path)
        if follow:
            return realpath(path)
        head, tail = split(normpath(path))  # removing a symlink touches the link only
        return join(realpath(head), tail)

    def check_path(event: str, path, dir_fd=None, *, write_access: bool, follow=True) -> None:
        try:
            real = resolve(event, path, dir_fd, follow)
        except unresolvable:
            refuse(f"{event} on a path it cannot resolve: {path!r}")
        if real is None or real == "/dev/null" or (not write_access and real in devices):
            return
        if not within(real, writable if write_access else readable):
            refuse(
                f"{'writing' if write_access else 'reading'} {real} outside the sandbox ({event})"
            )
        if event == "open" and not within(real, writable) and isdir(real):
            refuse(f"opening the folder {real} outside the sandbox")

    def report_passed() -> None:
        checking.append(True)
        try:
            caller = getframe(2)  # 0: this function, 1: the hook, 2: who raised the event
        finally:
            checking.pop()
        if reporter is None or caller is not reporter:
            refuse("reporting the program's end (only the harness does, after the last line)")
        write(report_fd, passed_line)

    def hook(event: str, args: tuple) -> None:
        if checking:
            return
        if event in denied_events:
            refuse(denied_events[event])
        elif event == passed_event:
            report_passed()
        elif event == "sys._getframe":
            if any_(args[0].f_globals is g for g in harness):
                refuse("inspecting the harness (sys._getframe)")
        elif event.startswith("socket."):
            refuse(f"network access ({event})")
        elif event.startswith("ctypes."):
            refuse(f"native code ({event})")
        elif event == "import":
            name = str_type(args[0]).rpartition(".")[2]
            if name in denied_imports:
                refuse(denied_imports[name])
        elif event == "open":
            path, mode, flags = args
            if type_(flags) is int_type and flags >= 0:
                access = bool_(flags & write_flags)
            else:
                access = any_(c in str_type(mode or "r") for c in "wax+")
            check_path(event, path, write_access=access)
        elif event in write_events:
            for path_at, dir_fd_at in write_events[event]:
                has_fd = dir_fd_at is not None and len_(args) > dir_fd_at
                check_path(event, args[path_at], args[dir_fd_at] if has_fd else None,
                           write_access=True, follow=False)  # fmt: skip
            if event == "os.symlink":
                target = fsdecode(fspath(args[0]))
                if (target.startswith("/") and not within(normpath(target), writable)) or (
                    not target.startswith("/") and ".." in target.split("/")
                ):
                    refuse(f"a symlink to {target!r}, outside the sandbox or upwards")
        elif event in read_events:
            check_path(event, args[0] if args else None, write_access=False)

    return hook


def _describe(error: BaseException) -> str:
    """``Type: message`` like traceback's last line, without walking tracebacks (refused)."""
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    try:
        message = str(error)
    except BaseException:  # the program's own __str__
        message = "<unprintable>"
    return " ".join(f"{name}: {message}".split()) if message else name


def run(program_path, report_fd, nonce, sandbox, *, audit_hook=True, seccomp=None, harness=()):
    """Run the program; the exit code for the process (0 only after the program's end).

    With the audit hook the pass is reported by the hook (see
    :func:`make_hook`), so the nonce lives only in its closure: nothing the
    program can reach from its frames (this frame's locals, any module's
    globals) holds it. The caller must not keep it either (``config.pop``).
    Without the hook it stays in this frame, as the module docstring says.
    """
    write = os.write
    with open(program_path, "rb") as f:  # compile decodes (PEP 263); bad UTF-8 is a SyntaxError
        source = f.read()
    try:
        code = compile(source, program_path, "exec")
    except (SyntaxError, ValueError) as error:
        write(report_fd, f"failed\t{_describe(error)}\n".encode(errors="replace"))
        return 1
    module = types.ModuleType("__main__")  # nothing of the harness in the program's scope
    module.__file__ = program_path
    sys.modules["__main__"] = module
    sys.argv = [program_path]
    harness = (globals(), *harness)
    passed = (sys._getframe(0), f"passed\t{nonce}\n".encode())
    del nonce
    hook = make_hook(os.path.realpath(sandbox), report_fd, harness, passed) if audit_hook else None
    passed_line = None if audit_hook else passed[1]  # no hook: this frame reports
    del passed
    if seccomp is not None:
        seccomp()  # after this, no process creation, no mounts, no sockets but AF_UNIX
    for name in [m for m in sys.modules if m.split(".")[0] in _HARNESS_MODULES]:
        del sys.modules[name]
    if hook is not None:
        sys.addaudithook(hook)
    del hook, seccomp, harness
    audit = sys.audit
    try:
        exec(code, module.__dict__)
    except MemoryError:
        write(report_fd, b"memory\tMemoryError\n")
        return 1
    except BaseException as error:  # SystemExit included: only a program run to its end passes
        write(report_fd, f"failed\t{_describe(error)}\n".encode(errors="replace"))
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed or replaced stream
                stream.flush()
    if passed_line is None:
        audit(PASSED_EVENT)  # the hook checks that this frame raised it, then reports
    else:
        write(report_fd, passed_line)
    return 0


def main() -> None:
    """Unsafe mode: ``python -I -S -B sandbox_worker.py REPORT_FD``, a marshal dict on stdin."""
    import marshal

    config = marshal.loads(sys.stdin.buffer.read())
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    report_fd = int(sys.argv[1])
    nonce = config.pop("nonce")  # popped: no frame of the harness keeps a copy
    code = run("program.py", report_fd, nonce, os.getcwd(), audit_hook=config["audit_hook"])
    os._exit(code)


if __name__ == "__main__":
    main()
