"""The native model folder: ``model.safetensors`` + ``config.json`` [+ ``tokenizer.model``].

It is what the trainer's checkpoints contain (they add optimizer and RNG
files next to it), what ``generate`` and ``eval-loss`` read, and the hub of
every conversion: Hugging Face and Meta folders are converted through a
:class:`Transformer`. Weights use Meta's parameter names and our half-split
rotary layout (see ``llamaforge.model.layers.rotary_tables``).

Safetensors rather than pickles: loading runs no code, and the header lists
every name, dtype and shape, so a truncated or mismatched file is caught
before any tensor is used.

The helpers here (JSON and safetensors reading, tokenizer copying, building
a model from a state dict checked by :mod:`llamaforge.formats.weight_checks`)
are shared by the other formats; folders are written by
:func:`llamaforge.formats.atomic.atomic_folder`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats.atomic import atomic_folder
from llamaforge.formats.dcp import dcp_weight_shapes, is_dcp_folder, read_dcp_weights
from llamaforge.formats.messages import brief
from llamaforge.formats.weight_checks import (
    check_sizes_before_building,
    check_weights,
    checked_meta_model,
)
from llamaforge.model import ModelConfig, Transformer, build_model
from llamaforge.model.naming import plain_name
from llamaforge.umask import save_safetensors

if TYPE_CHECKING:
    from llamaforge.tokenizer import Tokenizer

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.model"


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError, 5000-digit ints
        raise CheckpointError(f"{path}: cannot be read as JSON ({brief(error)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: cannot be read as JSON (nested too deeply)") from None


def config_errors(path: Path, read: Callable[[], ModelConfig]) -> ModelConfig:
    """``read()``, with a field of the wrong type or range as one CheckpointError naming ``path``.

    The readers check what a real config can get wrong; a hostile one (a string
    ``rms_norm_eps``, a list ``rope_scaling``, a 2**40 ``dim``) would otherwise
    surface as a TypeError or OverflowError from deep inside.
    """
    try:
        return read()
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, RuntimeError) as error:
        if isinstance(error, (CheckpointError, ConfigError)):
            raise
        raise CheckpointError(
            f"{path}: a field has a value no model can have ({type(error).__name__}: "
            f"{brief(error)}); the file is damaged or not this format's config"
        ) from None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return load_file(path, device=str(torch.device(device)))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(
            f"{path}: cannot be read as safetensors ({error}); the file is truncated or "
            "corrupt, copy or export it again"
        ) from error


def plain_state_dict(
    model: torch.nn.Module, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """CPU, contiguous weights under Meta-style names (wrapper prefixes removed)."""
    weights: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        name = plain_name(key)
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        weights[name] = tensor.contiguous()
    return weights


def model_from_state_dict(
    cfg: ModelConfig,
    state: Mapping[str, torch.Tensor],
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> Transformer:
    """Build the model on the meta device and adopt ``state``'s tensors (``assign=True``).

    Nothing is allocated twice: the meta model has no storage and the loaded
    tensors become the parameters (after a cast or move only when needed).
    Names and shapes are checked first so the error names ``source`` and the
    offending tensor instead of torch's generic message. ``dtype=None`` keeps
    the stored dtype (conversions use it to avoid a round trip through fp32).
    """
    check_weights(state, Path(source))
    model = checked_meta_model(cfg, {name: tuple(t.shape) for name, t in state.items()}, source)
    target = torch.device(device)
    converted = {
        name: tensor.to(device=target, dtype=dtype if tensor.is_floating_point() else None)
        for name, tensor in state.items()
    }
    model.load_state_dict(converted, strict=True, assign=True)
    return model


def copy_tokenizer(tokenizer_path: str | os.PathLike | None, folder: Path) -> Path | None:
    if tokenizer_path is None:
        return None
    source = Path(tokenizer_path)
    if not source.is_file():
        raise CheckpointError(
            f"tokenizer file {source} does not exist; pass a SentencePiece .model"
        )
    # Parsed before it is copied, and the checked bytes are what is written: a
    # downloaded folder's tokenizer.model may be a symlink to any file of the user's
    # (a private key, ...), which must not travel into an output folder.
    data = source.read_bytes()
    try:
        import sentencepiece

        if sentencepiece.SentencePieceProcessor(model_proto=data).get_piece_size() <= 0:
            raise RuntimeError("no pieces")
    except Exception as error:  # sentencepiece raises RuntimeError/OSError with C++ text
        raise CheckpointError(
            f"tokenizer file {source} is not a SentencePiece model ({brief(error)}); "
            "pass the .model file the tokenizer was trained as"
        ) from None
    target = folder / TOKENIZER_NAME
    target.write_bytes(data)
    return target


def save_pretrained(
    model: Transformer,
    directory: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    extra_config: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``directory`` atomically (see :func:`atomic_folder`) and return it.

    Weights are saved in the model's own dtype. ``extra_config`` adds
    top-level keys to ``config.json`` (the trainer adds ``"train"``); it may
    not override ``format``, ``format_version`` or ``model``. An existing
    non-empty ``directory`` is refused unless ``overwrite``, which replaces
    only the model files and keeps every other file.
    """
    return save_native(model, directory, tokenizer_path, extra_config, overwrite=overwrite)


