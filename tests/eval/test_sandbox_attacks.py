"""Hostile programs against the code sandbox, each checked by its effect outside.

Every attack runs twice: with the audit hook (the real configuration) and
without it (``audit_hook=False``), which shows that the OS boundary alone
contains it. The assertions look at the world outside the sandbox (a marker
file, a secret, a victim process, a listening socket, the process table),
never at the sandbox's own status string, except where the status is the
effect (a faked pass must not count as one). They are not skipped where the
boundary is missing: there they fail with the reason, as code tasks refuse.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from llamaforge.eval import sandbox
from llamaforge.eval.sandbox import SandboxLimits, SandboxUnavailable, run_program, run_programs

LIMITS = SandboxLimits(timeout_s=3.0, memory_mb=512, disk_mb=8)
HOOK = pytest.mark.parametrize("hook", [True, False], ids=["with-hook", "boundary-only"])
# Name the process from inside (ctypes where allowed), so that the test can find it from outside.
SET_COMM = """
def set_comm(name):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
    except BaseException:
        pass
"""


def run_all(programs, hook, limits=LIMITS):
    return run_programs(programs, limits, workers=2, audit_hook=hook)


def processes_named(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path("/proc", entry, "comm").read_text().strip() == comm:
                found.append(int(entry))
        except OSError:
            continue
    return found


def wait_for_process(comm: str, seconds: float = 10.0) -> list[int]:
    """The one process named ``comm`` once it appears (the sandboxed program starting)."""
    deadline = time.monotonic() + seconds
    while not (pids := processes_named(comm)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(pids) == 1, pids
    return pids


def write_attempts(marker: Path) -> list[str]:
    """Ways to create ``marker`` (outside) after trying to disarm the hook."""
    touch = f"open({str(marker)!r}, 'w').write('pwned')"
    return [
        touch,
        # the hook's rules through the caller's globals
        "import sys\ntry:\n    g = sys._getframe(1).f_globals\n    [v.clear() for v in g.values()"
        " if isinstance(v, (dict, list, set))]\nexcept BaseException:\n    pass\n" + touch,
        # replace what a path check might call
        "import os, builtins\nos.path.realpath = lambda p, **k: '/sandbox/x'\n"
        "builtins.isinstance = lambda *a: False\nos.path.abspath = lambda p: '/sandbox/x'\n"
        + touch,
        # a symlink out, then open through it, then through it as dir_fd
        f"import os\nos.symlink({str(marker.parent)!r}, 'out')\nopen('out/{marker.name}', 'w')",
        f"import os\nos.symlink({str(marker.parent)!r}, 'out')\n"
        f"fd = os.open('out', os.O_RDONLY)\nos.open({marker.name!r}, os.O_CREAT | os.O_WRONLY, dir_fd=fd)",
        f"import os\nfd = os.open({str(marker.parent)!r}, os.O_RDONLY)\n"
        f"os.open({marker.name!r}, os.O_CREAT | os.O_WRONLY, dir_fd=fd)",
        f"import os\nos.mkfifo({str(marker)!r})",
        f"import os, stat\nos.mknod({str(marker)!r}, stat.S_IFREG | 0o644)",
        f"import os\nos.link('/etc/hostname', {str(marker)!r})",
        # a shell through every door: os.system, subprocess, ctypes -> libc system()
        f"import os\nos.system('echo pwned > {marker}')",
        f"import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned > {marker}'])",
        f"import ctypes\nctypes.CDLL(None).system(b'echo pwned > {marker}')",
        # a subinterpreter starts without the audit hook
        SUBINTERPRETER.format(code=f"{touch}\nimport os\nos.system('echo pwned > {marker}')"),
    ]


# Runs ``code`` in a subinterpreter by any of the modules that make one (3.11 to 3.14).
SUBINTERPRETER = """
code = {code!r}
try:
    import _xxsubinterpreters as si
except ImportError:
    import _interpreters as si
