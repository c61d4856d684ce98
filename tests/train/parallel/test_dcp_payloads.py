"""``train`` with ``resume = "auto"`` never runs code from a sharded checkpoint of its run folder.

The run folder is a real 2-rank FSDP run (``dp2_run``) whose newest
checkpoint an attacker tampered with, manifest checksums included (a shared
or downloaded run folder carries its own manifest, so verification alone
cannot stop this). Each payload is live: a plain ``pickle.load`` or
``torch.load(weights_only=False)``, which torch's own DCP reader uses, would
create the marker.
"""

from __future__ import annotations

import io
import shutil

import pytest
import torch

from llamaforge.cli import main
from tests.formats.dcp_payloads import (
    assert_live,
    bytes_item_payload,
    metadata_payloads,
    rehash_manifest,
)

PAYLOADS = ("os.system", "builtins.exec", "nested-gadget", "optimizer-lr", "weight-as-bytes")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_resume_auto_refuses_a_crafted_checkpoint(dp2_run, reference, tmp_path, payload, capsys):
    config, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(dp2_run, run_dir)
    folder = run_dir / "checkpoints" / "step_00000006"
    marker = tmp_path / "pwned"
    if payload == "optimizer-lr":  # a non-tensor entry: DCP reads it with weights_only=False
        data = bytes_item_payload(folder, "optimizer.param_groups.0.lr", marker)
    elif payload == "weight-as-bytes":
        data = bytes_item_payload(folder, "model.output.weight", marker, as_bytes=True)
    else:
        data = metadata_payloads(folder, marker)[payload]
        assert_live(data, marker)
        (folder / ".metadata").write_bytes(data)
    if payload in ("optimizer-lr", "weight-as-bytes"):
        torch.load(io.BytesIO(data), weights_only=False)  # live under torch's default planner
        assert marker.exists()
        marker.unlink()
    rehash_manifest(folder)
    overrides = [f"train.run_dir={str(run_dir)!r}", "train.max_steps=8", "--quiet", "--no-report"]
    code = main(["train", str(config), *overrides, "--resume", "auto"])
    err = capsys.readouterr().err
    assert not marker.exists(), "resuming ran code from the checkpoint"
    assert code == 2
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "step_00000006" in last and "error" in last, err
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len((dp2_run / "metrics.jsonl").read_text().splitlines())  # no new steps