def save_native(
    model: Transformer,
    directory: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    extra_config: dict | None = None,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """:func:`save_pretrained` with an optional cast of the saved weights (model untouched)."""
    extra = dict(extra_config or {})
    reserved = sorted({"format", "format_version", "model"} & set(extra))
    if reserved:
        raise ConfigError(f"extra_config may not set the reserved config.json key(s) {reserved}")
    config = {"format": "llamaforge", "format_version": FORMAT_VERSION}
    config["model"] = model.config.to_dict()
    config.update(extra)
    json.dumps(config)  # fail before writing anything if extra_config is not JSON
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        save_safetensors(plain_state_dict(model, dtype), tmp / WEIGHTS_NAME, {"format": "pt"})
        write_json(tmp / CONFIG_NAME, config)
        copy_tokenizer(tokenizer_path, tmp)
    return Path(directory)


def read_model_config(directory: str | os.PathLike) -> ModelConfig:
    path = Path(directory) / CONFIG_NAME
    return config_errors(path, lambda: _read_model_config(directory, path))


def _read_model_config(directory: str | os.PathLike, path: Path) -> ModelConfig:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: {directory} is not a llamaforge model folder "
            "(Hugging Face or Meta checkpoints: run `llamaforge convert` first)"
        )
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != "llamaforge":
        is_hf = isinstance(data, dict) and "model_type" in data
        hint = " (it looks like a Hugging Face config)" if is_hf else ""
        raise CheckpointError(
            f"{path} is not a llamaforge config{hint}; convert the folder with "
            "`llamaforge convert SRC DST --to native`"
        )
    version = data.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:  # (True is an int)
        raise CheckpointError(
            f"{path}: format_version {version!r} is not supported (this llamaforge reads up "
            f"to {FORMAT_VERSION}); upgrade llamaforge"
        )
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path} has no 'model' table")
    try:
        return ModelConfig.from_dict(data["model"], source=str(path))
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"{path}: invalid model config ({error})") from error


def load_native(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> tuple[Transformer, Path | None]:
    """Model and the path of the folder's ``tokenizer.model`` (None if absent), no Tokenizer.

    A sharded checkpoint of a distributed run (DCP shards, no
    ``model.safetensors``) is read too, gathered into one model. A LoRA
    folder (``"lora"`` in config.json) is its base checkpoint with the
    adapters merged in (see ``llamaforge.finetune.adapters``).
    """
    folder = Path(directory)
    cfg = read_model_config(folder)
    from llamaforge.finetune.adapters import load_adapter_folder, lora_table

    if lora_table(read_json(folder / CONFIG_NAME)) is not None:
        return load_adapter_folder(folder, device=device, dtype=dtype)
    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file() and is_dcp_folder(folder):  # a distributed run's checkpoint
        check_sizes_before_building(cfg, dcp_weight_shapes(folder), folder)
        shapes = {
            k: tuple(v.shape) for k, v in build_model(cfg, device="meta").state_dict().items()
        }
        state, weights_path = read_dcp_weights(folder, expected=shapes), folder
    else:
        state = read_safetensors(weights_path, device=device)
    model = model_from_state_dict(cfg, state, weights_path, device=device, dtype=dtype)
    tokenizer = folder / TOKENIZER_NAME
    return model, tokenizer if tokenizer.is_file() else None


def load_pretrained(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> tuple[Transformer, Tokenizer | None]:
    """Load a native folder (or a training checkpoint) in one call.

    Returns the model (float32 by default, ``dtype=None`` keeps the stored
    dtype) and the folder's tokenizer, or None when it has no
    ``tokenizer.model``. Unknown top-level config keys are ignored.
    """
    model, tokenizer_path = load_native(directory, device=device, dtype=dtype)
    if tokenizer_path is None:
        return model, None
    from llamaforge.tokenizer import Tokenizer

    return model, Tokenizer(tokenizer_path)
