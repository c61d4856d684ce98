"""Hugging Face tokenizer files for an export: ``tokenizer.json`` that tokenizes exactly as ours.

Why not transformers' ``LlamaTokenizer`` settings: they cannot reproduce
SentencePiece on every string. Its ``Metaspace`` pre-tokenizer adds the dummy
prefix only when the text does not already start with a space, so ``" yes"``
became ``"▁yes"`` instead of SentencePiece's ``"▁▁yes"``; and (in
transformers 5) ``tokenizer_class: LlamaTokenizer`` rebuilds its own pipeline
from the vocabulary, ignoring whatever ``tokenizer.json`` says. So the folder
names the plain ``PreTrainedTokenizerFast`` class, which loads
``tokenizer.json`` verbatim, and that file is built here, from the
SentencePiece model, with no ``transformers``/``tokenizers`` import:

* the BPE vocabulary is SentencePiece's, id for id, with its space symbol
  ``▁`` written as a real space; the normalizer only prepends the dummy-prefix
  space (when the model has ``add_dummy_prefix``), with no pre-tokenizer, so
  whitespace runs, tabs and newlines reach the BPE model as SentencePiece's do;
* a literal U+2581 in the text is then a character outside the vocabulary and
  falls back to its three byte tokens, which is what our
  :class:`~llamaforge.tokenizer.Tokenizer` emits for it (raw SentencePiece,
  and transformers' own Llama files, would read it as a space);
* merges are every pair of normal pieces whose concatenation is a normal
  piece, ranked by the merged piece's score, as SentencePiece's BPE encoder
  picks the best-scoring adjacent pair;
* ``split_special_tokens`` is set, because our tokenizer never reads ``<s>``
  in the text as BOS: it spells the characters (BOS comes from ``bos=True``).

Models whose normalization this cannot express (a normalization rule other
than ``identity``, ``remove_extra_whitespaces``, whitespace as suffix, or
user-defined pieces) get the ``tokenizer.model`` and the slow
``LlamaTokenizer`` config only, with a warning that says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from llamaforge.errors import CheckpointError
from llamaforge.formats.native import write_json

SPACE = "\u2581"
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


def _load_proto(path: Path) -> Any:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: not a SentencePiece model ({error})") from error
    if not proto.pieces:
        raise CheckpointError(f"{path}: not a SentencePiece model (no pieces)")
    return proto


def _unsupported(proto: Any) -> str | None:
    """Why ``tokenizer.json`` cannot match this model exactly, or None."""
    spec = proto.normalizer_spec
    if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
        return "it is not a BPE model"
    if spec.name not in ("identity", "") or spec.precompiled_charsmap:
        return f"its normalization rule is {spec.name!r}, not 'identity'"
    if spec.remove_extra_whitespaces:
        return "it removes extra whitespace"
    if proto.trainer_spec.treat_whitespace_as_suffix:
        return "it treats whitespace as a suffix"
    if any(p.type == _USER_DEFINED for p in proto.pieces):
        return "it has user-defined pieces"
    return None


def _merges(pieces: list[str], normal: dict[str, float]) -> list[list[str]]:
    order = {piece: i for i, piece in enumerate(pieces)}
    ranked = []
    for piece, score in normal.items():
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in normal and right in normal:
                ranked.append((-score, order[piece], order[left], left, right))
    ranked.sort()
    return [[left, right] for *_, left, right in ranked]


def tokenizer_json(proto: Any) -> dict[str, Any]:
    """The ``tokenizers`` serialization of a BPE SentencePiece model (see the module doc)."""
    pieces = [p.piece.replace(SPACE, " ") for p in proto.pieces]
    normal = {
        pieces[i]: p.score for i, p in enumerate(proto.pieces) if p.type == _NORMAL and p.piece
    }
    specials = [
        {
            "id": i,
            "content": p.piece,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, p in enumerate(proto.pieces)
        if p.type in (_UNKNOWN, _CONTROL)
    ]
    unk = next((p.piece for p in proto.pieces if p.type == _UNKNOWN), None)
    bos_id = proto.trainer_spec.bos_id
    dummy = proto.normalizer_spec.add_dummy_prefix
    post = None
    if 0 <= bos_id < len(pieces):
        bos = proto.pieces[bos_id].piece
        post = {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        }
    decoders: list[dict[str, Any]] = [{"type": "ByteFallback"}, {"type": "Fuse"}]
    if dummy:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": specials,
        "normalizer": {"type": "Prepend", "prepend": " "} if dummy else None,
        "pre_tokenizer": None,
        "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": unk,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {piece: i for i, piece in enumerate(pieces)},
            "merges": _merges(pieces, normal),
        },
    }


def write_hf_tokenizer(
    tokenizer_path: Path,
    folder: Path,
    tokens: dict[str, Any],
    max_length: int,
    extra_config: dict[str, Any] | None = None,
) -> None:
    """Write ``tokenizer.json`` (when exact), ``tokenizer_config.json`` and the special-token map.

    ``tokenizer_path`` is the SentencePiece model (already copied into
    ``folder``); ``tokens`` maps bos/eos/unk/pad to ``(id, piece)``;
    ``extra_config`` (a ``chat_template``) is added to ``tokenizer_config.json``.
    """
    proto = _load_proto(tokenizer_path)
    specials = {f"{k}_token": tokens[k][1] for k in ("bos", "eos", "unk", "pad")}
    write_json(folder / "special_tokens_map.json", specials)
    config: dict[str, Any] = {
        **specials,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
    }
    reason = _unsupported(proto)
    if reason is None:
        write_json(folder / "tokenizer.json", tokenizer_json(proto))
        config.update(tokenizer_class="PreTrainedTokenizerFast", split_special_tokens=True)
    else:
        warnings.warn(
            f"{tokenizer_path}: no tokenizer.json written, because {reason}; Hugging Face users "
            "get the slow LlamaTokenizer from tokenizer.model",
            stacklevel=3,
        )
        config.update(tokenizer_class="LlamaTokenizer", legacy=True)
    config.update(extra_config or {})
    write_json(folder / "tokenizer_config.json", config)
