"""Model folders on disk: the native format and Hugging Face / Meta interop (and GGUF export).

Every conversion goes through an in-memory :class:`~llamaforge.model.Transformer`,
so N formats need N readers and N writers instead of N^2 converters, and
each reader validates names and shapes against the model it builds.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats.atomic import check_destination
from llamaforge.formats.huggingface import from_hf, to_hf
from llamaforge.formats.huggingface import read_chat_template as read_hf_chat_template
from llamaforge.formats.meta import from_meta, to_meta
from llamaforge.formats.native import (
    load_native,
    load_pretrained,
    read_json,
    read_model_config,
    save_native,
    save_pretrained,
)
from llamaforge.model import Transformer

if TYPE_CHECKING:
    from llamaforge.finetune.templates import ChatTemplate

FORMATS = ("native", "hf", "meta")
# Formats ``convert``/``save_any`` write: GGUF is export-only (llama.cpp is where it runs).
OUTPUT_FORMATS = (*FORMATS, "gguf")


def detect_format(directory: str | os.PathLike) -> str:
    """``native``, ``hf`` or ``meta``, from the files present (config.json's keys decide)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} does not exist or is not a folder")
    config = folder / "config.json"
    if config.is_file():
        data = read_json(config)
        if isinstance(data, dict) and data.get("format") == "llamaforge":
            return "native"
        if isinstance(data, dict) and ("model_type" in data or "architectures" in data):
            return "hf"
    if (folder / "params.json").is_file() and any(folder.glob("consolidated.*.pth")):
        return "meta"
    found = sorted(p.name for p in folder.iterdir())[:10]
    raise CheckpointError(
        f"{folder}: cannot tell the checkpoint format from its files {found}; expected "
        "config.json (llamaforge or Hugging Face) or params.json + consolidated.NN.pth; "
        "pass --from"
    )


def load_any(
    directory: str | os.PathLike,
    fmt: str = "auto",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[Transformer, Path | None]:
    """Model and tokenizer path from a folder of any format; ``dtype=None`` keeps the stored one."""
    fmt = detect_format(directory) if fmt == "auto" else fmt
    readers = {"native": load_native, "hf": from_hf, "meta": from_meta}
    if fmt not in readers:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {FORMATS} or 'auto'")
    return readers[fmt](directory, device=device, dtype=dtype)


def save_any(
    model: Transformer,
    directory: str | os.PathLike,
    fmt: str,
    tokenizer_path: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    shards: int = 1,
    chat_template: ChatTemplate | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as ``fmt``; ``dtype`` casts the written copy, the model is not modified.

    ``chat_template`` is kept where the format has a place for it: native
    ``config.json`` (a :class:`ChatTemplate` only) and Hugging Face
    ``tokenizer_config.json`` and GGUF's ``tokenizer.chat_template``; Meta
    folders have none. An existing non-empty ``directory`` is refused unless
    ``overwrite`` (see :mod:`llamaforge.formats.atomic` for the files it may
    replace). ``gguf`` writes one file: ``directory`` itself when it ends in
    ``.gguf``, else ``directory/model.gguf`` (:mod:`llamaforge.formats.gguf`).
    """
    if fmt == "gguf":
        from llamaforge.formats.gguf import to_gguf

        if shards != 1:
            raise ConfigError("GGUF is written as a single file; drop --shards")
        return to_gguf(model, directory, tokenizer_path, dtype, chat_template, overwrite)
    if fmt == "native":
        if shards != 1:
            raise ConfigError("the native format is a single model.safetensors; drop --shards")
        extra = None
        if chat_template is not None and not isinstance(chat_template, str):
            from llamaforge.finetune.template_store import TEMPLATE_KEY, template_config

            extra = {TEMPLATE_KEY: template_config(chat_template)}
        return save_native(
            model, directory, tokenizer_path, extra, dtype=dtype, overwrite=overwrite
        )
    if fmt == "hf":
        return to_hf(
            model, directory, tokenizer_path, dtype, shards,
            chat_template=chat_template, overwrite=overwrite,
        )  # fmt: skip
    if fmt != "meta":
        raise ConfigError(f"unknown format {fmt!r}; choose one of {OUTPUT_FORMATS}")
    return to_meta(
        model, directory, tokenizer_path=tokenizer_path, dtype=dtype, shards=shards,
        overwrite=overwrite,
    )  # fmt: skip


def read_chat_template(directory: str | os.PathLike, fmt: str) -> ChatTemplate | str | None:
    """The chat template a model folder carries (native: ours; Hugging Face: its Jinja)."""
    if fmt == "native":
        from llamaforge.finetune.template_store import template_from_folder

        return template_from_folder(directory)
    return read_hf_chat_template(directory) if fmt == "hf" else None


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    src_format: str = "auto",
    dst_format: str = "native",
    dtype: torch.dtype | None = None,
    shards: int = 1,
    overwrite: bool = False,
) -> Path:
    """Convert a model folder; ``dtype=None`` keeps the source dtype (no fp16 -> fp32 -> fp16).

    The destination is checked before the source is read, so a file, a
    non-empty folder without ``overwrite``, or an unwritable path fails at once
    (for GGUF also a missing ``gguf`` package). Returns the folder, or the
    ``.gguf`` file, written.
    """
    if dst_format not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown format {dst_format!r}; choose one of {OUTPUT_FORMATS}")
    if dst_format == "gguf":
        from llamaforge.formats.gguf import check_gguf_destination

        if shards != 1:
            raise ConfigError("GGUF is written as a single file; drop --shards")
        check_gguf_destination(dst, overwrite)
    else:
        check_destination(dst, overwrite)
    src_format = detect_format(src) if src_format == "auto" else src_format
    model, tokenizer = load_any(src, src_format, dtype=dtype)
    template = read_chat_template(src, src_format)
    kept = dst_format in ("hf", "gguf") or (
        dst_format == "native" and not isinstance(template, str)
    )
    if template is not None and not kept:
        warnings.warn(
            f"{src} carries a chat template that the {dst_format} format has no place for "
            + ("(a Jinja template that is not one of ours: only hf and gguf keep it)"
               if dst_format == "native" else "(Meta folders hold none)")
            + "; pass --template to `llamaforge chat` on the result",
            stacklevel=2,
        )  # fmt: skip
    return save_any(
        model, dst, dst_format, tokenizer, dtype, shards,
        chat_template=template, overwrite=overwrite,
    )  # fmt: skip


__all__ = [
    "FORMATS",
    "OUTPUT_FORMATS",
    "convert",
    "detect_format",
    "from_hf",
    "from_meta",
    "load_any",
    "load_pretrained",
    "read_chat_template",
    "read_model_config",
    "save_any",
    "save_pretrained",
    "to_hf",
    "to_meta",
]
