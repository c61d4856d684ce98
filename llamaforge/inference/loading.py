"""Loading a checkpoint folder for the command-line tools that run a model.

``llamaforge generate``, ``eval`` and ``eval-loss`` read the same folders
(native, training checkpoints, Hugging Face and Meta, told apart by
:func:`llamaforge.formats.detect_format`) and fail the same way on a missing
folder or tokenizer, through :func:`load_checkpoint`; ``generate`` and
``eval`` also share the ``--device`` and ``--dtype`` flags, so the flags, the
``auto`` rules and the error messages live here once. ``auto``
follows what users of Meta's and Hugging Face's scripts expect: CUDA when
present, in bfloat16 where the GPU supports it, float32 otherwise.
:func:`check_cache_fits` (used by ``chat``) refuses a KV cache the machine
cannot hold before it is allocated.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from llamaforge.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from llamaforge.model import Transformer
    from llamaforge.tokenizer import Tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, spelled the same for every command that runs a model."""
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0")
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        default="auto",
        help="auto: bfloat16 on a GPU that supports it, float32 otherwise",
    )


def device_and_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``auto`` means CUDA when present, in bfloat16 where the GPU supports it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"--device {device!r} is not a torch device: {error}") from None
    if dtype != "auto":
        return dev, DTYPES[dtype]
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return dev, torch.bfloat16
    return dev, torch.float32


def load_checkpoint(
    checkpoint: Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = torch.float32,
    fmt: str = "auto",
) -> tuple[Transformer, Path | None]:
    """Model in eval mode and the path of its ``tokenizer.model`` (None when absent).

    ``fmt`` is passed to :func:`llamaforge.formats.load_any` (``auto`` detects it).
    """
    from llamaforge.formats import load_any

    if not checkpoint.is_dir():
        raise CheckpointError(
            f"{checkpoint}: no such model folder; pass a folder written by `llamaforge train` "
            "or `llamaforge convert`, or a Hugging Face or Meta model folder"
        )
    model, tokenizer_path = load_any(checkpoint, fmt=fmt, device=device, dtype=dtype)
    return model.eval(), tokenizer_path


def load_model_and_tokenizer(
    checkpoint: Path, device: str, dtype: str, fmt: str = "auto"
) -> tuple[Transformer, Tokenizer]:
    """Model in eval mode and its SentencePiece tokenizer, from a model folder of any format.

    ``device``/``dtype`` are the ``--device``/``--dtype`` flags; the tokenizer
    must sit next to the weights, since a model is useless with any other one.
    """
    from llamaforge.tokenizer import Tokenizer

    if not checkpoint.is_dir():
        load_checkpoint(checkpoint)  # the missing-folder error, before touching the device
    dev, torch_dtype = device_and_dtype(device, dtype)
    model, tokenizer_path = load_checkpoint(checkpoint, dev, torch_dtype, fmt)
    if tokenizer_path is None:
        raise CheckpointError(
            f"{checkpoint} has no tokenizer.model; copy the tokenizer the model was trained "
            "with into the folder"
        )
    return model, Tokenizer(tokenizer_path)


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_cache_fits(model: nn.Module, max_len: int) -> None:
    """Refuse a KV cache the machine cannot hold (it is allocated whole, up front).

    A checkpoint's ``max_seq_len`` of 2**24 would otherwise ask for ~16 GiB
    at dim 64 before the first prompt; ``--context`` keeps fewer positions.
    """
    cfg, param = model.config, next(model.parameters())
    need = 2 * cfg.n_layers * cfg.n_heads * cfg.head_dim * max_len * param.element_size()
    free = available_bytes(param.device)
    if free is not None and need > free // 2:
        raise ConfigError(
            f"the KV cache for {max_len} positions needs {need / 2**30:.1f} GiB, more than half "
            f"of the {free / 2**30:.1f} GiB available; pass --context N with fewer positions"
        )
