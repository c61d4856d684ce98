"""``python -m llamaforge`` and the ``llamaforge`` console script (both call :func:`run`).

This is also what torchrun runs on every rank.

A process that created a process group (a torchrun rank) ends through
:func:`llamaforge.train.parallel.mesh.exit_process` instead of normal
interpreter exit: gloo's C++ threads outlive ``destroy_process_group`` and
could abort the process while Python finalizes (see that module's "Leaving").
Other commands exit normally.
"""

import sys
import traceback

from llamaforge.cli import main


def _exit_code(stop: SystemExit) -> int:
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr)
    return 1


def _run() -> int:
    try:
        return main()
    except SystemExit as stop:
        return _exit_code(stop)
    except BaseException:
        mesh = sys.modules.get("llamaforge.train.parallel.mesh")
        if mesh is None or not mesh.created_process_group():
            raise
        traceback.print_exc()
        return 1


def run() -> None:
    """Run the command line and exit with its status (see the module docstring for how)."""
    code = _run()
    mesh = sys.modules.get("llamaforge.train.parallel.mesh")
    if mesh is not None and mesh.created_process_group():
        mesh.exit_process(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
