"""A sharded (DCP) checkpoint folder cannot run code in any command that reads it.

Every payload is first shown to be live (a plain ``pickle.load`` creates the
marker), then each entry point that reads a model folder (``generate``,
``convert``, ``eval-loss``, ``eval``) must exit 2 with one line naming the
file, and the marker must not exist. ``train`` on ``resume = "auto"`` is in
``tests/train/parallel/test_dcp_payloads.py`` (it uses a real distributed run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llamaforge.cli import main
from llamaforge.data.shard_writer import ShardWriter
from llamaforge.errors import CheckpointError
from llamaforge.formats.dcp_safe import read_dcp_metadata
from tests.eval.tasks.test_commonsense import BOOLQ, write_jsonl
from tests.formats.conftest import random_model
from tests.formats.dcp_payloads import (
    assert_live,
    bytes_item_payload,
    metadata_payloads,
    write_dcp_model_folder,
)

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ("os.system", "os.system-protocol0", "builtins.exec", "nested-gadget")


@pytest.fixture
def dcp_folder(tmp_path, spm_model) -> Path:
    return write_dcp_model_folder(tmp_path / "ckpt", random_model(), spm_model)


def commands(folder: Path, tmp_path: Path) -> dict[str, list[str]]:
    tokens = tmp_path / "tokens"
    if not tokens.exists():
        with ShardWriter(tokens, vocab_size=100, eos_id=2, bos_id=1) as writer:  # spm_model's
            writer.add_tokens(np.arange(2_000) % 100)
            writer.finish()
    write_jsonl(tmp_path / "tasks" / "boolq" / "validation.jsonl", [BOOLQ])
    ck = str(folder)
    return {
        "generate": ["generate", ck, "--prompt", "the", "--max-new-tokens", "2", "--device", "cpu"],
        "convert": ["convert", ck, str(tmp_path / "out")],
        "eval-loss": ["eval-loss", ck, str(tokens), "--max-batches", "1"],
        "eval": ["eval", ck, "--tasks", "boolq", "--data-dir", str(tmp_path / "tasks"),
                 "--device", "cpu", "--no-progress"],
    }  # fmt: skip


def assert_refused(argv: list[str], marker: Path, capsys, names: str = ".metadata") -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists(), f"{argv[0]} ran code from the checkpoint"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert names in err, err


def test_a_legitimate_dcp_folder_still_loads_everywhere(dcp_folder, tmp_path, capsys):
    expected = random_model().state_dict()
    for name, argv in commands(dcp_folder, tmp_path).items():
        assert main(argv) == 0, (name, capsys.readouterr().err)
    exported = load_file(tmp_path / "out" / "model.safetensors")
    assert exported.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(exported[name], tensor), name


@pytest.mark.parametrize("payload", PAYLOADS)
def test_metadata_payload_runs_in_no_entry_point(dcp_folder, tmp_path, capsys, payload):
    marker = tmp_path / "pwned"
    data = metadata_payloads(dcp_folder, marker)[payload]
    assert_live(data, marker)
    (dcp_folder / ".metadata").write_bytes(data)
    for argv in commands(dcp_folder, tmp_path).values():
        assert_refused(argv, marker, capsys)
    assert not (tmp_path / "out").exists()


def test_a_real_process_exits_with_one_line(dcp_folder, tmp_path):
    marker = tmp_path / "pwned"
    (dcp_folder / ".metadata").write_bytes(metadata_payloads(dcp_folder, marker)["os.system"])
    result = subprocess.run(
        [sys.executable, "-m", "llamaforge", "convert", str(dcp_folder), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2
    assert not marker.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "posix.system" in lines[0] and ".metadata" in lines[0], lines


def test_a_weight_redeclared_as_a_pickled_object_is_refused(dcp_folder, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bytes_item_payload(dcp_folder, "model.output.weight", marker, as_bytes=True)
    for argv in commands(dcp_folder, tmp_path).values():
        assert_refused(argv, marker, capsys, names="output.weight")


def test_shard_paths_outside_the_folder_are_refused(dcp_folder, tmp_path):
    from tests.formats.dcp_payloads import _trusted_metadata

    secret = tmp_path / "secret.distcp"
    secret.write_bytes(b"x" * 10_000)
    metadata = _trusted_metadata(dcp_folder)
    info = next(iter(metadata.storage_data.values()))
    info.relative_path = "../secret.distcp"
    import pickle

    (dcp_folder / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"\.\./secret\.distcp"):
        read_dcp_metadata(dcp_folder)


def test_truncated_shard_names_the_shard(dcp_folder):
    shard = dcp_folder / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp is shorter"):
        read_dcp_metadata(dcp_folder)


def test_metadata_that_is_not_a_pickle(dcp_folder):
    (dcp_folder / ".metadata").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"\.metadata: cannot be read as DCP metadata"):
        read_dcp_metadata(dcp_folder)


def test_a_config_with_millions_of_layers_is_refused_before_a_model_is_built(
    dcp_folder, monkeypatch
):
    import json

    from llamaforge.formats import native

    config = json.loads((dcp_folder / "config.json").read_text())
    config["model"]["n_layers"] = 10**7
    (dcp_folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(native, "build_model", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(CheckpointError, match=r"10000000 layers but the weights hold 2"):
        native.load_native(dcp_folder)
