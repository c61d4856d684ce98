"""Hugging Face ``LlamaForCausalLM`` folders: export (:func:`to_hf`) and import (:func:`from_hf`).

Our rotary embedding uses the same half-split channel pairing as
``transformers``, so every tensor maps one to one under a new name; only
Meta's own layout needs the q/k permutation (see ``meta.py``).

``transformers`` is never imported here: the folder is plain JSON plus
safetensors, and it stays a test-only dependency. The config carries both
spellings of the rotary base (``rope_theta`` for transformers 4.x,
``rope_parameters`` for 5.x) and a ``"llamaforge"`` table with the fields
Hugging Face has no name for (``multiple_of``, init settings), which
transformers keeps as an inert attribute and :func:`from_hf` reads back, so a
round trip through Hugging Face gives back the same :class:`ModelConfig`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats.atomic import atomic_folder
from llamaforge.formats.hf_tokenizer import write_hf_tokenizer
from llamaforge.formats.hf_weights import hf_names, our_name, read_hf_weights
from llamaforge.formats.native import (
    TOKENIZER_NAME,
    config_errors,
    copy_tokenizer,
    model_from_state_dict,
    plain_state_dict,
    read_json,
    write_json,
)
from llamaforge.model import ModelConfig, Transformer
from llamaforge.umask import save_safetensors

if TYPE_CHECKING:
    from llamaforge.finetune.templates import ChatTemplate

# tokenizer_config.json key of our template's fields, beside the Jinja ``chat_template``.
OUR_TEMPLATE_KEY = "llamaforge_chat_template"


def _special_tokens(tokenizer_path: str | os.PathLike | None) -> dict[str, Any]:
    """Ids and pieces of BOS/EOS/UNK/PAD, read from the SentencePiece model when there is one."""
    tokens: dict[str, Any] = {"bos": (1, "<s>"), "eos": (2, "</s>"), "unk": (0, "<unk>")}
    tokens["pad"] = (None, None)
    if tokenizer_path is None or not Path(tokenizer_path).is_file():
        return tokens
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    except (OSError, RuntimeError) as error:
        raise CheckpointError(f"{tokenizer_path}: not a SentencePiece model ({error})") from error
    for kind, index in (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unk", sp.unk_id())):
        tokens[kind] = (None, None) if index < 0 else (index, sp.id_to_piece(index))
    pad = sp.pad_id()
    tokens["pad"] = (None, None) if pad < 0 else (pad, sp.id_to_piece(pad))
    return tokens


def hf_config(cfg: ModelConfig, dtype: torch.dtype, tokens: dict[str, Any]) -> dict[str, Any]:
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": tokens["bos"][0],
        "eos_token_id": tokens["eos"][0],
        "pad_token_id": tokens["pad"][0],
        "torch_dtype": dtype_name,
        "dtype": dtype_name,
        "llamaforge": {
            "multiple_of": cfg.multiple_of,
            "init_std": cfg.init_std,
            "depth_scaled_init": cfg.depth_scaled_init,
            "name": cfg.name,
        },
    }


def config_from_hf(data: Any, path: Path) -> ModelConfig:
    """Map a ``LlamaConfig`` to ours (see :func:`_config_from_hf`); bad values are one line."""
    return config_errors(path, lambda: _config_from_hf(data, path))


def _config_from_hf(data: Any, path: Path) -> ModelConfig:
    """Map a ``LlamaConfig`` to ours, refusing what LLaMA-1 cannot represent.

    Hugging Face has no ``multiple_of``: it is taken from the ``llamaforge``
    table when we wrote the folder, else it is the largest power of two
    <= 256 for which LLaMA's sizing rule (8*dim/3 rounded up to a multiple)
    gives ``intermediate_size``; 256 for every model of the paper.
    """
    if not isinstance(data, dict) or data.get("model_type") != "llama":
        found = data.get("model_type") if isinstance(data, dict) else None
        raise CheckpointError(f"{path}: model_type is {found!r}, only 'llama' can be imported")

    def need(key: str) -> Any:
        if key not in data:
            raise CheckpointError(f"{path}: required field {key!r} is missing")
        return data[key]

    dim, heads = need("hidden_size"), need("num_attention_heads")
    kv_heads = data.get("num_key_value_heads") or heads
    if kv_heads != heads:
        raise CheckpointError(
            f"{path}: num_key_value_heads={kv_heads} differs from num_attention_heads={heads}; "
            "grouped-query attention (LLaMA-2 70B, LLaMA-3) is not LLaMA-1 and is not supported"
        )
    head_dim = dim // heads if isinstance(dim, int) and isinstance(heads, int) and heads else None
    if data.get("head_dim") not in (None, head_dim):
        raise CheckpointError(f"{path}: head_dim must be hidden_size / num_attention_heads")
    if data.get("hidden_act", "silu") not in ("silu", "swish"):
        raise CheckpointError(f"{path}: hidden_act {data['hidden_act']!r} is not SwiGLU's silu")
    if data.get("attention_bias") or data.get("mlp_bias"):
        raise CheckpointError(f"{path}: attention_bias/mlp_bias are set; LLaMA has no biases")
    rope = data.get("rope_parameters") or {}
    scaling = data.get("rope_scaling") or {}
    rope_type = scaling.get("rope_type", scaling.get("type")) or rope.get("rope_type", "default")
    if rope_type != "default":
        raise CheckpointError(f"{path}: rope scaling {rope_type!r} is not supported (LLaMA-1)")
    stash = data.get("llamaforge") if isinstance(data.get("llamaforge"), dict) else {}
    for key, kind in (("name", str), ("depth_scaled_init", bool)):  # ModelConfig trusts these
        if key in stash and not isinstance(stash[key], kind):
            raise CheckpointError(
                f"{path}: llamaforge.{key} must be a {kind.__name__}, got {stash[key]!r}; "
                "remove it or fix its value"
            )
    fields = {
        "dim": dim,
        "n_layers": need("num_hidden_layers"),
        "n_heads": heads,
        "vocab_size": need("vocab_size"),
        "norm_eps": data.get("rms_norm_eps", 1e-6),
        "rope_theta": float(rope.get("rope_theta", data.get("rope_theta", 10000.0))),
        "max_seq_len": data.get("max_position_embeddings", 2048),
        "init_std": stash.get("init_std", data.get("initializer_range", 0.02)),
    }
    fields["name"] = path.parent.name  # the folder, e.g. "llama-7b-hf", unless we wrote it
    fields.update({k: stash[k] for k in ("depth_scaled_init", "name") if k in stash})
    hidden = need("intermediate_size")
    candidates = [stash["multiple_of"]] if "multiple_of" in stash else []
    candidates += [2**k for k in range(8, -1, -1)]
    try:
        for multiple_of in candidates:
            cfg = ModelConfig(**fields, multiple_of=multiple_of)
            if cfg.ffn_hidden_dim == hidden:
                return cfg
    except ConfigError as error:
        raise CheckpointError(f"{path}: {error}") from error
    raise CheckpointError(
        f"{path}: intermediate_size={hidden} is not LLaMA's SwiGLU size for hidden_size={dim} "
        f"(int(8*{dim}/3) rounded up to a multiple of a power of two <= 256, e.g. "
        f"{ModelConfig(**fields).ffn_hidden_dim})"
    )


def from_hf(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.float32,
) -> tuple[Transformer, Path | None]:
    """Import a ``LlamaForCausalLM`` folder; returns the model and its ``tokenizer.model`` (or None).

    Tied embeddings are untied by copying, since LLaMA has a separate
    output matrix; ``rotary_emb.inv_freq`` buffers of old exports are dropped.
    """
    folder = Path(directory)
    config_path = folder / "config.json"
    data = read_json(config_path)
    cfg = config_from_hf(data, config_path)
    tied = data.get("tie_word_embeddings", False)
    if not isinstance(tied, bool):
        raise CheckpointError(
            f"{config_path}: tie_word_embeddings must be true or false, got {tied!r}"
        )
    hf_state, source = read_hf_weights(folder)
    # Renamed one by one, not through hf_names(cfg.n_layers): that table would be built
    # for the config's layer count before the weights could show it is hostile.
    state = {our_name(k): v for k, v in hf_state.items() if not k.endswith("inv_freq")}
    if tied and "output.weight" not in state and "tok_embeddings.weight" in state:
        state["output.weight"] = state["tok_embeddings.weight"].clone()
    model = model_from_state_dict(cfg, state, source, device=device, dtype=dtype)
    tokenizer = folder / TOKENIZER_NAME
    return model, tokenizer if tokenizer.is_file() else None


def _split(weights: dict[str, torch.Tensor], shards: int) -> list[list[str]]:
    """Consecutive names in ``shards`` non-empty groups of roughly equal bytes."""
    names = list(weights)
    target = sum(t.nbytes for t in weights.values()) / shards
    groups: list[list[str]] = [[]]
    done = 0
    for i, name in enumerate(names):
        split = done >= target * len(groups) or len(names) - i == shards - len(groups)
        if groups[-1] and len(groups) < shards and split:
            groups.append([])
        groups[-1].append(name)
        done += weights[name].nbytes
    return groups


def to_hf(
    model: Transformer,
    directory: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    shards: int = 1,
    chat_template: ChatTemplate | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a folder ``LlamaForCausalLM.from_pretrained`` loads, atomically.

    ``dtype`` defaults to the model's; ``shards`` > 1 splits the weights into
    that many ``model-0000i-of-0000n.safetensors`` files with an index, as
    ``save_pretrained(max_shard_size=...)`` does. ``chat_template`` (our
    template, or a Jinja string taken from another Hugging Face folder) goes
    into ``tokenizer_config.json``, so ``apply_chat_template`` renders the
    prompts the model was finetuned on; it needs the tokenizer to be exported.
    """
    names = hf_names(model.config.n_layers)
    weights = {names[k]: v for k, v in plain_state_dict(model, dtype).items()}
    if not isinstance(shards, int) or not 1 <= shards <= len(weights):
        raise ConfigError(f"shards must be between 1 and {len(weights)}, got {shards!r}")
    tokens = _special_tokens(tokenizer_path)
    store_dtype = weights["lm_head.weight"].dtype
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        if shards == 1:
            save_safetensors(weights, tmp / "model.safetensors", {"format": "pt"})
        else:
            weight_map = {}
            groups = _split(weights, shards)
            for i, group in enumerate(tqdm(groups, desc="writing shards", disable=None)):
                name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
                save_safetensors({k: weights[k] for k in group}, tmp / name, {"format": "pt"})
                weight_map.update(dict.fromkeys(group, name))
            total = sum(t.nbytes for t in weights.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            write_json(tmp / "model.safetensors.index.json", index)
        write_json(tmp / "config.json", hf_config(model.config, store_dtype, tokens))
        generation = {"bos_token_id": tokens["bos"][0], "eos_token_id": tokens["eos"][0]}
        write_json(tmp / "generation_config.json", generation)
        if copy_tokenizer(tokenizer_path, tmp) is not None:
            extra = {}
            if isinstance(chat_template, str):
                extra["chat_template"] = chat_template
            elif chat_template is not None:
                extra["chat_template"] = chat_template.to_jinja(tokens["bos"][1], tokens["eos"][1])
                # our fields too, so that convert back and ``llamaforge chat`` get the template
                from llamaforge.finetune.template_store import template_config

                extra[OUR_TEMPLATE_KEY] = template_config(chat_template)  # with its brace syntax
            write_hf_tokenizer(Path(tokenizer_path), tmp, tokens, model.config.max_seq_len, extra)
    return Path(directory)


def read_chat_template(directory: str | os.PathLike) -> ChatTemplate | str | None:
    """The chat template of a Hugging Face folder's ``tokenizer_config.json``, if any.

    Our own template when the folder is our export and its Jinja is still the
    one that template renders (``llamaforge_chat_template`` holds the fields);
    otherwise the Jinja string as found (edited by hand, or another model's).
    """
    path = Path(directory) / "tokenizer_config.json"
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    jinja = data.get("chat_template")
    jinja = jinja if isinstance(jinja, str) and jinja else None
    ours = data.get(OUR_TEMPLATE_KEY)
    if jinja is not None and ours is not None:
        from llamaforge.finetune.template_store import template_from_config

        template = template_from_config({"chat_template": ours}, f"{path} {OUR_TEMPLATE_KEY}")
        if template is not None and template.to_jinja("bos", "eos") == jinja:  # (names unused)
            return template
    return jinja


__all__ = [
    "config_from_hf",
    "from_hf",
    "hf_config",
    "hf_names",
    "read_chat_template",
    "read_hf_weights",
    "to_hf",
]
