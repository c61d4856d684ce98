"""Hostile DCP checkpoint folders: ``.metadata`` or shard bytes whose unpickling runs code.

Each payload creates a marker file when unpickled by a plain ``pickle.load``
(or ``torch.load(weights_only=False)``); a test asserts the marker does not
exist after the command under test, and :func:`assert_live` first proves the
payload really would create it.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import pickle
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex

from llamaforge.formats import save_pretrained


class System:
    """``__reduce__`` gadget: unpickling calls ``os.system(cmd)``."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class Exec:
    """``__reduce__`` gadget: unpickling calls ``builtins.exec(code)``."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _trusted_metadata(folder: Path):
    # Our own freshly written test file: plain pickle is fine here, never in llamaforge.
    with (folder / ".metadata").open("rb") as file:
        return pickle.load(file)


def metadata_payloads(folder: Path, marker: Path) -> dict[str, bytes]:
    """Whole-file and nested ``.metadata`` payloads, built from ``folder``'s real metadata."""
    touch = f"touch {marker}"
    nested = _trusted_metadata(folder)
    first = next(iter(nested.state_dict_metadata.values()))
    first.properties = Exec(f"open({str(marker)!r}, 'w').close()")  # deep inside valid metadata
    return {
        "os.system": pickle.dumps(System(touch)),
        "os.system-protocol0": pickle.dumps(System(touch), protocol=0),
        "builtins.exec": pickle.dumps(Exec(f"open({str(marker)!r}, 'w').close()")),
        "nested-gadget": pickle.dumps(nested),
    }


def assert_live(payload: bytes, marker: Path) -> None:
    """The payload does create the marker under a plain unpickler (so its absence means refused)."""
    pickle.loads(payload)
    assert marker.exists(), "the payload is not live; the test would prove nothing"
    marker.unlink()


def bytes_item_payload(folder: Path, fqn: str, marker: Path, as_bytes: bool = False) -> bytes:
    """Point entry ``fqn`` of ``folder`` at appended ``torch.save`` bytes that run code.

    DCP's default planner reads bytes entries with ``torch.load(weights_only=False)``.
    ``as_bytes`` also re-declares a tensor entry as bytes (so a tensor-expecting
    loader would read it through that path). The ``.metadata`` stays made of
    DCP's own classes only.
    """
    shard = folder / "__0_0.distcp"
    buffer = io.BytesIO()
    torch.save(System(f"touch {marker}"), buffer)
    data = buffer.getvalue()
    offset = shard.stat().st_size
    with shard.open("ab") as file:
        file.write(data)
    metadata = _trusted_metadata(folder)
    if as_bytes:
        metadata.state_dict_metadata[fqn] = BytesStorageMetadata()
    for index in list(metadata.storage_data):
        if index.fqn == fqn:
            del metadata.storage_data[index]
    metadata.storage_data[MetadataIndex(fqn)] = _StorageInfo("__0_0.distcp", offset, len(data))
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    return data


def write_dcp_model_folder(folder: Path, model: torch.nn.Module, tokenizer: Path | None) -> Path:
    """A native ``config.json`` + DCP shards of the weights, no model.safetensors.

    The layout of a distributed run's checkpoint as ``generate``/``convert``/
    ``eval`` read it (the optimizer entries are not needed by them).
    """
    save_pretrained(model, folder, tokenizer_path=tokenizer)
    (folder / "model.safetensors").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model.state_dict()}, checkpoint_id=folder, no_dist=True)
    return folder


def rehash_manifest(folder: Path) -> None:
    """Make ``manifest.json`` match the (tampered) files, as an attacker would."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for name in manifest["files"]:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    path.write_text(json.dumps(manifest))
