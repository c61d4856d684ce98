"""Training checkpoints that resume exactly and survive a crash at any moment.

A checkpoint is ``DIR/step_00000100/``, a superset of the native model folder
(``model.safetensors`` + ``config.json`` [+ ``tokenizer.model``]) so the native
loader, ``generate`` and ``eval-loss`` read it directly. A single-process LoRA
finetuning run saves only its adapters there, as a LoRA folder that names its
base (see :mod:`llamaforge.finetune.checkpointing`). Resuming also needs
``optimizer.pt`` (AdamW moments), ``state.json`` (step, tokens, loader and
schedule state: whatever the trainer passes) and ``rng.pt`` (python, numpy,
torch CPU and CUDA generators, so dropout-free training still draws the same
data-order and init randomness after a restart). ``manifest.json``, written
last, holds the size and sha256 of every other file: its presence marks the
checkpoint complete and its checksums catch truncation and bit rot.

Atomicity: everything is written into ``DIR/.tmp-step_00000100-<random>/``,
fsynced, then renamed with ``os.replace`` (atomic on POSIX and NTFS), so a
crash leaves either no new checkpoint or a complete one; leftover
``.tmp-step_N-*`` / ``.tmp-delete-step_N-*`` folders are deleted by the next
:meth:`CheckpointManager.save` (one writer per run folder is enforced by
:mod:`llamaforge.train.run_lock`, so such a folder is a crashed save). Other
``.tmp-*`` folders (a ``checkpoint.dir`` may be a folder the user keeps things
in) are never touched. Deletions (pruning, replacing a folder of the same step)
also rename to ``.tmp-*`` first, so a crash mid-delete never leaves a
half-deleted ``step_*`` folder. A save that fails to write (disk full,
permissions) raises a one-line :class:`CheckpointError` and leaves the
previous checkpoints as they were.

Damaged checkpoints are set aside, never counted toward ``keep_last``, never
replaced: see :mod:`llamaforge.train.checkpoint_damage`.

Manifests, verification and the newest-valid search live in
:mod:`llamaforge.train.checkpoint_files` (re-exported here); the distributed
writer (:mod:`llamaforge.train.parallel.dcp`) reuses this class's atomic
``_begin``/``_commit`` protocol and pruning with DCP shards inside.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.model.naming import plain_name
from llamaforge.train.checkpoint_damage import DamagedCheckpoints
from llamaforge.train.checkpoint_files import (
    FORMAT_VERSION,
    MANIFEST,
    REQUIRED_FILES,
    checkpoint_layout,
    file_entry,
    fsync_path,
    latest_valid,
    list_checkpoints,
    read_json,
    save_failed,
    step_dir_name,
    verify_checkpoint,
    write_json,
    write_manifest,
)
from llamaforge.train.optimizer_state import read_optimizer_state
from llamaforge.train.rng import CheckpointWarning, capture_rng_state, restore_rng_state
from llamaforge.umask import make_temp_dir, save_safetensors

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "REQUIRED_FILES",
    "CheckpointManager",
    "CheckpointWarning",
    "latest_valid",
    "plain_name",
    "step_dir_name",
    "verify_checkpoint",
]

_checkpoints = list_checkpoints
_fsync_path = fsync_path
_read_json = read_json
_write_json = write_json

# What our own saves and deletions name their temporary folders (see _remove_stale_temporaries).
_OUR_TEMPORARY = re.compile(r"^\.tmp-(delete-)?step_\d{8,}-")


def _as_dict(config: Any, field: str) -> dict[str, Any]:
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"{field} must be a dict or dataclass, got {type(config).__name__}")


def _adapters_only(folder: Path, saved: Mapping[str, Any], names: Mapping[str, str]) -> bool:
    """A LoRA checkpoint whose weights file holds only the adapters (``"lora"`` in config.json).

    Loading it keeps the model's other weights: the caller has loaded the
    base the ``lora`` table names (the trainer loads ``finetune.init`` first).
    """
    if set(names) <= set(saved):
        return False
    config = folder / "config.json"
    return config.is_file() and isinstance(_read_json(config).get("lora"), dict)


class CheckpointManager(DamagedCheckpoints):
    """Saves, prunes, finds and restores the checkpoints of one run directory.

    ``keep_last`` K keeps the K newest checkpoints (by step) and always the one
    just written; 0 keeps everything (torchtitan's ``keep_latest_k`` convention).
    """

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3) -> None:
        if not isinstance(keep_last, int) or keep_last < 0:
            raise ConfigError(
                f"checkpoint keep_last must be an integer >= 0 (0 keeps all), got {keep_last!r}"
            )
        self.directory = Path(directory)
        self.keep_last = keep_last
        self._good: set[str] = set()  # step folders this manager wrote or verified
        self._warned_newer = False

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        model_config: dict,
        train_config: dict,
        state: dict,
        tokenizer_path: str | os.PathLike | None = None,
        extra_config: Mapping[str, Any] | None = None,
        trainable_only: bool = False,
    ) -> Path:
        """Write ``step_{step:08d}`` atomically and return its path.

        ``state`` must be JSON-serialisable (tuples come back as lists); its
        ``step`` key is set to ``step``. Saving a step that already exists
        replaces that folder. Model and optimizer tensors are copied to CPU.
        ``extra_config`` adds top-level keys to ``config.json`` (a finetuned
        model's ``chat_template``, a LoRA run's ``lora`` table).
        ``trainable_only`` writes only the parameters that require grad (a
        LoRA run's adapters; the config's ``lora`` table names the base).
        """
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        if "step" in state and state["step"] != step:
            raise ValueError(f"state['step'] = {state['step']!r} disagrees with step = {step}")
        tokenizer = Path(tokenizer_path) if tokenizer_path is not None else None
        if tokenizer is not None and not tokenizer.is_file():
            raise ConfigError(f"tokenizer file {tokenizer} does not exist; pass the .model path")
        try:
            tmp = self._begin(step)
            try:
                config = {
                    "format": "llamaforge",
                    "format_version": FORMAT_VERSION,
                    **dict(extra_config or {}),
                    "model": _as_dict(model_config, "model_config"),
                    "train": _as_dict(train_config, "train_config"),
                }
                self._write_files(tmp, step, model, optimizer, config, state, tokenizer,
                                  trainable_only)  # fmt: skip
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return self._commit(tmp, step)
        except (OSError, SafetensorError) as error:  # disk full, quota, permissions, read-only
            raise save_failed(step, error, self.directory) from error

    def _begin(self, step: int) -> Path:
        """A fresh temporary folder for step ``step``; leftovers of crashed saves are removed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        # Renamed to step_N as it is: the user's umask, not mkdtemp's 0700.
        return make_temp_dir(self.directory, f".tmp-{step_dir_name(step)}-")

    def _commit(self, tmp: Path, step: int) -> Path:
        """Rename a complete ``tmp`` (manifest written) to ``step_N`` atomically, then prune."""
        name = step_dir_name(step)
        final, replaced = self.directory / name, None
        try:
            # Same step saved again: move the old folder aside just before the
            # rename, so the window without a step_N folder is two renames long.
            if final.exists():
                self._is_intact(final)  # a damaged one is set aside, never replaced
            replaced = self._move_aside(final) if final.exists() else None
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if replaced is not None and not final.exists():
                os.replace(replaced / name, final)  # put the old one back
            raise
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        _fsync_path(self.directory)
        self._good.add(name)
        self._prune(final, step)
        return final

    def latest(self) -> Path | None:
        """Newest valid checkpoint (see :func:`latest_valid`), or None to start fresh."""
        return latest_valid(self.directory)

    def load(
        self,
        path: str | os.PathLike,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        verify: bool = True,
    ) -> dict[str, Any]:
        """Restore model, optimizer and RNG states in place; return ``state.json``.

        Everything is read and checked before anything is modified, so a
        mismatch leaves the model and optimizer untouched. ``optimizer=None``
        loads weights and RNG only (evaluation, or a deliberate optimizer
        reset). Weights are cast to the model's dtype and device. A sharded
        (DCP) checkpoint of a distributed run is loaded too, resharded to
        this one process. An adapter-only LoRA checkpoint (``"lora"`` in its
        config.json, only the trainable parameters saved) restores just those
        parameters: the caller has loaded the base first.
        ``verify=False`` skips the checksum pass when :meth:`latest` just did it.
        """
        folder = Path(path)
        if verify:
            verify_checkpoint(folder)
        if checkpoint_layout(folder) == "dcp":  # written by a distributed run: gather it here
            from llamaforge.train.parallel.dcp import load_sharded

            return load_sharded(folder, model, optimizer, distributed=False)
        weights_file = folder / "model.safetensors"
        try:
            saved = load_file(weights_file)
        except (OSError, SafetensorError) as error:
            raise CheckpointError(f"{weights_file}: cannot be read ({error})") from error
        current = model.state_dict()
        actual = {plain_name(key): key for key in current}
        if _adapters_only(folder, saved, actual):  # the base is already in the model
            trained = {plain_name(k) for k, p in model.named_parameters() if p.requires_grad}
            actual = {name: key for name, key in actual.items() if name in trained}
        missing = sorted(set(actual) - set(saved))
        unexpected = sorted(set(saved) - set(actual))
        if missing or unexpected:
            raise CheckpointError(
                f"{weights_file} does not fit this model: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}; build the model from the checkpoint's config.json"
            )
        for key, tensor in saved.items():
            want = current[actual[key]].shape
            if tensor.shape != want:
                raise CheckpointError(
                    f"{weights_file}: {key} has shape {tuple(tensor.shape)} but the model "
                    f"expects {tuple(want)}; build the model from the checkpoint's config.json"
                )
        optim_state = None
        if optimizer is not None:
            optim_state = read_optimizer_state(folder / "optimizer.pt", optimizer)
        rng_file = folder / "rng.pt"
        try:
            rng = torch.load(rng_file, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{rng_file}: cannot be read ({error})") from error
        state = _read_json(folder / "state.json")
        model.load_state_dict({actual[key]: tensor for key, tensor in saved.items()}, strict=False)
        if optimizer is not None:
            optimizer.load_state_dict(optim_state)
        restore_rng_state(rng, rng_file)
        return state

    # -- internals -------------------------------------------------------------------

    def _write_files(
        self,
        tmp: Path,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: dict[str, Any],
        state: dict,
        tokenizer: Path | None,
        trainable_only: bool,
    ) -> None:
        weights: dict[str, torch.Tensor] = {}
        tensors = (
            {k: p for k, p in model.named_parameters() if p.requires_grad}
            if trainable_only
            else model.state_dict()
        )
        for key, tensor in tensors.items():
            plain = plain_name(key)
            if plain in weights:
                raise ValueError(f"parameters {key!r} and another both map to {plain!r}")
            weights[plain] = tensor.detach().to("cpu").contiguous()
        save_safetensors(weights, tmp / "model.safetensors", {"format": "pt"})
        _write_json(tmp / "config.json", config)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp / "tokenizer.model")
        with open(tmp / "optimizer.pt", "wb") as file:  # a file object: OSError on a full disk
            torch.save(optimizer.state_dict(), file)
        _write_json(tmp / "state.json", {**state, "step": step})
        with open(tmp / "rng.pt", "wb") as file:
            torch.save(capture_rng_state(), file)
        files = {file.name: file_entry(file) for file in sorted(tmp.iterdir())}
        write_manifest(tmp, step, files)

    def _move_aside(self, path: Path) -> Path:
        """Rename out of the ``step_*`` namespace, so a crash mid-delete leaves only a temp."""
        doomed = Path(tempfile.mkdtemp(prefix=f".tmp-delete-{path.name}-", dir=self.directory))
        os.replace(path, doomed / path.name)
        return doomed

    def _remove_stale_temporaries(self) -> None:
        # Single writer per run directory (the run lock): a folder named as our saves and
        # deletions name theirs is a crashed one. Any other ``.tmp-*`` is the user's: kept.
        for child in self.directory.glob(".tmp-*"):
            if child.is_dir() and not child.is_symlink() and _OUR_TEMPORARY.match(child.name):
                shutil.rmtree(child, ignore_errors=True)

    def _prune(self, just_written: Path, step: int) -> None:
        """Delete intact checkpoints beyond the ``keep_last`` newest intact ones.

        Folders without a manifest are not ours and are left alone; damaged
        ones are set aside, so they neither count nor get deleted.
        """
        complete = [(s, p) for s, p in _checkpoints(self.directory) if (p / MANIFEST).is_file()]
        newer = [p.name for s, p in complete if s > step]
        if newer and not self._warned_newer:
            self._warned_newer = True  # once per run, not at every save
            warnings.warn(
                f"{self.directory} holds checkpoints newer than {just_written.name} ({newer}), "
                "probably from an abandoned run; latest() will prefer them, delete them if not",
                CheckpointWarning,
                stacklevel=4,
            )
        if self.keep_last == 0:
            return
        kept = 0
        for _, path in complete:
            if path == just_written or kept < self.keep_last:
                kept += self._is_intact(path)
            else:
                shutil.rmtree(self._move_aside(path), ignore_errors=True)
