"""Loading a checkpoint folder for the command-line tools that run a model.

``llamaforge generate``, ``eval`` and ``eval-loss`` read the same folders
(native, training checkpoints, Hugging Face and Meta, told apart by
:func:`llamaforge.formats.detect_format`) and fail the same way on a missing
folder or tokenizer, through :func:`load_checkpoint`; ``generate`` and
``eval`` also share the ``--device`` and ``--dtype`` flags, so the flags, the
``auto`` rules and the error messages live here once. ``auto``
follows what users of Meta's and Hugging Face's scripts expect: CUDA when
present, in bfloat16 where the GPU supports it, float32 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import torch

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
