"""Weights from pickled ``.pth`` / ``.bin`` files (Meta's shards, older Hugging Face folders).

``torch.load(weights_only=True)`` runs no code, but it rebuilds every tensor
with the shape and strides the file states over the storage the file holds.
A 2 KB file can hold ``torch.zeros(1).expand(12000, 12000)``: four bytes of
storage, 576 MB as soon as anything copies it (``torch.cat`` of Meta's
shards, a dtype cast, the export to safetensors). torch already refuses
strides that reach past the storage; :func:`load_pickled_weights` also
refuses a tensor whose strides make two indices share an element. A tensor
``torch.save`` wrote from a model never does (a view is saved with its
whole storage and keeps non-overlapping strides), and without overlap a
tensor's logical size is at most its storage, so what a file makes us
allocate is bounded by the bytes it really contains.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llamaforge.errors import CheckpointError
from llamaforge.formats.messages import brief
from llamaforge.formats.weight_checks import check_weights


def self_overlapping(tensor: torch.Tensor) -> bool:
    """Whether two indices of ``tensor`` may address the same element of its storage.

    Dimensions of size > 1 are taken by increasing stride; when each stride
    steps past every element the smaller ones reach, no two indices meet.
    Every transpose, slice or permutation of a dense tensor passes; a zero
    stride (``expand``) fails, and so would an exotic ``as_strided``
    interleaving no checkpoint writer produces (the test is conservative).
    """
    reach = 0  # the largest storage offset the dimensions seen so far address
    for stride, size in sorted(
        (s, n) for s, n in zip(tensor.stride(), tensor.shape, strict=True) if n > 1
    ):
        if stride <= reach:
            return True
        reach += stride * (size - 1)
    return False


def _torch_load(path: Path, mmap: bool) -> object:
    if mmap:  # pages a 65B shard in tensor by tensor instead of reading all of it
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
    return torch.load(path, map_location="cpu", weights_only=True)  # (legacy format: no mmap)


def load_pickled_weights(path: Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """``path``'s state dict, refused unless it is plain weights that are really stored.

    See the module docstring for the stride check; :func:`check_weights` for
    what "plain weights" means. ``mmap`` maps the file instead of reading it.
    """
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        state = _torch_load(path, mmap)
    except Exception as error:
        raise CheckpointError(
            f"{path}: cannot be read ({brief(error)}); truncated, corrupt or not plain weights"
        ) from error
    weights = check_weights(state, path)
    for name, tensor in weights.items():
        if self_overlapping(tensor):
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)} with strides "
                f"{tuple(tensor.stride())} over {tensor.untyped_storage().nbytes()} bytes of "
                "storage, reusing its elements; no saved model holds such a tensor, the file "
                "is damaged or crafted to exhaust memory: refusing to expand it"
            )
    return weights


__all__ = ["load_pickled_weights", "self_overlapping"]
