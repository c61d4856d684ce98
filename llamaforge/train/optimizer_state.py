"""Reading a saved optimizer state and checking it fits the optimizer it will load into.

Split from :mod:`llamaforge.train.checkpoint`. ``torch.load(weights_only=True)``
admits tensors and plain containers only, so a crafted ``optimizer.pt`` runs
no code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llamaforge.errors import CheckpointError

# Element-wise optimizer state entries over their parameter (Adam, AdamW, SGD):
# a shape mismatch there means param groups were built differently.
_ELEMENTWISE_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def read_optimizer_state(file: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Read ``optimizer.pt`` (tensors only) and check it fits ``optimizer``'s param groups."""
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
        groups = saved["param_groups"]
        saved_state = saved["state"]
    except Exception as error:
        raise CheckpointError(f"{file}: cannot be read as an optimizer state ({error})") from error
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(
            f"{file} has {len(groups)} parameter group(s), the optimizer has "
            f"{len(optimizer.param_groups)}; the optimizer must be built as in the saved run"
        )
    for index, (old, new) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        if len(old["params"]) != len(new["params"]):
            raise CheckpointError(
                f"{file}: parameter group {index} has {len(old['params'])} parameters, "
                f"the optimizer has {len(new['params'])}"
            )
        for param_id, param in zip(old["params"], new["params"], strict=True):
            for key, value in saved_state.get(param_id, {}).items():
                if (
                    key in _ELEMENTWISE_STATE
                    and isinstance(value, torch.Tensor)
                    and value.shape != param.shape
                ):
                    raise CheckpointError(
                        f"{file}: group {index} state {key!r} has shape "
                        f"{tuple(value.shape)} but its parameter has {tuple(param.shape)}"
                    )
    return saved
