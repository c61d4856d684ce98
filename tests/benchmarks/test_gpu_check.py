"""benchmarks/gpu_check.sh runs end to end on a CPU with tiny shapes and writes its table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


@pytest.mark.slow
def test_gpu_check_runs_every_check_on_cpu_and_writes_one_table(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TQDM_DISABLE": "1"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (out / "gpu_check.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 9  # header + 4 MFU + forward, fwd+bwd, train, 2 decode
    assert "no figure" not in table, table
    assert "FAILED" not in "".join(p.read_text() for p in out.glob("*.log"))
    assert "MFU" in rows[1] and "x transformers" in rows[-1] and "floors per step" in rows[-1]
