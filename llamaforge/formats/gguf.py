"""GGUF export (llama.cpp and the tools built on it: Ollama, LM Studio, llama-cpp-python).

One file holds the weights, the model's shape and the tokenizer, written with
the ``gguf`` package (``pip install llamaforge[gguf]``) as llama.cpp's own
``convert_hf_to_gguf.py`` writes a LLaMA model:

* architecture ``llama`` and the ``llama.*`` hyper-parameter keys; LLaMA-1 has
  no grouped-query attention, so ``head_count_kv`` equals ``head_count``;
* tensors under llama.cpp's names (:data:`GGUF_NAMES`); GGUF lists a tensor's
  dimensions fastest-varying first, so a ``(rows, cols)`` weight reads back
  with shape ``[cols, rows]``;
* ``attn_q``/``attn_k`` rows permuted from our half-split rotary layout to the
  interleaved one llama.cpp's rotary code expects. That is ``LlamaModel.permute``
  of the convert script, which is exactly our
  :func:`~llamaforge.formats.meta.half_split_to_meta` (GGUF keeps Meta's layout);
* ``--dtype`` float32 / float16 / bfloat16 gives ``general.file_type`` 0 / 1 / 32
  (F32 / MOSTLY_F16 / MOSTLY_BF16); as in llama.cpp's script the 1-D RMSNorm
  gains stay F32 whatever the file type;
* the SentencePiece vocabulary as ``tokenizer.ggml.model = "llama"``: pieces,
  scores and types id for id. The types are the model file's own, whose
  numbering is GGUF's (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5,
  BYTE 6); the convert script asks SentencePiece for unknown / control /
  unused / byte and calls everything else NORMAL, so it differs only for
  user-defined pieces, which we keep USER_DEFINED so llama.cpp matches them in
  the text whole, as SentencePiece does. A model vocabulary padded past the
  tokenizer's gets ``[PAD1]``, ``[PAD2]``, ... (score -1000, UNUSED), as the
  convert script pads it. BOS is added (when the model has one), EOS is not
  (our ``encode`` defaults); ``add_space_prefix`` follows ``add_dummy_prefix``;
* the chat template, when the checkpoint has one, as ``tokenizer.chat_template``.

Destination: a ``DST`` ending in ``.gguf`` is the file itself; any other
``DST`` is a folder that receives ``DST/model.gguf``. Both are written through
:mod:`llamaforge.formats.atomic` (a new file appears whole or not at all; an
existing file, or a non-empty folder, is replaced only with ``overwrite``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.formats.atomic import (
    atomic_file,
    atomic_folder,
    check_destination,
    check_file_destination,
)
from llamaforge.formats.meta import half_split_to_meta
from llamaforge.formats.native import plain_state_dict
from llamaforge.model import ModelConfig, Transformer

if TYPE_CHECKING:
    from llamaforge.finetune.templates import ChatTemplate

GGUF_FILE = "model.gguf"
GGUF_NAMES = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "output.weight": "output.weight",
}
_LAYER_NAMES = {
    "attention.wq": "attn_q",
    "attention.wk": "attn_k",
    "attention.wv": "attn_v",
    "attention.wo": "attn_output",
    "feed_forward.w1": "ffn_gate",
    "feed_forward.w3": "ffn_up",
    "feed_forward.w2": "ffn_down",
    "attention_norm": "attn_norm",
    "ffn_norm": "ffn_norm",
}
_ROTARY = ("attention.wq.weight", "attention.wk.weight")
_NORMAL, _UNUSED = 1, 5
_FILE_TYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 32}


def require_gguf() -> Any:
    """The ``gguf`` module, or a one-line error saying how to install it."""
    try:
        import gguf
    except ImportError as error:
        raise ConfigError(
            "--to gguf needs the gguf package: pip install llamaforge[gguf]"
        ) from error
    return gguf


def gguf_names(n_layers: int) -> dict[str, str]:
    """Our parameter name -> llama.cpp's tensor name."""
    names = dict(GGUF_NAMES)
    for i in range(n_layers):
        for ours, theirs in _LAYER_NAMES.items():
            names[f"layers.{i}.{ours}.weight"] = f"blk.{i}.{theirs}.weight"
    return names


def _is_file(dst: str | os.PathLike) -> bool:
    return Path(dst).name.lower().endswith(".gguf")


def gguf_path(dst: str | os.PathLike) -> Path:
    """The file written for ``dst``: ``dst`` itself if it ends in ``.gguf``, else ``dst/model.gguf``."""
    return Path(dst) if _is_file(dst) else Path(dst) / GGUF_FILE


