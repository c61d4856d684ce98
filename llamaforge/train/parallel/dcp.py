"""Sharded training checkpoints with ``torch.distributed.checkpoint`` (DCP).

Every rank writes its own shards of the weights and AdamW moments; nothing is
gathered on one rank, so saving a 65B model costs each GPU only its share.
A checkpoint folder ``step_N/`` holds DCP's ``__<rank>_0.distcp`` shards and
``.metadata`` (global shapes and where each piece lives), per-rank
``rng_rank<NNNNN>.pt``, and from rank 0 ``config.json`` (the same llamaforge
config as a single-file checkpoint), ``state.json`` (step, tokens, data
loader position: rank-invariant) and ``tokenizer.model``. The manifest
(``layout: "dcp"``) lists every file's size and sha256; each rank hashes the
files it wrote and rank 0 writes the manifest last. The folder is written
under a temporary name and renamed by rank 0, with the same
verify / fall-back-to-the-previous-valid semantics as
:class:`~llamaforge.train.checkpoint.CheckpointManager`. A shared filesystem
is assumed, as DCP's ``FileSystemWriter`` itself does.

Loading goes through :func:`llamaforge.formats.dcp_safe.load_dcp`: DCP's own
reader unpickles ``.metadata`` and ``torch.load``s non-tensor entries without
``weights_only``, which would let a crafted checkpoint run code on resume.

Resharding comes from DCP: the state dict holds DTensors with global shapes,
so any ("dp", "tp") layout, or one process without a process group, loads any
other layout's checkpoint. A resume with a different world size restores the
RNG states of the ranks that exist in both (none are needed by the training
arithmetic; a warning says the others start fresh). A single-file checkpoint
(written by a one-process run) also loads into a distributed run: its full
weights and optimizer state are scattered with ``full_state_dict=True``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from llamaforge.errors import CheckpointError, ConfigError, LlamaforgeError
from llamaforge.formats.dcp_safe import load_dcp
from llamaforge.train.checkpoint import CheckpointManager, _as_dict
from llamaforge.train.checkpoint_files import (
    FORMAT_VERSION,
    checkpoint_layout,
    file_entry,
    read_json,
    save_failed,
    verify_checkpoint,
    write_json,
    write_manifest,
)
from llamaforge.train.parallel.mesh import ParallelContext
from llamaforge.train.rng import CheckpointWarning, capture_rng_state, restore_rng_state


def rng_file_name(rank: int) -> str:
    return f"rng_rank{rank:05d}.pt"


def load_sharded(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    rank: int = 0,
    distributed: bool = True,
) -> dict[str, Any]:
    """Load a DCP checkpoint into ``model``/``optimizer`` of any layout; return ``state.json``.

    ``distributed=False`` reads without a process group (one process, plain
    tensors; blocks may be wrapped for activation checkpointing): DCP then
    assembles full tensors from all shards.
    """
    _load_into(folder, model, optimizer, distributed)
    _restore_rng(folder, rank)
    return read_json(folder / "state.json")


def _load_into(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, distributed: bool
) -> None:
    try:
        with warnings.catch_warnings():
            # Without a process group DCP warns that it assumes one process: that is the intent.
            warnings.filterwarnings("ignore", message=r"torch\.distributed is disabled")
            if optimizer is None:
                model_sd = get_model_state_dict(model)
                load_dcp({"model": model_sd}, folder, no_dist=not distributed)
                set_model_state_dict(model, model_sd)
            else:
                model_sd, optim_sd = get_state_dict(model, optimizer)
                wanted = {"model": model_sd, "optimizer": optim_sd}
                load_dcp(wanted, folder, no_dist=not distributed)
                set_state_dict(
                    model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd
                )
    except LlamaforgeError:
        raise  # already names the file and what to do
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{folder}: the sharded checkpoint does not fit this model/optimizer ({error}); "
            "build the model from the checkpoint's config.json"
        ) from error


def _restore_rng(folder: Path, rank: int) -> None:
    own = folder / rng_file_name(rank)
    if not own.is_file():
        warnings.warn(
            f"{folder} has no RNG state for rank {rank} (saved with fewer ranks); "
            "its random generators keep their current state",
            CheckpointWarning,
            stacklevel=3,
        )
        return
    try:
        rng = torch.load(own, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{own}: cannot be read ({error})") from error
    restore_rng_state(rng, own)


def _load_single_file(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """A one-process checkpoint into a sharded model: full tensors, scattered by DCP's helpers."""
    from safetensors.torch import load_file

    options = StateDictOptions(full_state_dict=True)
    weights = load_file(folder / "model.safetensors")
    if optimizer is None:
        set_model_state_dict(model, weights, options=options)
    else:
        saved = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        by_name: dict[str, Any] = {}
        groups = []
        for group in saved["param_groups"]:
            names = group.get("param_names")
            if names is None:
                raise CheckpointError(
                    f"{folder / 'optimizer.pt'} has no param_names; it predates resharding"
                )
            for param_id, name in zip(group["params"], names, strict=True):
                if param_id in saved["state"]:
                    by_name[name] = saved["state"][param_id]
            groups.append({**group, "params": list(names)})
        set_state_dict(
            model,
            optimizer,
            model_state_dict=weights,
            optim_state_dict={"state": by_name, "param_groups": groups},
            options=options,
        )
    rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    restore_rng_state(rng, folder / "rng.pt")
    return read_json(folder / "state.json")


