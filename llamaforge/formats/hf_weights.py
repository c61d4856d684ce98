"""Parameter names and weight files of a Hugging Face ``LlamaForCausalLM`` folder.

Split from :mod:`llamaforge.formats.huggingface` (which re-exports
:func:`hf_names` and :func:`read_hf_weights`). The weights are read as they
are stored: safetensors, or pickled ``.bin`` files through
:func:`llamaforge.formats.pickled.load_pickled_weights`, either single or
sharded with an ``.index.json`` whose every file must hold exactly the names
it lists.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llamaforge.errors import CheckpointError
from llamaforge.formats.native import read_json, read_safetensors
from llamaforge.formats.pickled import load_pickled_weights

_LAYER_NAMES = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# Weight files in the order they are looked for: (index file, single file).
_WEIGHT_FILES = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


def hf_names(n_layers: int) -> dict[str, str]:
    """Our parameter name -> its ``LlamaForCausalLM`` name."""
    names = dict(_TOP_NAMES)
    for i in range(n_layers):
        for ours, theirs in _LAYER_NAMES.items():
            names[f"layers.{i}.{ours}.weight"] = f"model.layers.{i}.{theirs}.weight"
    return names


_THEIR_LAYER = re.compile(r"^model\.layers\.(0|[1-9][0-9]*)\.(.+)\.weight$")
_OUR_LAYER_NAMES = {theirs: ours for ours, theirs in _LAYER_NAMES.items()}
_OUR_TOP_NAMES = {theirs: ours for ours, theirs in _TOP_NAMES.items()}


def our_name(name: str) -> str:
    """Inverse of :func:`hf_names` for any layer index; unknown names come back unchanged.

    (So that the checks of :func:`model_from_state_dict` report them.)
    """
    if name in _OUR_TOP_NAMES:
        return _OUR_TOP_NAMES[name]
    match = _THEIR_LAYER.match(name)
    if match and match.group(2) in _OUR_LAYER_NAMES:
        return f"layers.{match.group(1)}.{_OUR_LAYER_NAMES[match.group(2)]}.weight"
    return name


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return load_pickled_weights(path)


def read_hf_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of a folder (single file or sharded with an index), with HF names."""
    for index_name, single_name in _WEIGHT_FILES:
        index = folder / index_name
        if index.is_file():
            data = read_json(index)
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index} has no 'weight_map' table")
            if not all(isinstance(v, str) for v in weight_map.values()):
                raise CheckpointError(f"{index}: every 'weight_map' entry must name a file")
            state: dict[str, torch.Tensor] = {}
            files = sorted(set(weight_map.values()))
            for name in files:  # all before any is read; ("" and ".." pass the Path test)
                if name in ("", "..") or Path(name).name != name:
                    raise CheckpointError(
                        f"{index} lists {name!r} in 'weight_map', not a file name of the folder"
                    )
            for name in tqdm(files, desc="reading shards", disable=None, leave=False):
                part = _read_weight_file(folder / name)
                listed = {key for key, file in weight_map.items() if file == name}
                if set(part) != listed:
                    raise CheckpointError(
                        f"{folder / name} holds {sorted(set(part) - listed)[:3]} not listed in "
                        f"{index.name}, which also lists {sorted(listed - set(part))[:3]}"
                    )
                state.update(part)
            return state, index
        if (folder / single_name).is_file():
            return _read_weight_file(folder / single_name), folder / single_name
    raise CheckpointError(
        f"{folder} has no model.safetensors (or its .index.json) nor pytorch_model.bin; "
        "is it a Hugging Face model folder?"
    )


__all__ = ["hf_names", "our_name", "read_hf_weights"]
