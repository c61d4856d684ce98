"""Meta's original release layout: ``params.json`` + ``consolidated.NN.pth`` shards.

Each shard is one model-parallel rank of fairscale's layers, so merging
concatenates along the dimension that layer splits: ColumnParallelLinear
(wq, wk, wv, w1, w3 and the output head) splits its output features, dim 0
of the weight; RowParallelLinear (wo, w2) splits its input features, dim 1;
ParallelEmbedding splits the embedding dimension, dim 1; RMSNorm gains are
replicated. The 7B/13B/33B/65B releases have 1/2/4/8 shards.

Meta's rotary code pairs channels (2i, 2i+1) of each head as complex
numbers; ours pairs (i, i + head_dim/2). Rotating q and k is equivariant
under any fixed permutation of their channels applied to both, so
permuting the output rows of wq and wk within each head converts exactly:
Meta row 2i+c (c = 0 real, 1 imaginary) becomes our row c*head_dim/2 + i.
This is the permutation the Hugging Face conversion script applies.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats.atomic import atomic_folder
from llamaforge.formats.native import (
    TOKENIZER_NAME,
    checked_meta_model,
    config_errors,
    copy_tokenizer,
    model_from_state_dict,
    plain_state_dict,
    read_json,
    write_json,
)
from llamaforge.formats.pickled import load_pickled_weights
from llamaforge.model import ModelConfig, Transformer

PARAMS_NAME = "params.json"
_SHARD_RE = re.compile(r"^consolidated\.(\d+)\.pth$")
_COLUMN = ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3")
_ROW = ("attention.wo", "feed_forward.w2")
_ROTARY = ("attention.wq.weight", "attention.wk.weight")
# Meta's loader does not take max_seq_len from params.json; the paper trained on 2048.
DEFAULT_MAX_SEQ_LEN = 2048


def split_dim(name: str) -> int | None:
    """Dimension fairscale splits ``name`` along across model-parallel ranks (None: replicated)."""
    if name == "tok_embeddings.weight":
        return 1
    if name == "output.weight" or name.endswith(tuple(f"{p}.weight" for p in _COLUMN)):
        return 0
    if name.endswith(tuple(f"{p}.weight" for p in _ROW)):
        return 1
    return None


def meta_to_half_split(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Permute wq/wk rows from Meta's interleaved rotary pairs to our half-split pairs."""
    rows, cols = weight.shape
    return (
        weight.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)
    )


