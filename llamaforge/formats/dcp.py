"""Read the weights of a sharded (``torch.distributed.checkpoint``) training checkpoint.

A distributed run writes ``step_N/`` with DCP shards instead of
``model.safetensors`` (see ``llamaforge.train.parallel.dcp``); its
``config.json`` is the native one. Reading it here, in one process without a
process group, makes every consumer of native folders (``convert`` to
native/HF/Meta, ``generate``, ``eval-loss``) accept it. Only the ``model.*``
entries are read, straight into tensors of the stored shapes and dtypes
taken from DCP's metadata: the optimizer moments (two thirds of the files)
are never loaded, and no model is initialised just to be overwritten.
``torch.distributed.checkpoint.format_utils.dcp_to_torch_save`` would load
everything, moments included, then pickle it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from llamaforge.errors import CheckpointError

METADATA_NAME = ".metadata"
_PREFIX = "model."


def is_dcp_folder(directory: str | os.PathLike) -> bool:
    return (Path(directory) / METADATA_NAME).is_file()


def read_dcp_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU weights under Meta-style names, assembled from every shard."""
    folder = Path(directory)
    try:
        reader = FileSystemReader(folder)
        entries = reader.read_metadata().state_dict_metadata
    except Exception as error:
        raise CheckpointError(f"{folder / METADATA_NAME}: cannot be read ({error})") from error
    weights = {
        key[len(_PREFIX) :]: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in entries.items()
        if key.startswith(_PREFIX) and isinstance(meta, TensorStorageMetadata)
    }
    if not weights:
        raise CheckpointError(f"{folder}: the DCP checkpoint holds no model.* tensors")
    try:
        with warnings.catch_warnings():  # "assuming ... a single process": that is the intent
            warnings.filterwarnings("ignore", message=r"torch\.distributed is disabled")
            dcp.load({"model": weights}, storage_reader=FileSystemReader(folder), no_dist=True)
    except Exception as error:
        raise CheckpointError(
            f"{folder}: a DCP shard is missing or unreadable ({error}); copy the whole "
            "checkpoint folder (every __*.distcp file) again"
        ) from error
    return weights