def check_gguf_destination(dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a bad destination, or a missing ``gguf`` package, before anything is read."""
    require_gguf()
    if _is_file(dst):
        return check_file_destination(dst, overwrite)
    return check_destination(dst, overwrite) / GGUF_FILE


def _vocabulary(tokenizer_path: Path, vocab_size: int) -> dict[str, Any]:
    """Pieces, scores, types and special ids of a SentencePiece model, padded to ``vocab_size``."""
    from llamaforge.formats.hf_tokenizer import _load_proto

    proto = _load_proto(tokenizer_path)
    pieces = list(proto.pieces)
    if len(pieces) > vocab_size:
        raise CheckpointError(
            f"{tokenizer_path} has {len(pieces)} pieces but the model only {vocab_size} "
            "embedding rows; this tokenizer does not belong to the model"
        )
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    if (norm.name not in ("identity", "") or norm.precompiled_charsmap
            or norm.remove_extra_whitespaces):  # fmt: skip
        warnings.warn(
            f"{tokenizer_path}: normalization {norm.name!r} (or removal of extra whitespace) "
            "is not applied by llama.cpp's tokenizer; some texts will tokenize differently",
            stacklevel=3,
        )
    pad = vocab_size - len(pieces)
    vocab = {
        "tokens": [p.piece for p in pieces] + [f"[PAD{i}]" for i in range(1, pad + 1)],
        "scores": [p.score for p in pieces] + [-1000.0] * pad,
        "types": [p.type or _NORMAL for p in pieces] + [_UNUSED] * pad,
        "add_space_prefix": norm.add_dummy_prefix,
    }
    for kind in ("bos", "eos", "unk", "pad"):
        index = getattr(spec, f"{kind}_id")
        vocab[kind] = index if 0 <= index < len(pieces) else None
    return vocab


def _array(tensor: torch.Tensor, gguf: Any) -> tuple[Any, Any]:
    """A numpy view of ``tensor`` and its GGML type (bfloat16 travels as raw 16-bit words)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy(), gguf.GGMLQuantizationType.BF16
    return tensor.numpy(), None


def _write(
    path: Path,
    cfg: ModelConfig,
    weights: dict[str, torch.Tensor],
    file_type: int,
    vocab: dict[str, Any],
    chat_template: str | None,
) -> None:
    gguf = require_gguf()
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(cfg.name)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.ffn_hidden_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(float(cfg.rope_theta))
    writer.add_layer_norm_rms_eps(float(cfg.norm_eps))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_scores(vocab["scores"])
    writer.add_token_types(vocab["types"])
    writer.add_add_space_prefix(bool(vocab["add_space_prefix"]))
    for kind, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                      ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):  # fmt: skip
        if vocab[kind] is not None:
            add(vocab[kind])
    writer.add_add_bos_token(vocab["bos"] is not None)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, tensor in weights.items():
        array, raw_dtype = _array(tensor, gguf)
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
    finally:
        writer.close()


def to_gguf(
    model: Transformer,
    dst: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    chat_template: ChatTemplate | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as one GGUF file (see the module doc for where); returns its path.

    ``dtype=None`` keeps the model's dtype, which must then be float32,
    float16 or bfloat16. The tokenizer is required: llama.cpp cannot run a
    GGUF without its vocabulary.
    """
    check_gguf_destination(dst, overwrite)
    cfg = model.config
    if tokenizer_path is None or not Path(tokenizer_path).is_file():
        raise CheckpointError(
            f"GGUF needs the SentencePiece tokenizer, and {tokenizer_path or 'the source'} has "
            "no tokenizer.model; put the model's tokenizer.model next to its weights"
        )
    vocab = _vocabulary(Path(tokenizer_path), cfg.vocab_size)
    if chat_template is not None and not isinstance(chat_template, str):
        piece = vocab["tokens"]
        bos = piece[vocab["bos"]] if vocab["bos"] is not None else ""
        eos = piece[vocab["eos"]] if vocab["eos"] is not None else ""
        chat_template = chat_template.to_jinja(bos, eos)
    state = plain_state_dict(model, dtype)
    store = state["output.weight"].dtype
    if store not in _FILE_TYPES:
        raise ConfigError(f"GGUF stores float32, float16 or bfloat16, not {store}; pass --dtype")
    names = gguf_names(cfg.n_layers)
    weights = {}
    for name, tensor in state.items():
        if name.endswith(_ROTARY):
            tensor = half_split_to_meta(tensor, cfg.n_heads)
        if tensor.ndim == 1:
            tensor = tensor.float()
        weights[names[name]] = tensor.contiguous()
    if _is_file(dst):
        with atomic_file(dst, overwrite=overwrite) as tmp:
            _write(tmp, cfg, weights, _FILE_TYPES[store], vocab, chat_template)
    else:
        with atomic_folder(dst, overwrite=overwrite) as tmp:
            _write(tmp / GGUF_FILE, cfg, weights, _FILE_TYPES[store], vocab, chat_template)
    return gguf_path(dst)


__all__ = ["GGUF_FILE", "check_gguf_destination", "gguf_names", "gguf_path", "to_gguf"]