si.run_string(si.create(), code)
"""


@HOOK
def test_nothing_is_written_outside(tmp_path, hook):
    marker = tmp_path / "marker.txt"
    stdlib = Path(os.__file__).resolve().parent / f"lf_{uuid.uuid4().hex}.py"  # read-only inside
    results = run_all([*write_attempts(marker), *write_attempts(stdlib)[:1]], hook)
    assert not stdlib.exists()
    assert not marker.exists() and not marker.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert len(results) == len(write_attempts(marker)) + 1


@HOOK
def test_extension_modules_copied_under_another_name_cannot_run_a_shell(tmp_path, hook):
    marker = tmp_path / "marker.txt"
    copy = (
        "import os, shutil, sys, sysconfig\nos.makedirs('evil', exist_ok=True)\n"
        "open('evil/__init__.py', 'w').close()\n"
        "suffix = sysconfig.get_config_var('EXT_SUFFIX')\n"
        "d = [p for p in sys.path if p.endswith('lib-dynload')][0]\n"
        "shutil.copy(os.path.join(d, NAME + suffix), os.path.join('evil', NAME + suffix))\n"
        "sys.path.insert(0, os.getcwd())\n"
    )
    programs = [
        copy.replace("NAME", "'_posixsubprocess'")
        + "import evil._posixsubprocess as p\n"
        + f"p.fork_exec(['/bin/sh', '-c', 'echo pwned > {marker}'], [b'/bin/sh'], True, (), None,"
        " None, -1, -1, -1, -1, -1, -1, -1, -1, False, False, None, None, None, -1, None, False)",
        copy.replace("NAME", "'_ctypes'")
        + "import evil._ctypes as c\nlibc = c.dlopen(None)\n"
        + f"c.call_function(c.dlsym(libc, 'system'), (b'echo pwned > {marker}',))",
    ]
    run_all(programs, hook)
    assert not marker.exists()


@HOOK
def test_secrets_outside_are_not_read(tmp_path, hook):
    token = uuid.uuid4().hex
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    secret.chmod(0o600)
    leak = "print(data)\nimport sys\nprint(data, file=sys.stderr)"
    programs = [
        f"data = open({str(secret)!r}).read()\n{leak}",
        f"import os\ndata = os.listdir({str(tmp_path)!r})\n{leak}",
        f"import os\nos.symlink({str(secret)!r}, 's')\ndata = open('s').read()\n{leak}",
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
        f"data = os.read(os.open('secret.txt', os.O_RDONLY, dir_fd=fd), 100)\n{leak}",
        f"import glob\ndata = glob.glob('/**/{secret.name}', recursive=True)\n"
        f"data = [open(p).read() for p in data]\n{leak}",
        f"data = open('/proc/{os.getpid()}/environ').read()\n{leak}",
    ]
    results = run_all(programs, hook)
    for result in results:
        assert token not in result.stdout + result.stderr
        assert "secret.txt" not in result.stdout
    # nor the host's password hashes or our repository
    shadow = run_all(
        ["print(open('/etc/shadow').read())", "print(open('/etc/passwd').read())"], hook
    )
    assert all("root:" not in r.stdout for r in shadow)


@HOOK
def test_unrelated_processes_cannot_be_signalled_or_traced(hook):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid = victim.pid
    try:
        programs = [
            f"import os, signal\nos.kill({pid}, signal.SIGKILL)",
            f"import os, signal\nos.killpg(os.getpgid({pid}), signal.SIGKILL)",
            "import os, signal\nos.kill(-1, signal.SIGKILL)",
            f"import os, signal\nfd = os.pidfd_open({pid})\nsignal.pidfd_send_signal(fd, signal.SIGKILL)",
            f"import ctypes\nlibc = ctypes.CDLL(None)\nlibc.ptrace(16, {pid}, 0, 0)\n"  # PTRACE_ATTACH
            f"libc.kill({pid}, 9)\nlibc.syscall(62, {pid}, 9)",
            # pidfd_open by raw system call number, then pidfd_send_signal
            f"import ctypes\nlibc = ctypes.CDLL(None)\nfd = libc.syscall(434, {pid}, 0)\n"
            "libc.syscall(424, fd, 9, 0, 0)",
        ]
        run_all(programs, hook)
        time.sleep(0.1)
        assert victim.poll() is None  # still running
        assert Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "S"
    finally:
        victim.kill()
        victim.wait()


@HOOK
def test_no_tcp_or_udp_reaches_a_loopback_listener(hook):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.3)
    port, udp_port = server.getsockname()[1], udp.getsockname()[1]
    programs = [
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'x')",
        f"import socket\nsocket.create_connection(('localhost', {port}), timeout=1)",
        f"import socket\ns = socket.socket(socket.AF_INET6)\ns.connect(('::1', {port}))",
        f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.sendto(b'x', ('127.0.0.1', {udp_port}))",
        # the raw system call, past the socket module
        "import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.socket(2, 1, 0) < 0\n"
        "assert libc.socket(17, 3, 0) < 0\nassert libc.socket(16, 3, 0) < 0",  # packet, netlink
    ]
    results = run_all(programs, hook)
    with pytest.raises(TimeoutError):
        server.accept()
    with pytest.raises(TimeoutError):
        udp.recvfrom(10)
    server.close()
    udp.close()
    if not hook:  # the raw socket calls failed (their asserts held, so the program ran to its end)
        assert results[-1].passed, results[-1]


@HOOK
def test_no_process_outlives_the_call(tmp_path, hook):
    """Fork bombs, detached children, a new session: nothing named like them survives."""
    comm = f"lf{uuid.uuid4().hex[:10]}"
    forks = [
        "import os\nif os.fork() == 0:\n    os.setsid()",  # a detached child, new session
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.Popen(['sleep', '60'], start_new_session=True)",
        "import ctypes\nlibc = ctypes.CDLL(None)\nif libc.fork() == 0:\n    libc.setsid()",
        "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.syscall(57)",  # raw fork
        "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.syscall(56, 17, 0, 0, 0, 0)",  # raw clone
        "import os\nos.posix_spawn('/bin/sleep', ['sleep', '60'], {})",
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()",
    ]
    programs = [
        f"{SET_COMM}\nset_comm({comm!r})\nimport os, time\ntry:\n"
        + "".join(f"    {line}\n" for line in attempt.splitlines())
        + f"except BaseException:\n    pass\nset_comm({comm!r})\ntime.sleep(60)\n"
        for attempt in forks
    ]
    short = SandboxLimits(timeout_s=1.0, memory_mb=512)
    started = time.monotonic()
    results = run_all(programs, hook, short)
    assert all(r.status in ("timeout", "refused") for r in results), [r.status for r in results]
    assert time.monotonic() - started < 30
    time.sleep(0.2)
    assert processes_named(comm) == []


def test_the_program_runs_as_nobody_without_capabilities_in_its_own_namespaces():
    comm = f"lf{uuid.uuid4().hex[:10]}"
    program = f"{SET_COMM}\nset_comm({comm!r})\nimport time\ntime.sleep(60)\n"
    slow = SandboxLimits(timeout_s=5.0)  # time to look at it from outside, even under load
    box = {}
    thread = threading.Thread(
        target=lambda: box.update(result=run_program(program, slow, audit_hook=False))
    )
    thread.start()
    try:
        pids = wait_for_process(comm)
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pids[0]}/status").read_text().splitlines()
        )
        uids = {int(u) for u in status["Uid"].split()}
        assert uids == ({65534} if os.geteuid() == 0 else {os.geteuid()})
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
        assert len(status["NSpid"].split()) == 2  # a PID namespace of its own
        for ns in ("net", "mnt", "ipc", "pid", "user", "uts"):
            assert os.readlink(f"/proc/{pids[0]}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        assert not os.path.exists(f"/proc/{pids[0]}/root/work")  # a root of its own
    finally:
        thread.join()
    assert box["result"].status == "timeout"
    assert processes_named(comm) == []


@HOOK
def test_disk_and_memory_are_capped_in_total(hook):
    fill = (
        "import os\nwritten = 0\ntry:\n    for i in range(64):\n"
        "        with open(f'f{i}', 'wb') as f:\n"
        "            for _ in range(4):\n                f.write(b'x' * 2**20)\n"
        "                written += 2**20\nexcept OSError:\n    pass\n"
        "print(written // 2**20, os.statvfs('.').f_blocks * os.statvfs('.').f_frsize // 2**20)\n"
    )
    memory = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 2**20))"
    shared = (  # memory outside the address space: memfd, System V shared memory
        "import os\ntry:\n    fd = os.memfd_create('x')\nexcept OSError:\n    fd = None\n"
        "assert fd is None\nimport ctypes\nassert ctypes.CDLL(None).shmget(0, 2**30, 0o1600) < 0"
    )
    results = run_all([fill, shared], hook)
    written, size = map(int, results[0].stdout.split())
    assert written <= 8 and size == 8  # 8 MiB in total, though each file is under its 16 MiB cap
    if not hook:
        assert results[1].passed, results[1]
    small = SandboxLimits(timeout_s=10.0, memory_mb=192)
    assert run_program(memory, small, audit_hook=hook).status == "memory"


def test_a_program_cannot_fake_a_pass():
    fakes = [
        "print('passed')\nimport os\nos._exit(0)",
        "import sys\nsys.exit(0)\nassert False",
        "raise SystemExit",
        "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'passed\\t\\n')\n"
        "    except OSError:\n        pass\nos._exit(0)",
        "import atexit, os\natexit.register(os._exit, 0)\nassert False",
        "import threading, os\nthreading.Timer(0.0, os._exit, (0,)).start()\nimport time\n"
        "time.sleep(1)\nassert False",
    ]
    for hook in (True, False):
        results = run_all([*fakes, "assert 1 + 1 == 2"], hook)
        assert [r.passed for r in results] == [False] * len(fakes) + [True]


# Walks from its own frame to the harness's (f_back is not audited) and tries every secret it
# finds there: a nonce-shaped string, or a prepared line, written to every descriptor.
FRAME_WALK = r"""
import os, sys
def candidates(value, depth=0):
    if isinstance(value, (bytes, str)):
        yield value.encode() if isinstance(value, str) else value
    elif isinstance(value, dict) and depth < 2:
        for item in list(value.values()):
            yield from candidates(item, depth + 1)
    elif isinstance(value, (tuple, list)) and depth < 2:
        for item in value:
            yield from candidates(item, depth + 1)
