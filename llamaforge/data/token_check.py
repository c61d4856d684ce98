"""Refuse a token folder made with another tokenizer, before any work starts.

Ids from a foreign tokenizer are still valid integers: training on them runs
every step and eval-loss prints a loss, both meaningless. ``index.json``
records the tokenizer's vocabulary size, BOS/EOS ids and sha256
(:func:`llamaforge.data.shards.tokenizer_fingerprint`), so one cheap read of
it decides. :func:`check_tokens_match` is what ``llamaforge train`` (before
the model is allocated), ``eval-loss`` and finetuning call.

Rules (decisions where the issue is silent):

* against a tokenizer (a :class:`~llamaforge.tokenizer.Tokenizer` or the path
  of its ``.model``): when the folder recorded its tokenizer (``tokenize`` and
  the data build always do), the sha256, vocabulary size, BOS and EOS must be
  equal; a folder written without one (``ShardWriter`` used directly) only
  needs ids that fit the tokenizer's vocabulary;
* against a model (a :class:`~llamaforge.model.ModelConfig`): the folder's
  vocabulary may not be larger than the model's ``vocab_size`` (its ids would
  index past the embedding). A smaller one is accepted: LLaMA itself does not
  pad its embedding, but padding the vocabulary to a round size is common
  (litgpt's ``padded_vocab_size``, our tiny test models), so vocabulary size
  alone cannot tell a foreign tokenizer; the tokenizer's sha256, BOS and EOS
  (checked whenever the run or checkpoint names its tokenizer) do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llamaforge.data.shards import TokenIndex, file_sha256
from llamaforge.errors import DataError


def _describe(index: TokenIndex) -> str:
    path = index.tokenizer.get("path") if isinstance(index.tokenizer, dict) else None
    return f"tokenizer {path}" if path else "an unrecorded tokenizer"


def _check_tokenizer(index: TokenIndex, where: Path, tokenizer: Any) -> None:
    if isinstance(tokenizer, str | os.PathLike):
        from llamaforge.tokenizer import Tokenizer

        tokenizer = Tokenizer(tokenizer)
    model_path = Path(tokenizer.model_path)
    bos = tokenizer.bos_id if tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else None
    mine = (tokenizer.vocab_size, bos, tokenizer.eos_id)
    theirs = (index.vocab_size, index.bos_id, index.eos_id)
    recorded = index.tokenizer.get("sha256") if isinstance(index.tokenizer, dict) else None
    if not recorded and index.vocab_size <= tokenizer.vocab_size:
        # Written without a tokenizer (ShardWriter used directly): nothing says which one
        # made it, and its ids fit this one's vocabulary; there is nothing to refuse on.
        return
    if mine != theirs:
        raise DataError(
            f"{where} was tokenized with {_describe(index)} (vocab_size/bos/eos {theirs}), but "
            f"{model_path} has {mine}; tokenize the data again with this tokenizer"
        )
    if recorded and recorded != file_sha256(model_path):
        raise DataError(
            f"{where} was tokenized with {_describe(index)} (sha256 {recorded[:12]}…), not with "
            f"{model_path} (sha256 {file_sha256(model_path)[:12]}…); tokenize the data again "
            "with this tokenizer, or use the model trained with that one"
        )


def _check_model(index: TokenIndex, where: Path, config: Any) -> None:
    if index.vocab_size > config.vocab_size:
        name = getattr(config, "name", None) or "the model"
        raise DataError(
            f"{where} was tokenized with {_describe(index)} of vocab_size {index.vocab_size}, "
            f"but {name} has vocab_size {config.vocab_size}; use the token data of the model's "
            "tokenizer (or set model.vocab_size to match when training a new model)"
        )


def check_tokens_match(tokens: str | os.PathLike | TokenIndex, *against: Any) -> TokenIndex:
    """Raise :class:`DataError` naming both sides unless ``tokens`` fits everything in ``against``.

    ``tokens`` is a token folder (or its loaded :class:`TokenIndex`); each of
    ``against`` is a Tokenizer, a path to a SentencePiece ``.model``, a
    ``ModelConfig`` (anything with ``vocab_size`` and no ``model_path``), or
    None (skipped). Returns the index, so callers need not read it twice.
    """
    index = tokens if isinstance(tokens, TokenIndex) else TokenIndex.load(tokens)
    where = Path(tokens) if not isinstance(tokens, TokenIndex) else Path("the token folder")
    for other in against:
        if other is None:
            continue
        if isinstance(other, str | os.PathLike) or hasattr(other, "model_path"):
            _check_tokenizer(index, where, other)
        elif hasattr(other, "vocab_size"):
            _check_model(index, where, other)
        else:
            raise TypeError(f"cannot check token data against a {type(other).__name__}")
    return index


__all__ = ["check_tokens_match"]
