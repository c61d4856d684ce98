"""Capture and restore every random generator a training run draws from.

Part of a checkpoint so that a resumed run draws exactly what an
uninterrupted one would. Stored as tuples, ints and tensors only, so the file
loads with ``torch.load(weights_only=True)``: no pickled code runs when
reading a checkpoint that came from elsewhere.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped or partially restored; training goes on."""


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], source: Path) -> None:
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count != len(cuda):
            warnings.warn(
                f"{source}: saved {len(cuda)} CUDA RNG state(s) but {count} device(s) are "
                "visible; restoring only the common ones, GPU randomness will differ",
                CheckpointWarning,
                stacklevel=3,
            )
        for index in range(min(count, len(cuda))):
            torch.cuda.set_rng_state(cuda[index], index)