lines = set()
frame = sys._getframe(0)
while frame is not None:
    for scope in (frame.f_locals, frame.f_globals):
        for found in candidates(scope):
            if found.startswith(b"passed\t"):
                lines.add(found)
            elif len(found) == 32 and all(c in b"0123456789abcdef" for c in found):
                lines.add(b"passed\t" + found + b"\n")
    frame = frame.f_back
for fd in range(3, 64):
    for line in lines:
        try:
            os.write(fd, line)
        except OSError:
            pass
"""


def test_a_program_reading_the_harness_frames_finds_no_pass_to_report():
    """With the audit hook the nonce is only in the hook's closure, and only the harness's own
    frame may raise the event on which the hook reports the program's end."""
    cheats = [
        FRAME_WALK + "os._exit(0)",
        # The red-team's three lines (the locals the harness used to keep).
        "import sys, os\n_h = sys._getframe(0).f_back\n"
        "os.write(_h.f_locals['report_fd'], _h.f_locals['passed_line']); os._exit(0)",
        # Raising the harness's event itself, from the program's top level...
        "import sys, os\nsys.audit('llamaforge.sandbox.passed')\nos._exit(0)",
        # ... or from a stream the harness flushes after the program has failed.
        "import sys\nclass Out:\n    def write(self, s): return len(s)\n"
        "    def flush(self):\n        sys.audit('llamaforge.sandbox.passed')\n"
        "sys.stdout = Out()\nassert False",
        FRAME_WALK.replace("os.write(fd, line)", "pass") + "class Out:\n"
        "    def write(self, s): return len(s)\n    def flush(self):\n"
        "        [os.write(fd, l) for fd in range(3, 64) for l in lines if fd_ok(fd)]\n"
        "def fd_ok(fd):\n    try:\n        os.fstat(fd)\n        return True\n"
        "    except OSError:\n        return False\nsys.stdout = Out()\nassert False",
    ]
    results = run_all([*cheats, FRAME_WALK + "assert 1 + 1 == 2"], True)
    assert [r.passed for r in results] == [False] * len(cheats) + [True], results
    unsafe = run_program(FRAME_WALK + "os._exit(0)", LIMITS, unsafe=True)
    assert not unsafe.passed, unsafe


