"""A resumed run against the config its checkpoint was saved with.

Every checkpoint's ``config.json`` holds the whole training config
(``"train"``: ``TrainConfig.to_dict()``). Resuming compares it with the
config of the new run, field by field:

* **Curve fields** change what the resumed run computes, so its loss curve
  is no longer that of the run it continues: every ``model.*`` and
  ``optim.*`` field, ``data.*`` except ``data.tokenizer`` (sources, weights,
  seq_len, batch_tokens, micro_batch_size, which also sets the data
  loader's position, val_fraction, seed), ``train.seed``,
  ``train.precision``, and the run length (``train.max_steps`` /
  ``train.total_tokens``, compared as the number of steps they give, since
  the schedule spans it). A change there is refused unless
  ``checkpoint.allow_config_change = true`` (``--allow-config-change``),
  which lets it through with a warning.
* **Everything else** (log and checkpoint intervals, ``keep_last``, devices,
  parallel layout, compile, activation checkpointing, validation and
  benchmark settings, paths) may change; one warning lists the changes.
* Switches about this launch only (``checkpoint.resume``, the two flags
  above, ``train.check_memory``) are not compared.

Checkpoints without a saved training config are resumed with a warning.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from llamaforge.errors import ConfigError
from llamaforge.train.checkpoint_files import read_json
from llamaforge.train.config import TrainConfig
from llamaforge.train.rng import CheckpointWarning

CURVE_PREFIXES = ("model.", "optim.", "data.")
CURVE_FIELDS = {"train.seed", "train.precision", "run length"}
# optim.implementation changes float rounding only (fused and for-loop AdamW agree within
# ~1e-7), so a resume may switch it with a warning.
FREE_FIELDS = {"data.tokenizer", "optim.implementation"}
NOT_COMPARED = {
    "checkpoint.resume",
    "checkpoint.allow_config_change",
    "checkpoint.restart_over_damaged",
    "checkpoint.fresh_run",
    "train.check_memory",
    "train.max_steps",  # compared as "run length"
    "train.total_tokens",
}
_UNSET = "<unset>"


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for section, table in config.items():
        if isinstance(table, dict):
            flat.update({f"{section}.{key}": value for key, value in table.items()})
        else:
            flat[section] = table
    return flat


def _steps(flat: dict[str, Any]) -> Any:
    """The run length in steps, as ``TrainConfig.max_steps`` computes it."""
    try:
        if flat["train.max_steps"] > 0:
            return flat["train.max_steps"]
        return math.ceil(flat["train.total_tokens"] / flat["data.batch_tokens"])
    except (KeyError, TypeError, ZeroDivisionError):
        return _UNSET


def _is_curve(name: str) -> bool:
    if name in FREE_FIELDS:
        return False
    return name in CURVE_FIELDS or name.startswith(CURVE_PREFIXES)


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(curve, free)`` changes from ``saved`` to ``current``, as ``"field old -> new"``."""
    old, new = _flatten(saved), _flatten(current)
    old["run length"], new["run length"] = _steps(old), _steps(new)
    curve, free = [], []
    for name in sorted(set(old) | set(new)):
        if name in NOT_COMPARED:
            continue
        before, after = old.get(name, _UNSET), new.get(name, _UNSET)
        if before == after:
            continue
        text = f"{name} {before!r} -> {after!r}"
        if name == "run length":
            text = f"run length (train.max_steps/total_tokens) {before} -> {after} steps"
        (curve if _is_curve(name) else free).append(text)
    return curve, free


def check_resume_config(cfg: TrainConfig, checkpoint: Path, warn: bool = True) -> None:
    """Refuse (ConfigError) or warn about the differences of ``cfg`` from the checkpoint's."""
    saved = read_json(checkpoint / "config.json")
    saved = saved.get("train") if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or not saved:
        if warn:
            warnings.warn(
                f"{checkpoint}/config.json holds no training config: cannot tell whether this "
                "run's config matches the one that wrote the checkpoint",
                CheckpointWarning,
                stacklevel=2,
            )
        return
    curve, free = config_changes(saved, cfg.to_dict())
    if curve and not cfg.checkpoint.allow_config_change:
        raise ConfigError(
            f"resuming {checkpoint}, which was saved with a different config: "
            f"{'; '.join(curve)}. This changes the loss curve: resume with the saved values, "
            "use a new train.run_dir, or pass --allow-config-change "
            "(checkpoint.allow_config_change=true) to continue with the new ones"
        )
    if warn and curve:
        warnings.warn(
            f"resuming {checkpoint} with a changed config (allowed by "
            f"checkpoint.allow_config_change): {'; '.join(curve)}",
            CheckpointWarning,
            stacklevel=2,
        )
    if warn and free:
        warnings.warn(
            f"resuming {checkpoint}; changed since it was saved: {'; '.join(free)}",
            CheckpointWarning,
            stacklevel=2,
        )
