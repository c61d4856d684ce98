"""Whether the chunks a DCP ``.metadata`` lists for a tensor rebuild it exactly.

DCP's load copies each stored chunk into the caller's tensor and never asks
whether the chunks together cover it: a tensor listed with no chunks, or with
one rank's chunk (and its ``storage_data`` entry) dropped, loads without an
error and keeps whatever the destination held in the gap, uninitialised
memory in :func:`llamaforge.formats.dcp.read_dcp_weights` (``torch.empty``)
and the fresh initialisation on a training resume. Overlapping chunks would
let one chunk silently overwrite another. DCP's save planner refuses both
(``default_planner._validate_global_plan``); nothing re-checks them on load,
so :func:`check_chunks` does, for every DCP read (``convert`` and friends
through ``dcp.py``, training resume through ``train/parallel/dcp.py``: both go
through :func:`llamaforge.formats.dcp_safe.read_dcp_metadata`).

It also requires each non-empty chunk's bytes to be at least the chunk's
size (DCP stores a chunk as ``torch.save`` of it, or as its raw bytes), so
the tensors a metadata file can make a reader allocate are bounded by the
size of the ``.distcp`` files that are really there.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llamaforge.errors import CheckpointError

_AGAIN = "the checkpoint is incomplete or damaged: copy the whole folder again"


def _refuse(source: Path, key: str, what: str) -> CheckpointError:
    return CheckpointError(f"{source}: {key} {what}; {_AGAIN}")


def _overlap(a: Any, b: Any) -> bool:
    return all(
        oa < ob + sb and ob < oa + sa
        for oa, sa, ob, sb in zip(a.offsets, a.sizes, b.offsets, b.sizes, strict=True)
    )


def _first_overlap(chunks: list[Any], size: tuple[int, ...]) -> tuple[Any, Any] | None:
    """Two overlapping chunks, found by DCP's own sweep along the longest dimension.

    Only chunks still open at a chunk's start along that dimension can overlap
    it, so the chunks of a real (grid-sharded) checkpoint cost O(n log n).
    """
    if len(chunks) < 2:
        return None
    if not size:  # scalars: any two non-empty chunks are the same element
        return chunks[0], chunks[1]
    dim = max(range(len(size)), key=lambda d: size[d])
    order = sorted(chunks, key=lambda c: (c.offsets[dim], *c.offsets))
    active: list[tuple[int, int]] = []  # (end along dim, index into order)
    for i, chunk in enumerate(order):
        start = chunk.offsets[dim]
        del active[: bisect_right(active, (start, len(order)))]  # ended by start
        for _, j in active:
            if _overlap(chunk, order[j]):
                return order[j], chunk
        insort(active, (start + chunk.sizes[dim], i))
    return None


def check_chunks(
    source: Path, key: str, entry: Any, stored: Mapping[tuple[str, tuple[int, ...]], int]
) -> None:
    """Refuse a tensor whose chunks do not tile it exactly, each with its bytes stored.

    ``entry`` is a :class:`TensorStorageMetadata` whose chunks are already known
    to lie inside its size; ``stored`` maps ``(fqn, chunk offsets)`` of every
    ``storage_data`` entry to its length in bytes. Empty chunks (a rank's
    share of a dimension shorter than the world size) hold nothing and are
    skipped. With every chunk inside the tensor, non-overlapping chunks whose
    volumes add up to its element count cover it exactly.
    """
    size = tuple(entry.size)
    itemsize = entry.properties.dtype.itemsize
    filled = []
    for chunk in entry.chunks:
        volume = math.prod(chunk.sizes)
        if volume == 0:
            continue
        offsets = tuple(chunk.offsets)
        length = stored.get((key, offsets))
        if length is None:
            raise _refuse(source, key, f"has a chunk at {list(offsets)} with no storage_data entry")
        if length < volume * itemsize:
            raise _refuse(
                source,
                key,
                f"has a chunk at {list(offsets)} of {volume * itemsize} bytes stored in "
                f"{length} bytes",
            )
        filled.append(chunk)
    covered, numel = sum(math.prod(c.sizes) for c in filled), math.prod(size)
    pair = _first_overlap(filled, size)
    if pair is not None:
        a, b = (list(c.offsets) for c in pair)
        raise _refuse(source, key, f"has overlapping chunks at {a} and {b}")
    if covered != numel:
        raise _refuse(
            source,
            key,
            f"has chunks for only {covered} of its {numel} elements (a shard's entry is "
            "missing from the metadata)",
        )


__all__ = ["check_chunks"]
