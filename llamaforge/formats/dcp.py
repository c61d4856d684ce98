"""Read the weights of a sharded (``torch.distributed.checkpoint``) training checkpoint.

A distributed run writes ``step_N/`` with DCP shards instead of
``model.safetensors`` (see ``llamaforge.train.parallel.dcp``); its
``config.json`` is the native one. Reading it here, in one process without a
process group, makes every consumer of native folders (``convert`` to
native/HF/Meta, ``generate``, ``eval-loss``, ``eval``) accept it. Only the
``model.*`` entries are read, straight into tensors of the stored shapes and
dtypes taken from DCP's metadata: the optimizer moments (two thirds of the
files) are never loaded, and no model is initialised just to be overwritten.
``torch.distributed.checkpoint.format_utils.dcp_to_torch_save`` would load
everything, moments included, then pickle it.

The folder is read through :mod:`llamaforge.formats.dcp_safe`, so a crafted
``.metadata`` or shard cannot run code; names and shapes are checked against
the config's model before any tensor is allocated.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from llamaforge.errors import CheckpointError, LlamaforgeError
from llamaforge.formats.dcp_safe import METADATA_NAME, load_dcp, read_dcp_metadata
from llamaforge.formats.weight_checks import match_shapes

_PREFIX = "model."


def is_dcp_folder(directory: str | os.PathLike) -> bool:
    return (Path(directory) / METADATA_NAME).is_file()


def _model_entries(folder: Path) -> dict[str, TensorStorageMetadata]:
    entries = read_dcp_metadata(folder).state_dict_metadata
    stored = {
        key[len(_PREFIX) :]: meta
        for key, meta in entries.items()
        if key.startswith(_PREFIX) and isinstance(meta, TensorStorageMetadata)
    }
    if not stored:
        raise CheckpointError(f"{folder}: the DCP checkpoint holds no model.* tensors")
    return stored


def dcp_weight_shapes(directory: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every model tensor the metadata lists; nothing is allocated."""
    return {name: tuple(meta.size) for name, meta in _model_entries(Path(directory)).items()}


def read_dcp_weights(
    directory: str | os.PathLike, expected: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU weights under Meta-style names, assembled from every shard.

    ``expected`` (name -> shape of the model the config describes) is checked
    against the metadata first, so a mismatched or hostile checkpoint is
    refused before memory is allocated for it.
    """
    folder = Path(directory)
    stored = _model_entries(folder)
    if expected is not None:
        match_shapes(expected, {name: meta.size for name, meta in stored.items()}, folder)
    weights = {
        name: torch.empty(meta.size, dtype=meta.properties.dtype) for name, meta in stored.items()
    }
    try:
        with warnings.catch_warnings():  # "assuming ... a single process": that is the intent
            warnings.filterwarnings("ignore", message=r"torch\.distributed is disabled")
            load_dcp({"model": weights}, folder, no_dist=True)
    except LlamaforgeError:
        raise
    except Exception as error:
        raise CheckpointError(
            f"{folder}: a DCP shard is missing or unreadable ({error}); copy the whole "
            "checkpoint folder (every __*.distcp file) again"
        ) from error
    return weights
