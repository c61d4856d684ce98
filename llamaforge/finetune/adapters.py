"""LoRA checkpoint folders: adapters plus a reference to the base checkpoint.

A LoRA folder is a native model folder (``config.json`` with ``"format":
"llamaforge"``, ``model.safetensors`` [+ ``tokenizer.model``]) in which
``model.safetensors`` holds only the trained tensors
(:func:`~llamaforge.finetune.lora.trainable_state_dict`: a 7B model's
``wq``/``wv`` rank-8 adapters are 8 MB instead of 13 GB) and ``config.json``
has a ``"lora"`` table (:func:`adapter_config`)::

    "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.0,
             "target_modules": ["wq", "wv"],
             "base": "/abs/path/to/base-checkpoint", "base_format": "auto",
             "base_fingerprint": "sha256 of sampled base weights"}

``base`` is stored absolute (a relative one is read against the LoRA
folder). A folder whose ``model.safetensors`` (or DCP shards) holds the
full weights as well as the adapters (a trainer that saves the whole state
dict) needs no base: the stored weights are used and only merged. Every reader of native folders goes through
:func:`llamaforge.formats.native.load_native`, which hands such a folder to
:func:`load_adapter_folder`: the base is loaded (native, Hugging Face or
Meta), checked against the stored model config, the adapters are applied and
merged, so ``convert`` (to every format), ``generate``, ``chat`` and
``eval`` all see plain merged weights with no extra flag. The fingerprint
detects a base that was replaced after training; a mismatch only warns, since
a re-saved base in another dtype changes the sampled values too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from llamaforge.errors import CheckpointError
from llamaforge.finetune.lora import (
    LoRAConfig,
    apply_lora,
    load_trainable_state_dict,
    merge_lora,
    trainable_state_dict,
)
from llamaforge.model import Transformer, build_model

_SAMPLES = 4096  # values hashed per tensor by the fingerprint


class BaseMismatchWarning(UserWarning):
    """The base checkpoint's weights differ from those the adapters were trained on."""