def half_split_to_meta(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of :func:`meta_to_half_split`."""
    rows, cols = weight.shape
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)
    )


def shard_paths(folder: Path) -> list[Path]:
    found = {}
    if folder.is_dir():
        for child in folder.iterdir():
            match = _SHARD_RE.match(child.name)
            if match:
                found[int(match.group(1))] = child
    if not found:
        raise CheckpointError(
            f"{folder} has no consolidated.NN.pth files; is it a Meta checkpoint?"
        )
    n_missing = (
        max(found) + 1 - len(found)
    )  # counted, not listed: a stray consolidated.99999999.pth
    if n_missing:
        first = []
        for i in range(max(found) + 1):
            if i not in found:
                first.append(f"consolidated.{i:02d}.pth")
                if len(first) == 3:
                    break
        more = f" and {n_missing - len(first)} more" if n_missing > len(first) else ""
        raise CheckpointError(
            f"{folder}: shard(s) {', '.join(first)}{more} are missing (the highest present is "
            f"{found[max(found)].name}); copy the whole folder"
        )
    return [found[i] for i in sorted(found)]


def _check_shard_count(params: Any, params_path: Path, paths: list[Path], first: dict) -> None:
    """Refuse a folder missing its last shard(s), naming the files expected and found.

    The numbering alone cannot show that ``consolidated.03.pth`` of four is
    gone; the split embedding can: each shard holds ``dim / n_shards`` of
    its columns, so ``params.json``'s ``dim`` gives the count.
    """
    embedding = first.get("tok_embeddings.weight")
    dim = params.get("dim") if isinstance(params, dict) else None
    if not isinstance(embedding, torch.Tensor) or embedding.ndim != 2 or not isinstance(dim, int):
        return  # reported with a clearer message by the checks that follow
    columns = embedding.shape[1]
    if columns == 0 or dim % columns or dim // columns == len(paths):
        return
    expected = dim // columns
    found = [p.name for p in paths]
    missing = [f"consolidated.{i:02d}.pth" for i in range(len(paths), expected)]
    if expected < len(paths):
        raise CheckpointError(
            f"{paths[0].parent}: found {len(paths)} shards {found}, but {params_path.name} "
            f"(dim={dim}) and {paths[0].name} ({columns} embedding columns) imply {expected}"
        )
    raise CheckpointError(
        f"{paths[0].parent}: expected {expected} shards consolidated.00.pth .. "
        f"consolidated.{expected - 1:02d}.pth ({params_path.name} dim={dim}, {columns} "
        f"embedding columns per shard) but found {found}; missing {missing}: copy the whole folder"
    )


def _merged_shape(folder: Path, name: str, parts: list[torch.Tensor]) -> tuple[int, ...]:
    """Shape of ``name`` once its shards are merged (replicated ones: the first shard's)."""
    shapes = [tuple(p.shape) for p in parts]
    dim = split_dim(name)
    if dim is None or len(parts) == 1:
        return shapes[0]
    first = shapes[0]
    if len(first) <= dim or any(
        len(s) != len(first) or s[:dim] + s[dim + 1 :] != first[:dim] + first[dim + 1 :]
        for s in shapes
    ):
        raise CheckpointError(f"{folder}: {name} has inconsistent shard shapes {shapes}")
    return (*first[:dim], sum(s[dim] for s in shapes), *first[dim + 1 :])


def config_from_params(params: Any, path: Path, vocab_size: int) -> ModelConfig:
    """``params.json`` to our config (see :func:`_config_from_params`); bad values are one line."""
    return config_errors(path, lambda: _config_from_params(params, path, vocab_size))


def _config_from_params(params: Any, path: Path, vocab_size: int) -> ModelConfig:
    """``params.json`` to our config; ``vocab_size`` (from the weights) replaces their -1."""
    if not isinstance(params, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    for key in ("dim", "n_layers", "n_heads"):
        if key not in params:
            raise CheckpointError(f"{path}: required field {key!r} is missing")
    n_kv = params.get("n_kv_heads")
    if n_kv is not None and n_kv != params["n_heads"]:
        raise CheckpointError(
            f"{path}: n_kv_heads={n_kv} differs from n_heads; grouped-query attention "
            "(LLaMA-2 70B, LLaMA-3) is not LLaMA-1 and is not supported"
        )
    if params.get("ffn_dim_multiplier") is not None or params.get("use_scaled_rope"):
        raise CheckpointError(
            f"{path}: ffn_dim_multiplier/use_scaled_rope are not LLaMA-1 features; not supported"
        )
    stated = params.get("vocab_size", -1)
    if stated not in (-1, vocab_size):
        raise CheckpointError(
            f"{path}: vocab_size={stated} but tok_embeddings has {vocab_size} rows"
        )
    try:
        return ModelConfig(
            dim=params["dim"],
            n_layers=params["n_layers"],
            n_heads=params["n_heads"],
            vocab_size=vocab_size,
            multiple_of=params.get("multiple_of", 256),
            norm_eps=params.get("norm_eps", 1e-5),  # Meta's ModelArgs default
            rope_theta=float(params.get("rope_theta", 10000.0)),
            max_seq_len=DEFAULT_MAX_SEQ_LEN,
            name=path.parent.name,
        )
    except ConfigError as error:
        raise CheckpointError(f"{path}: {error}") from error


def from_meta(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> tuple[Transformer, Path | None]:
    """Merge Meta's shards into our model; returns it and the ``tokenizer.model`` found.

    Meta ships ``tokenizer.model`` next to the size folders (``llama/7B/``,
    ``llama/tokenizer.model``), so the folder itself is searched first, then
    its parent. ``rope.freqs`` buffers in the shards are ignored (recomputed).
    """
    folder = Path(directory)
    params_path = folder / PARAMS_NAME
    params = read_json(params_path)
    paths = shard_paths(folder)
    shards = [load_pickled_weights(p, mmap=True) for p in paths]  # mmap: paged in as merged
    _check_shard_count(params, params_path, paths, shards[0])
    names = [k for k in shards[0] if k != "rope.freqs"]
    for path, shard in zip(paths[1:], shards[1:], strict=True):
        if set(shard) - {"rope.freqs"} != set(names):
            raise CheckpointError(f"{path} holds different tensors than {paths[0].name}")
    embedding = shards[0].get("tok_embeddings.weight")
    if embedding is None or embedding.ndim != 2:
        raise CheckpointError(f"{paths[0]} has no (vocab, dim) tok_embeddings.weight")
    cfg = config_from_params(params, params_path, embedding.shape[0])
    # Every merged shape is the model's before anything is concatenated (allocated).
    merged = {name: _merged_shape(folder, name, [s[name] for s in shards]) for name in names}
    checked_meta_model(cfg, merged, paths[0])
    state: dict[str, torch.Tensor] = {}
    for name in tqdm(names, desc="merging shards", disable=None, leave=False):
        parts = [shard[name] for shard in shards]
        dim = split_dim(name)
        state[name] = parts[0] if dim is None or len(parts) == 1 else torch.cat(parts, dim=dim)
    for name, tensor in state.items():
        if name.endswith(_ROTARY) and tuple(tensor.shape) == (cfg.dim, cfg.dim):
            state[name] = meta_to_half_split(tensor, cfg.n_heads)
    model = model_from_state_dict(cfg, state, paths[0], device=device, dtype=dtype)
    for candidate in (folder / TOKENIZER_NAME, folder.parent / TOKENIZER_NAME):
        if candidate.is_file():
            return model, candidate
    return model, None


def meta_params(cfg: ModelConfig) -> dict[str, Any]:
    """Meta's keys only: LLaMA-1's ``ModelArgs(**params)`` rejects unknown keys.

    ``rope_theta`` is written only when it differs from 10000 (later Meta
    code reads it); ``max_seq_len`` has no place there and is lost.
    """
    params: dict[str, Any] = {
        "dim": cfg.dim,
        "multiple_of": cfg.multiple_of,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "norm_eps": cfg.norm_eps,
        "vocab_size": cfg.vocab_size,
    }
    if cfg.rope_theta != 10000.0:
        params["rope_theta"] = cfg.rope_theta
    return params


def to_meta(
    model: Transformer,
    directory: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    shards: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write Meta's layout with ``shards`` model-parallel ranks, atomically.

    Every split dimension must divide evenly, as fairscale requires. Each
    shard also gets the ``rope.freqs`` buffer Meta's files carry, and the
    tokenizer goes inside the folder (not beside it) so it stays
    self-contained; :func:`from_meta` looks in both places.
    """
    cfg = model.config
    sizes = {
        "n_heads": cfg.n_heads,
        "dim": cfg.dim,
        "ffn_hidden_dim": cfg.ffn_hidden_dim,
        "vocab_size": cfg.vocab_size,
    }
    if not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"shards must be a positive integer, got {shards!r}")
    uneven = [f"{k}={v}" for k, v in sizes.items() if v % shards]
    if uneven:
        raise ConfigError(f"cannot split into {shards} shards: {', '.join(uneven)} not divisible")
    state = plain_state_dict(model, dtype)
    for name in state:
        if name.endswith(_ROTARY):
            state[name] = half_split_to_meta(state[name], cfg.n_heads)
    exponents = torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim
    freqs = (1.0 / cfg.rope_theta**exponents).to(state["output.weight"].dtype)
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        for rank in tqdm(range(shards), desc="writing shards", disable=None):
            shard = {}
            for name, tensor in state.items():
                dim = split_dim(name)
                # clone: torch.save of a view would write the whole unsplit storage
                shard[name] = tensor if dim is None else tensor.chunk(shards, dim)[rank].clone()
            shard["rope.freqs"] = freqs
            torch.save(shard, tmp / f"consolidated.{rank:02d}.pth")
        write_json(tmp / PARAMS_NAME, meta_params(cfg))
        copy_tokenizer(tokenizer_path, tmp)
    return Path(directory)
