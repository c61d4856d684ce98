"""A DCP tensor must be tiled exactly by chunks whose bytes are stored, on every read path."""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    TensorProperties,
    TensorStorageMetadata,
)

from llamaforge.cli import main
from llamaforge.errors import CheckpointError
from llamaforge.formats.dcp_chunks import check_chunks
from llamaforge.formats.dcp_safe import read_dcp_metadata
from llamaforge.model import build_model
from tests.formats.conftest import TINY, random_model
from tests.formats.dcp_payloads import _trusted_metadata, write_dcp_model_folder

GRID = [((0, 0), (2, 3)), ((0, 3), (2, 3)), ((2, 0), (2, 3)), ((2, 3), (2, 3))]  # of (4, 6)


def _entry(size, chunks):
    return TensorStorageMetadata(
        TensorProperties(dtype=torch.float32),
        torch.Size(size),
        [ChunkStorageMetadata(torch.Size(o), torch.Size(s)) for o, s in chunks],
    )


def _stored(chunks, key="w"):
    return {(key, tuple(o)): 4 * math.prod(s) + 800 for o, s in chunks}  # + torch.save overhead


def _check(size, chunks, stored=None):
    stored = _stored(chunks) if stored is None else stored
    check_chunks(Path("x/.metadata"), "w", _entry(size, chunks), stored)


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        ((4, 6), GRID),
        ((3, 4), [((0, 0), (2, 4)), ((2, 0), (1, 4)), ((3, 0), (0, 4))]),  # an empty rank
        ((2, 8), [((0, 0), (1, 8)), ((1, 0), (1, 8))]),  # open together along the sweep
        ((), [((), ())]),
        ((0, 5), []),
    ],
    ids=["grid", "uneven", "strips", "scalar", "empty"],
)
def test_exact_tilings_are_accepted(size, chunks):
    _check(size, chunks)


@pytest.mark.parametrize(
    ("size", "chunks", "message"),
    [
        ((4, 6), GRID[:3], "chunks for only 18 of its 24 elements"),
        ((4, 6), [], "chunks for only 0 of its 24 elements"),
        (
            (4, 6),
            [((0, 0), (3, 6)), ((2, 0), (2, 6))],
            r"overlapping chunks at \[0, 0\] and \[2, 0\]",
        ),
        ((4, 6), [*GRID[:3], ((1, 3), (2, 3))], "overlapping chunks"),  # right volume, shifted
        ((2, 8), [((0, 0), (1, 8)), ((0, 4), (2, 4)), ((1, 0), (1, 4))], "overlapping chunks"),
        ((), [((), ()), ((), ())], "overlapping chunks"),
    ],
)
def test_gaps_and_overlaps_are_refused(size, chunks, message):
    with pytest.raises(CheckpointError, match=rf"x/.metadata: w has {message}"):
        _check(size, chunks)


def test_every_non_empty_chunk_needs_its_bytes_stored():
    stored = _stored(GRID)
    del stored[("w", (2, 3))]
    with pytest.raises(CheckpointError, match=r"chunk at \[2, 3\] with no storage_data entry"):
        _check((4, 6), GRID, stored)
    stored = {**_stored(GRID), ("w", (0, 3)): 10}
    with pytest.raises(CheckpointError, match=r"chunk at \[0, 3\] of 24 bytes stored in 10"):
        _check((4, 6), GRID, stored)


def test_random_boxes_agree_with_counting_every_element():
    rng = random.Random(0)
    for _ in range(300):
        size = (rng.randint(1, 4), rng.randint(1, 5))
        chunks = []
        for _ in range(rng.randint(1, 4)):
            offsets = tuple(rng.randint(0, n - 1) for n in size)
            chunks.append(
                (offsets, tuple(rng.randint(1, n - o) for o, n in zip(offsets, size, strict=True)))
            )
        count = torch.zeros(size, dtype=torch.int64)
        for (r, c), (h, w) in chunks:
            count[r : r + h, c : c + w] += 1
        try:
            _check(size, chunks)
            accepted = True
        except CheckpointError:
            accepted = False
        assert accepted == bool((count == 1).all()), (size, chunks)


@pytest.fixture
def gapped(tmp_path):
    """A real DCP model folder whose norm.weight lost its only chunk and its storage entry."""
    folder = write_dcp_model_folder(tmp_path / "ckpt", random_model(), None)
    metadata = _trusted_metadata(folder)
    metadata.state_dict_metadata["model.norm.weight"].chunks = []
    metadata.storage_data = {
        k: v for k, v in metadata.storage_data.items() if k.fqn != "model.norm.weight"
    }
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    return folder


def test_convert_refuses_a_tensor_without_chunks(gapped, tmp_path, capsys):
    assert main(["convert", str(gapped), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ".metadata: model.norm.weight has chunks for only 0 of its 64 elements" in err
    assert not (tmp_path / "out").exists()


def test_a_training_resume_refuses_it_too(gapped):
    from llamaforge.train.parallel.dcp import load_sharded

    model = build_model(TINY)
    before = model.norm.weight.detach().clone()
    with pytest.raises(CheckpointError, match="model.norm.weight has chunks for only 0"):
        load_sharded(gapped, model, None, distributed=False)
    assert torch.equal(model.norm.weight, before)


def test_a_chunk_whose_storage_entry_is_gone(tmp_path):
    folder = write_dcp_model_folder(tmp_path / "ckpt", random_model(), None)
    metadata = _trusted_metadata(folder)
    metadata.storage_data = {
        k: v for k, v in metadata.storage_data.items() if k.fqn != "model.output.weight"
    }
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"output.weight has a chunk at \[0, 0\] with no"):
        read_dcp_metadata(folder)
