"""Read ``torch.distributed.checkpoint`` (DCP) folders without running code from them.

DCP's ``FileSystemReader.read_metadata`` is a plain ``pickle.load`` of the
``.metadata`` file, and its default load planner reads every non-tensor entry
("bytes" items: the optimizer's ``lr``, ``betas``...) with
``torch.load(weights_only=False)``: a downloaded or shared checkpoint folder
could run arbitrary code in every command that reads it. Every DCP read in
llamaforge therefore goes through :func:`load_dcp` / :func:`read_dcp_metadata`:

* ``.metadata`` is unpickled by :class:`_MetadataUnpickler`, which resolves
  only the classes DCP's own metadata is made of (``_ALLOWED``, plus torch
  dtypes / layouts / memory formats) and refuses any other global, so no
  callable an attacker names is ever reached. The result is then checked for
  the structure DCP writes: every entry of the expected type, shard files that
  are plain ``*.distcp`` names inside the folder (no ``../``), byte ranges
  inside those files, chunks that tile each tensor exactly with their bytes
  stored (:mod:`llamaforge.formats.dcp_chunks`), no storage transforms (our
  writer uses none).
* :class:`SafeFileSystemReader` hands DCP that checked metadata instead of
  unpickling the file again, and :class:`SafeLoadPlanner` reads bytes items
  with ``torch.load(weights_only=True)`` and refuses a bytes item where the
  caller expects a tensor. Tensor items are already read by DCP with
  ``weights_only=True``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)

from llamaforge.errors import CheckpointError, LlamaforgeError
from llamaforge.formats.dcp_chunks import check_chunks
from llamaforge.formats.messages import brief

METADATA_NAME = ".metadata"
_DCP_META = "torch.distributed.checkpoint.metadata"
# (module, name) pairs a DCP .metadata written by torch 2.x refers to; nothing else resolves.
_ALLOWED = {
    (_DCP_META, "Metadata"),
    (_DCP_META, "StorageMeta"),
    (_DCP_META, "TensorStorageMetadata"),
    (_DCP_META, "BytesStorageMetadata"),
    (_DCP_META, "ChunkStorageMetadata"),
    (_DCP_META, "TensorProperties"),
    (_DCP_META, "MetadataIndex"),
    (_DCP_META, "_MEM_FORMAT_ENCODING"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # str -> torch.layout lookup
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    # StorageMeta.checkpoint_id: the folder the checkpoint was saved to (never used to read)
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
}
_TORCH_VALUES = (torch.dtype, torch.layout, torch.memory_format)


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), _TORCH_VALUES):
            return getattr(torch, name)
        raise CheckpointError(
            f"{self.source}: refers to {module}.{name}, which is not part of DCP checkpoint "
            "metadata; refusing to load it (the file may be crafted to run code)"
        )


def _bad(source: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{source}: {what}; it is not a DCP checkpoint llamaforge can read")


def _is_size(value: Any) -> bool:
    return isinstance(value, torch.Size) and all(isinstance(n, int) and n >= 0 for n in value)


def _check_entry(source: Path, key: Any, entry: Any, stored: dict) -> None:
    if not isinstance(key, str):
        raise _bad(source, f"state_dict_metadata key {key!r} is not a string")
    if isinstance(entry, BytesStorageMetadata):
        return
    if not isinstance(entry, TensorStorageMetadata):
        raise _bad(source, f"{key} has metadata of type {type(entry).__name__}")
    props = entry.properties
    if not isinstance(props, TensorProperties) or not isinstance(props.dtype, torch.dtype):
        raise _bad(source, f"{key} has no valid tensor properties")
    if not _is_size(entry.size) or not isinstance(entry.chunks, list):
        raise _bad(source, f"{key} has an invalid size or chunk list")
    for chunk in entry.chunks:
        if not (
            isinstance(chunk, ChunkStorageMetadata)
            and _is_size(chunk.offsets)
            and _is_size(chunk.sizes)
            and len(chunk.offsets) == len(chunk.sizes) == len(entry.size)
            and all(
                o + s <= n for o, s, n in zip(chunk.offsets, chunk.sizes, entry.size, strict=True)
            )
        ):
            raise _bad(source, f"{key} has a chunk outside its tensor")
    check_chunks(source, key, entry, stored)


def _check_storage(source: Path, index: Any, info: Any, sizes: dict[str, int]) -> None:
    if not isinstance(index, MetadataIndex) or not isinstance(index.fqn, str):
        raise _bad(source, f"storage key {index!r} is not a MetadataIndex")
    if index.offset is not None and not _is_size(index.offset):
        raise _bad(source, f"storage key of {index.fqn} has an invalid offset {index.offset!r}")
    if not isinstance(info, _StorageInfo):
        raise _bad(source, f"storage of {index.fqn} is a {type(info).__name__}")
    name = info.relative_path
    if not isinstance(name, str) or name not in sizes:
        raise _bad(source, f"{index.fqn} is stored in {name!r}, not a .distcp file of the folder")
    offset, length = info.offset, info.length
    if not (isinstance(offset, int) and isinstance(length, int) and min(offset, length) >= 0):
        raise _bad(source, f"{index.fqn} has an invalid byte range")
    if offset + length > sizes[name]:
        raise CheckpointError(
            f"{source.parent / name} is shorter than {source} says ({sizes[name]} bytes, "
            f"{index.fqn} ends at {offset + length}); the shard is truncated, copy it again"
        )
    if info.transform_descriptors:
        raise _bad(source, f"{index.fqn} uses storage transforms {info.transform_descriptors!r}")


def _check_metadata(source: Path, metadata: Any) -> Metadata:
    if type(metadata) is not Metadata:
        raise _bad(source, f"holds a {type(metadata).__name__}, not DCP Metadata")
    entries, storage = metadata.state_dict_metadata, metadata.storage_data
    if not isinstance(entries, dict) or not isinstance(storage, dict):
        raise _bad(source, "state_dict_metadata / storage_data are not tables")
    sizes = {
        p.name: p.stat().st_size
        for p in source.parent.iterdir()
        if p.name.endswith(".distcp") and p.is_file()
    }
    for index, info in storage.items():
        _check_storage(source, index, info, sizes)
    # (fqn, chunk offsets) -> bytes stored: what check_chunks needs to see each chunk's data
    stored = {
        (i.fqn, tuple(i.offset)): v.length for i, v in storage.items() if i.offset is not None
    }
    for key, entry in entries.items():
        _check_entry(source, key, entry, stored)
    planner_data = metadata.planner_data
    if planner_data is not None and not (
        isinstance(planner_data, dict)
        and all(
            isinstance(k, str)
            and isinstance(v, tuple)
            and all(isinstance(p, (str, int)) for p in v)
            for k, v in planner_data.items()
        )
    ):
        raise _bad(source, "planner_data is not a table of key paths")
    if metadata.version is not None and not isinstance(metadata.version, str):
        raise _bad(source, "version is not a string")
    if metadata.storage_meta is not None and type(metadata.storage_meta) is not StorageMeta:
        raise _bad(source, "storage_meta is not DCP StorageMeta")
    return metadata


def read_dcp_metadata(directory: str | os.PathLike, rank: int | None = None) -> Metadata:
    """The checked :class:`Metadata` of a DCP folder; :class:`CheckpointError` if it is not one."""
    name = METADATA_NAME if rank is None else f"__{rank}{METADATA_NAME}"
    source = Path(directory) / name
    if not source.is_file():
        raise CheckpointError(f"{source} is missing; copy the whole checkpoint folder again")
    try:
        with source.open("rb") as file:
            metadata = _MetadataUnpickler(file, source).load()
    except LlamaforgeError:
        raise
    except Exception as error:  # truncated, not a pickle, an allowed class misused...
        raise CheckpointError(
            f"{source}: cannot be read as DCP metadata ({brief(error)})"
        ) from error
    return _check_metadata(source, metadata)


class SafeFileSystemReader(FileSystemReader):
    """DCP's reader with :func:`read_dcp_metadata` instead of a plain ``pickle.load``."""

    def __init__(self, path: str | os.PathLike, metadata: Metadata | None = None):
        super().__init__(path)
        self._folder = Path(path)
        self._metadata = metadata

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        rank = kwargs.get("rank")
        if rank is None and self._metadata is not None:
            metadata = self._metadata
        else:
            metadata = read_dcp_metadata(self._folder, rank)
        if metadata.storage_meta is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner, reading non-tensor items with ``torch.load(weights_only=True)``."""

    def __init__(self, source: Path):
        super().__init__()
        self.source = source

    def set_up_planner(self, state_dict: Any, metadata: Any = None, is_coordinator: bool = False):
        super().set_up_planner(state_dict, metadata, is_coordinator)
        entries = metadata.state_dict_metadata if metadata is not None else {}
        for key, value in self.state_dict.items():
            if isinstance(value, torch.Tensor) and isinstance(
                entries.get(key), BytesStorageMetadata
            ):
                raise _bad(self.source / METADATA_NAME, f"{key} is stored as bytes, not a tensor")

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = torch.load(value, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(
                f"{self.source}: the entry {fqn} cannot be read as plain data "
                f"({brief(error)}); refusing to load it"
            ) from error
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def load_dcp(state_dict: dict[str, Any], directory: str | os.PathLike, *, no_dist: bool) -> None:
    """``dcp.load(state_dict)`` from ``directory`` through the safe reader and planner.

    The metadata is checked here, before DCP starts, so a refused file is one
    :class:`CheckpointError` instead of DCP's logged tracebacks. Failures inside
    DCP (wrapped per rank in a ``CheckpointException``) are re-raised as the
    first rank's original exception.
    """
    folder = Path(directory)
    metadata = read_dcp_metadata(folder)
    reader = SafeFileSystemReader(folder, metadata)
    try:
        dcp.load(
            state_dict, storage_reader=reader, planner=SafeLoadPlanner(folder), no_dist=no_dist
        )
    except CheckpointException as error:
        failures = sorted(error.failures.items())
        inner = failures[0][1][0] if failures else None
        if isinstance(inner, Exception):
            raise inner from None
        raise CheckpointError(f"{folder}: the DCP checkpoint cannot be loaded") from None


__all__ = [
    "METADATA_NAME",
    "SafeFileSystemReader",
    "SafeLoadPlanner",
    "load_dcp",
    "read_dcp_metadata",
]