def weights_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of names, shapes and ~4096 evenly spaced values per tensor (rounded to bf16).

    Hashing all of a 7B model's 13 GB would take longer than loading it; a
    strided sample catches a different base with near certainty. Rounding to
    bf16 makes an fp32 base and its bf16 copy agree.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        flat = tensor.reshape(-1)
        step = max(1, flat.numel() // _SAMPLES)
        sample = flat[::step][:_SAMPLES].to("cpu")
        if sample.is_floating_point():
            sample = sample.to(torch.bfloat16).float()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(sample.contiguous().numpy().tobytes())
    return digest.hexdigest()


def adapter_config(
    cfg: LoRAConfig, base: str | os.PathLike, base_model: torch.nn.Module, base_format: str = "auto"
) -> dict[str, Any]:
    """The ``config.json`` ``"lora"`` table of a checkpoint trained on ``base``.

    Call it with the base model before :func:`apply_lora` (or after: only the
    base weights are fingerprinted, the adapters are left out).
    """
    base_state = {
        k: v for k, v in base_model.state_dict().items() if not k.endswith((".lora_a", ".lora_b"))
    }
    return {
        **{k: v for k, v in cfg.to_dict().items() if k != "enabled"},
        "base": str(Path(base).resolve()),
        "base_format": base_format,
        "base_fingerprint": weights_fingerprint(base_state),
    }


def save_adapters(
    model: Transformer,
    directory: str | os.PathLike,
    lora: Mapping[str, Any],
    tokenizer_path: str | os.PathLike | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a LoRA folder (atomically): ``trainable_state_dict(model)`` + config with ``lora``."""
    from llamaforge.formats.native import FORMAT_VERSION, atomic_folder, copy_tokenizer, write_json

    weights = {k: v.detach().to("cpu").contiguous() for k, v in trainable_state_dict(model).items()}
    config = {"format": "llamaforge", "format_version": FORMAT_VERSION}
    config.update(extra_config or {})
    config.update({"model": model.config.to_dict(), "lora": dict(lora)})
    with atomic_folder(directory) as tmp:
        save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
        write_json(tmp / "config.json", config)
        copy_tokenizer(tokenizer_path, tmp)
    return Path(directory)


def lora_table(data: Any) -> Mapping[str, Any] | None:
    """The LoRA settings a parsed ``config.json`` declares, or None for a plain model.

    The top-level ``"lora"`` table (:func:`adapter_config`) wins; a training
    checkpoint whose ``"train"`` config has ``lora.enabled`` counts too (its
    weights file then holds the full state dict, adapters included).
    """
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("lora"), Mapping):
        return data["lora"]
    train = data.get("train")
    table = train.get("lora") if isinstance(train, Mapping) else None
    if isinstance(table, Mapping) and table.get("enabled") is True:
        return table
    return None


def _lora_table(data: Mapping[str, Any], path: Path) -> tuple[LoRAConfig, Path | None, str]:
    table = lora_table(data)
    if table is None:
        raise CheckpointError(f"{path}: no 'lora' table")
    fields = {k: table[k] for k in ("rank", "alpha", "dropout", "target_modules") if k in table}
    try:
        cfg = LoRAConfig(enabled=True, **fields)
    except Exception as error:
        raise CheckpointError(f"{path}: invalid 'lora' table ({error})") from error
    base = table.get("base")
    if base is not None and not isinstance(base, str):
        raise CheckpointError(f"{path}: lora.base must be a path, got {base!r}")
    base_path = None if base is None else Path(base)
    if base_path is not None and not base_path.is_absolute():
        base_path = path.parent / base_path
    return cfg, base_path, str(table.get("base_format", "auto"))


def load_adapter_folder(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
    merge: bool = True,
) -> tuple[Transformer, Path | None]:
    """Base + adapters of a LoRA folder, merged into plain weights unless ``merge=False``.

    Returns the model and the tokenizer path (the folder's, else the base's).
    """
    from llamaforge.formats.dcp import is_dcp_folder, read_dcp_weights
    from llamaforge.formats.native import (
        CONFIG_NAME,
        TOKENIZER_NAME,
        model_from_state_dict,
        read_json,
        read_model_config,
        read_safetensors,
    )

    folder = Path(directory)
    config_path = folder / CONFIG_NAME
    data = read_json(config_path)
    expected = read_model_config(folder)
    cfg, base, base_format = _lora_table(data, config_path)
    weights_path = folder / "model.safetensors"
    if not weights_path.is_file() and is_dcp_folder(folder):
        state, weights_path = read_dcp_weights(folder), folder
    else:
        state = read_safetensors(weights_path)
    base_names = set(build_model(expected, device="meta").state_dict())
    if base_names <= set(state):  # the folder holds the full weights: no base to read
        base_state = {k: state.pop(k) for k in base_names}
        model = model_from_state_dict(expected, base_state, weights_path, device, dtype)
        base_tokenizer = None
    elif base is None:
        raise CheckpointError(
            f"{weights_path} holds only adapters and {config_path} names no base checkpoint "
            "(lora.base); add the path of the model the adapters were trained on"
        )
    else:
        model, base_tokenizer = _load_base(base, base_format, expected, config_path, device, dtype)
        stored = lora_table(data).get("base_fingerprint")
        if stored and stored != weights_fingerprint(model.state_dict()):
            warnings.warn(
                f"{base}: its weights differ from the base {config_path} was trained on "
                "(fingerprint mismatch); the merged model may be wrong",
                BaseMismatchWarning,
                stacklevel=2,
            )
    apply_lora(model, cfg)
    like = model.output.weight
    state = {k: v.to(device=like.device, dtype=like.dtype) for k, v in state.items()}
    load_trainable_state_dict(model, state, source=str(weights_path))
    if merge:
        merge_lora(model)
    tokenizer = folder / TOKENIZER_NAME
    return model, tokenizer if tokenizer.is_file() else base_tokenizer


def _load_base(base: Path, base_format: str, expected, config_path: Path, device, dtype):
    from llamaforge.formats import load_any

    if not base.is_dir():
        raise CheckpointError(
            f"{config_path}: its base checkpoint {base} does not exist; copy the base model "
            "there or set lora.base in that config.json to where it is now"
        )
    if is_adapter_folder(base):
        raise CheckpointError(f"{config_path}: the base {base} is itself a LoRA folder")
    model, tokenizer = load_any(base, base_format, device=device, dtype=dtype)
    # Fields that do not change any weight may differ (a finetune may shorten
    # max_seq_len); the checkpoint's own values are the ones the model then uses.
    loose = {k: getattr(expected, k) for k in ("max_seq_len", "init_std", "depth_scaled_init")}
    if dataclasses.replace(model.config, **loose) != expected:
        raise CheckpointError(
            f"{config_path}: the base {base} is a different model ({model.config.name}, "
            f"dim {model.config.dim}, {model.config.n_layers} layers) from the one the "
            "adapters were trained on; point lora.base at the right checkpoint"
        )
    model.config = expected
    return model, tokenizer


def is_adapter_folder(directory: str | os.PathLike) -> bool:
    """True for a native folder whose ``config.json`` declares LoRA (see :func:`lora_table`)."""
    from llamaforge.formats.native import CONFIG_NAME, read_json

    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        return False
    data = read_json(path)
    return isinstance(data, dict) and data.get("format") == "llamaforge" and bool(lora_table(data))