def test_a_program_that_ran_to_its_end_passes_whatever_it_printed():
    """Printing "MemoryError" is not running out of memory (stderr is the program's own)."""
    printed = "import sys\nsys.stderr.write('MemoryError\\n')\nassert 1 + 1 == 2"
    for hook in (True, False):
        assert [r.status for r in run_all([printed, printed[:-1] + "3"], hook)] == [
            "passed",
            "memory",  # a program that did not pass: its stderr is all there is to go on
        ]


def test_without_the_boundary_code_is_refused_unless_unsafe(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "probe_boundary", lambda: (False, "no user namespaces"))
    with pytest.raises(SandboxUnavailable, match="no user namespaces.*--unsafe-code-execution"):
        run_program("assert True")
    with pytest.raises(SandboxUnavailable):
        run_programs(["assert True"])
    # unsafe: the inner layers only, still a separate process with the hook and the nonce check
    assert run_program("assert True", LIMITS, unsafe=True).passed
    assert not run_program("print('passed')\nimport os\nos._exit(0)", LIMITS, unsafe=True).passed
    marker = tmp_path / "marker.txt"
    assert run_program(f"open({str(marker)!r}, 'w')", LIMITS, unsafe=True).status == "refused"
    assert not marker.exists()
    # the hook is all there is in unsafe mode: a subinterpreter (no hook of its own) is refused
    escape = SUBINTERPRETER.format(code=f"open({str(marker)!r}, 'w').write('pwned')")
    assert run_program(escape, LIMITS, unsafe=True).status == "refused"
    assert not marker.exists()


