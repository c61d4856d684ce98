"""A resumed run against the config its checkpoint was saved with.

Every checkpoint's ``config.json`` holds the whole training config
(``"train"``: ``TrainConfig.to_dict()``). Resuming compares it with the
config of the new run, field by field:

* **Shape fields** decide which parameters the model has, so the
  checkpoint's weights only load into a model built with the saved values:
  ``lora.enabled``, ``lora.rank`` and ``lora.target_modules``. A change is
  always refused, naming the saved value to pass back (``lora.rank=8``) or a
  new ``train.run_dir``; ``--allow-config-change`` cannot help there.
* **Curve fields** change what the resumed run computes, so its loss curve
  is no longer that of the run it continues: every ``model.*`` and
  ``optim.*`` field, ``data.*`` except ``data.tokenizer`` (sources, weights,
  seq_len, batch_tokens, micro_batch_size, which also sets the data
  loader's position, val_fraction, seed), ``train.seed``,
  ``train.precision``, ``lora.alpha`` and ``lora.dropout``, and the run
  length, which the schedule spans: compared as the number of steps
  ``train.max_steps`` / ``train.total_tokens`` give, or, for a finetuning run
  without ``train.max_steps``, as ``finetune.epochs``. A change there is
  refused unless ``checkpoint.allow_config_change = true``
  (``--allow-config-change``), which lets it through with a warning.
* **Finetuning fields**, decided one by one: ``finetune.data``,
  ``dataset_split``, ``schema``, ``template``, ``train_on_prompt``,
  ``packing``, ``overlong`` and ``val_fraction`` choose or render the
  examples and ``warmup_ratio`` sets the warm-up, so they are curve fields
  (a data or template file that merely moved counts as a change, as a moved
  ``data.sources`` folder does; the loader's checksum of every example
  refuses different examples in any case). ``finetune.init`` may change:
  adapter-only checkpoints check their base by its weights fingerprint
  (:mod:`llamaforge.finetune.checkpointing`) and full-state ones bring their
  own weights, so a moved or renamed base resumes. ``finetune.skip_bad_examples``
  may change: data that has a bad record stops the run without it and data
  that has none reads the same either way.
* A ``[finetune]`` table of a pretraining run (``finetune.data`` empty in both
  configs) and a ``[lora]`` table with ``lora.enabled`` false in both change
  nothing, so their fields are only noted.
* **Everything else** (log and checkpoint intervals, ``keep_last``, devices,
  parallel layout, compile, activation checkpointing, validation and
  benchmark settings, paths) may change; one warning lists the changes.
* Switches about this launch only (``checkpoint.resume``,
  ``allow_config_change``, ``restart_over_damaged``, ``fresh_run``,
  ``train.check_memory``) are not compared.

Checkpoints without a saved training config are resumed with a warning. A
folder that is an exported model (Hugging Face, Meta, or a native folder
without a training config and manifest) is not a checkpoint to resume: the
error says to start from it with ``finetune.init`` instead.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.train.checkpoint_files import MANIFEST, read_json
from llamaforge.train.config import TrainConfig
from llamaforge.train.rng import CheckpointWarning

CURVE_PREFIXES = ("model.", "optim.", "data.", "finetune.", "lora.")
CURVE_FIELDS = {"train.seed", "train.precision", "run length"}
SHAPE_FIELDS = ("lora.enabled", "lora.rank", "lora.target_modules")
# optim.implementation changes float rounding only (fused and for-loop AdamW agree within
# ~1e-7), so a resume may switch it with a warning. finetune.*: see the module docstring.
FREE_FIELDS = {
    "data.tokenizer", "optim.implementation", "finetune.init", "finetune.skip_bad_examples",
}  # fmt: skip
NOT_COMPARED = {
    "checkpoint.resume",
    "checkpoint.allow_config_change",
    "checkpoint.restart_over_damaged",
    "checkpoint.fresh_run",
    "train.check_memory",
    "train.max_steps",  # compared as "run length"
    "train.total_tokens",
    "finetune.epochs",
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


def _run_length(flat: dict[str, Any]) -> tuple[Any, str]:
    """``(value, unit)``: the steps ``TrainConfig.max_steps`` gives, or a finetuning run's epochs.

    A finetuning run without ``train.max_steps`` takes ``finetune.epochs``
    passes over its examples (the trainer counts the steps once the data is
    read), so the epochs are what a resume can compare.
    """
    try:
        if flat["train.max_steps"] > 0:
            return flat["train.max_steps"], "steps"
        if flat.get("finetune.data") and flat.get("finetune.epochs", 0) > 0:
            return flat["finetune.epochs"], "epochs"
        return math.ceil(flat["train.total_tokens"] / flat["data.batch_tokens"]), "steps"
    except (KeyError, TypeError, ZeroDivisionError):
        return _UNSET, "steps"


def _length_text(before: tuple[Any, str], after: tuple[Any, str]) -> str:
    (old, old_unit), (new, new_unit) = before, after
    if "epochs" in (old_unit, new_unit):
        names = "train.max_steps/finetune.epochs"
    else:
        names = "train.max_steps/total_tokens"
    if old_unit == new_unit:
        return f"run length ({names}) {old} -> {new} {new_unit}"
    return f"run length ({names}) {old} {old_unit} -> {new} {new_unit}"


def _inactive(name: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A finetune.* field of two pretraining configs, a lora.* one of two runs without LoRA."""
    if name.startswith("finetune."):
        return not old.get("finetune.data") and not new.get("finetune.data")
    if name.startswith("lora.") and name != "lora.enabled":
        return not old.get("lora.enabled") and not new.get("lora.enabled")
    return False