def _first_failure(error: BaseException, rank: int) -> tuple[int, BaseException]:
    """The failing rank and its own exception: DCP gathers them into one CheckpointException."""
    failures = error.failures if isinstance(error, CheckpointException) else None
    if failures:
        first = min(failures)
        return first, failures[first][0]  # (exception, traceback)
    return rank, error


class DistributedCheckpointManager(CheckpointManager):
    """:class:`CheckpointManager` for a process group: every rank calls every method.

    Rank 0 owns the folder (temporary name, manifest, rename, pruning) and
    broadcasts the outcome, so all ranks agree on the path, and an error on
    rank 0 is raised on every rank instead of leaving the others waiting. A
    save that cannot write on some rank (disk full, quota, permissions: DCP
    gathers the failure to every rank) raises the same one-line
    :class:`CheckpointError` on every rank, naming the failing rank; the
    temporary folder is removed and the previous checkpoints are untouched.
    """

    def __init__(self, directory: str | os.PathLike, keep_last: int, ctx: ParallelContext):
        super().__init__(directory, keep_last=keep_last)
        self.ctx = ctx

    def _agree(self, work: Any) -> Any:
        """Run ``work()`` on rank 0 and return its result on every rank, errors included."""
        if not self.ctx.is_main:
            kind, value = self.ctx.broadcast(None)
            if kind == "ours":  # already one line naming the rank and what to do
                raise CheckpointError(value)
            if kind == "error":
                raise CheckpointError(f"rank 0 failed: {value}")
            return value
        try:
            value = work()
        except LlamaforgeError as error:
            self.ctx.broadcast(("ours", str(error)))
            raise
        except Exception as error:
            self.ctx.broadcast(("error", f"{type(error).__name__}: {error}"))
            raise
        self.ctx.broadcast(("ok", value))
        return value

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        model_config: dict,
        train_config: dict,
        state: dict,
        tokenizer_path: str | os.PathLike | None = None,
        extra_config: Mapping[str, Any] | None = None,
        trainable_only: bool = False,
    ) -> Path:
        if trainable_only:  # a sharded model's adapters alone are not gathered (see finetune)
            raise CheckpointError("sharded (DCP) checkpoints always hold the full model state")
        ctx = self.ctx
        tokenizer = Path(tokenizer_path) if tokenizer_path is not None else None

        def begin() -> Path:
            if tokenizer is not None and not tokenizer.is_file():
                raise ConfigError(f"tokenizer file {tokenizer} does not exist")
            try:
                return self._begin(step)
            except OSError as error:
                raise save_failed(step, error, self.directory, rank=0) from error

        tmp = Path(self._agree(begin))
        try:  # every rank writes its own files; a failure anywhere is agreed on below
            model_sd, optim_sd = get_state_dict(model, optimizer)
            dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=tmp)
            rng_path = tmp / rng_file_name(ctx.rank)
            torch.save(capture_rng_state(), rng_path)
            mine = {p.name: file_entry(p) for p in sorted(tmp.glob(f"__{ctx.rank}_*.distcp"))}
            mine[rng_path.name] = file_entry(rng_path)
            written: tuple[str, Any] = ("ok", mine)
        except (Exception, CheckpointException) as error:  # DCP's is a BaseException
            rank, cause = _first_failure(error, ctx.rank)
            written = ("error", str(save_failed(step, cause, self.directory, rank)))
        gathered = ctx.gather(written)

        def commit() -> Path:
            failures = [value for kind, value in gathered or [] if kind == "error"]
            if failures:
                shutil.rmtree(tmp, ignore_errors=True)
                raise CheckpointError(failures[0])
            try:
                config = {
                    "format": "llamaforge",
                    "format_version": FORMAT_VERSION,
                    **dict(extra_config or {}),
                    "model": _as_dict(model_config, "model_config"),
                    "train": _as_dict(train_config, "train_config"),
                }
                write_json(tmp / "config.json", config)
                write_json(tmp / "state.json", {**state, "step": step})
                if tokenizer is not None:
                    shutil.copyfile(tokenizer, tmp / "tokenizer.model")
                files: dict[str, Any] = {}
                for _, entries in gathered or []:
                    files.update(entries)
                for name in ("config.json", "state.json", ".metadata", "tokenizer.model"):
                    if (tmp / name).is_file():
                        files[name] = file_entry(tmp / name)
                write_manifest(tmp, step, dict(sorted(files.items())), layout="dcp")
            except BaseException as error:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(error, OSError):
                    raise save_failed(step, error, self.directory, rank=0) from error
                raise
            try:
                return self._commit(tmp, step)
            except OSError as error:
                raise save_failed(step, error, self.directory, rank=0) from error

        return Path(self._agree(commit))

    def latest(self) -> Path | None:
        """Rank 0 verifies (hashing once, not once per rank); every rank gets its answer."""
        found = self._agree(super().latest)
        return None if found is None else Path(found)

    def load(
        self,
        path: str | os.PathLike,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        verify: bool = True,
    ) -> dict[str, Any]:
        folder = Path(path)
        if verify:
            self._agree(lambda: verify_checkpoint(folder))
        if checkpoint_layout(folder) == "single":
            return _load_single_file(folder, model, optimizer)
        return load_sharded(folder, model, optimizer, rank=self.ctx.rank)