def test_eval_cli_refuses_code_tasks_without_the_boundary(monkeypatch, tmp_path, capsys):
    from llamaforge.cli import main

    monkeypatch.setattr(sandbox, "probe_boundary", lambda: (False, "seccomp is missing"))
    missing = tmp_path / "no-such-checkpoint"  # refused before the model would load
    assert main(["eval", str(missing), "--tasks", "humaneval"]) == 2
    error = capsys.readouterr().err
    assert "seccomp is missing" in error and "--unsafe-code-execution" in error
    assert error.count("\n") == 1
    # with the flag it gets past the refusal, to the next check (the checkpoint folder)
    assert main(["eval", str(missing), "--tasks", "humaneval", "--unsafe-code-execution"]) == 2
    error = capsys.readouterr().err
    assert "no such model folder" in error and "seccomp" not in error


def test_the_supervisor_kills_the_sandbox_at_the_wall_clock_limit():
    started = time.monotonic()
    result = run_program("import time\ntime.sleep(60)", SandboxLimits(timeout_s=1.0))
    assert result.status == "timeout" and time.monotonic() - started < 8


@HOOK
def test_no_disk_or_memory_is_held_outside_the_limits(hook):
    """fallocate's KEEP_SIZE form on the host's stdout file; vmsplice pinning pages in a pipe."""
    reserve = (  # 64 MiB past the end of fd 1, the supervisor's stdout file on the host disk
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]\n"
        "libc.fallocate(1, 1, 0, 64 << 20)\nprint(os.fstat(1).st_blocks * 512)"
    )
    pin = (  # one page of a mapping into a pipe, then the mapping goes: the pipe would keep it
        "import ctypes, mmap, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\nbuf = ctypes.create_string_buffer(4096)\n"
        "class Iov(ctypes.Structure):\n"
        "    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
        "r, w = os.pipe()\niov = Iov(ctypes.addressof(buf), 4096)\n"
        "number = 278 if os.uname().machine == 'x86_64' else 75\n"
        "print(libc.syscall(number, w, ctypes.byref(iov), 1, 0), ctypes.get_errno())"
    )
    reserved, pinned = run_all([reserve, pin], hook)
    if hook:  # ctypes is refused before the call
        assert reserved.status == pinned.status == "refused"
    else:
        assert int(reserved.stdout.split()[-1]) < 1 << 20, reserved  # nothing reserved
        assert pinned.stdout.split() == ["-1", "1"], pinned  # EPERM: nothing pinned


def test_the_sandbox_dies_with_its_keeper_and_cannot_signal_it():
    """The init leads its own process group (``kill(0)`` stays inside) and dies with the keeper.

    The program leaves nothing to chance: it tries ``setsid`` itself, as a
    program escaping the supervisor's ``killpg`` would. The keeper is killed
    from outside (as an OOM kill would), and the init must follow it, though
    it changed its uid (which clears the parent-death signal) after arming it.
    Boundary only: the program names itself through ctypes, which the hook refuses.
    """
    comm = f"lf{uuid.uuid4().hex[:10]}"
    program = (
        f"{SET_COMM}\nset_comm({comm!r})\nimport os, time\ntry:\n    os.setsid()\n"
        "except OSError:\n    pass\ntime.sleep(60)\n"
    )
    box = {}

    def run():
        try:
            box["result"] = run_program(program, SandboxLimits(timeout_s=30.0), audit_hook=False)
        except SandboxUnavailable as error:  # the keeper is gone: no verdict
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        pids = wait_for_process(comm)
        init = pids[0]
        fields = Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()
        keeper, group, session = map(int, fields[1:4])
        assert group == session == init  # its own session: kill(0, ...) reaches no keeper
        os.kill(keeper, 9)
        deadline = time.monotonic() + 5
        while processes_named(comm) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_named(comm) == []
    finally:
        thread.join(timeout=40)
    assert "error" in box