def _is_curve(name: str) -> bool:
    if name in FREE_FIELDS:
        return False
    return name in CURVE_FIELDS or name.startswith(CURVE_PREFIXES)


def _override(name: str, value: Any) -> str:
    """``value`` written as the ``section.field=value`` override that sets it back."""
    if isinstance(value, list):
        return f"{name}={','.join(str(v) for v in value)}"
    return f"{name}={json.dumps(value)}"


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(curve, free)`` changes from ``saved`` to ``current``, as ``"field old -> new"``.

    Shape changes count as curve changes here; :func:`check_resume_config`
    refuses them even with ``checkpoint.allow_config_change``.
    """
    shape, curve, free = _changes(saved, current)
    return shape + curve, free


def _changes(
    saved: dict[str, Any], current: dict[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """``(shape, curve, free)``; each shape change names the override that restores it."""
    old, new = _flatten(saved), _flatten(current)
    old.setdefault("lora.enabled", False)  # checkpoints older than LoRA had none
    old["run length"], new["run length"] = _run_length(old), _run_length(new)
    shape, curve, free = [], [], []
    for name in sorted(set(old) | set(new)):
        if name in NOT_COMPARED:
            continue
        before, after = old.get(name, _UNSET), new.get(name, _UNSET)
        if before == after:
            continue
        if name == "run length":
            curve.append(_length_text(before, after))
            continue
        text = f"{name} {before!r} -> {after!r}"
        if _inactive(name, old, new):
            free.append(text)
        elif name in SHAPE_FIELDS:
            shape.append(text if before == _UNSET else f"{text} (use {_override(name, before)})")
        else:
            (curve if _is_curve(name) else free).append(text)
    return shape, curve, free


def refuse_model_folder(folder: Path) -> None:
    """Refuse, with what to do instead, a resume from an exported model folder.

    Without this the resume fails on the missing ``manifest.json`` as if a
    save had been cut short, which sends the user looking for a crash. A
    folder with a manifest, or a native one that holds a training config
    (a save cut short before its manifest), is left to the checkpoint checks.
    """
    from llamaforge.formats import detect_format

    if (folder / MANIFEST).is_file():
        return
    try:
        fmt = detect_format(folder)
    except (CheckpointError, OSError):
        return
    config = read_json(folder / "config.json") if fmt == "native" else {}
    if isinstance(config, dict) and config.get("train"):
        return
    kind = {"hf": "a Hugging Face", "meta": "a Meta", "native": "an exported llamaforge"}[fmt]
    raise CheckpointError(
        f"checkpoint.resume = {str(folder)!r} is {kind} model folder, not a training checkpoint "
        "(a run's checkpoints/step_* folders, with manifest.json, optimizer.pt and state.json); "
        f"to train from its weights, start a finetuning run with finetune.init={str(folder)!r} "
        "and without --resume, or resume a step_* folder of the run you want to continue"
    )


def check_resume_config(cfg: TrainConfig, checkpoint: Path, warn: bool = True) -> None:
    """Refuse (ConfigError) or warn about the differences of ``cfg`` from the checkpoint's."""
    refuse_model_folder(checkpoint)
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
    shape, curve, free = _changes(saved, cfg.to_dict())
    if shape:
        raise ConfigError(
            f"resuming {checkpoint}, whose weights were saved for another model: "
            f"{'; '.join(shape)}. Its weights only fit the saved values: resume with them or "
            "use a new train.run_dir"
        )
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
