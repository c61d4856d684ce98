"""Tokenize documents into a token folder, redoing it only when what made it changed.

The folder's format is :mod:`llamaforge.data.shards`. What made the output is
recorded in ``index.json`` under ``made_from``: the settings (``shard_tokens``
and whatever the caller adds) and, when the caller names them, the input files
with their resolved path, size and ``mtime_ns`` (the data build's stage 2 does
the same with its list of inputs). Running again into a finished folder:

* same tokenizer and the same ``made_from``: nothing is read or written; the
  stored index is returned (this is the fast, common re-run);
* ``made_from`` differs (an input was edited, added, removed or renamed, or a
  setting changed): the folder is tokenized again, atomically: the previous
  output stays readable until the new ``index.json`` replaces it (see
  :class:`~llamaforge.data.shard_writer.ShardWriter`'s ``replacing``);
* a different tokenizer (vocab size, BOS/EOS ids, or model file hash):
  refused, because a training run may be reading the folder and its token ids
  would silently change meaning; choose another output folder;
* a damaged folder (a shard missing or of the wrong size): tokenized again.

Decision: inputs are compared by size and ``mtime_ns``, not by content hash,
so an unchanged re-run stats a few files instead of reading terabytes. An
edit that keeps both size and modification time (``touch -r``, some ``rsync``
modes) is not noticed; tokenize into a fresh folder after such a copy.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llamaforge.data.shard_writer import ShardWriter
from llamaforge.data.shards import INDEX_NAME, TokenIndex, TokenShards, file_sha256
from llamaforge.errors import DataError


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """Where the tokenizer model lives and its hash, when the object tells us (``model_path``)."""
    for attr in ("model_path", "path", "model_file"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, str | os.PathLike) and Path(value).is_file():
            return {"path": str(Path(value).resolve()), "sha256": file_sha256(Path(value))}
    return {"path": None, "sha256": None}


def describe_inputs(files: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Path, size and mtime of each input file, in reading order (what ``made_from`` records)."""
    out = []
    for file in files:
        path = Path(file)
        try:
            stat = path.stat()
        except OSError as error:
            raise DataError(f"input {path} cannot be read ({error.strerror})") from error
        out.append(
            {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        )
    return out


def _what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    if not old:
        return "the folder does not record what made it"
    before = {i["path"]: i for i in old.get("inputs") or []}
    after = {i["path"]: i for i in new.get("inputs") or []}
    for path, entry in after.items():
        if path not in before:
            return f"new input {path}"
        if entry != before[path]:
            return f"input {path} changed"
    for path in before:
        if path not in after:
            return f"input {path} is no longer given"
    if [i["path"] for i in old.get("inputs") or []] != [i["path"] for i in new.get("inputs") or []]:
        return "the inputs are in another order"
    keys = sorted(k for k in {*old, *new} - {"inputs"} if old.get(k) != new.get(k))
    return "settings changed: " + ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def tokenize_to_shards(
    documents: Iterable[str],
    tokenizer: Any,
    out_dir: str | Path,
    *,
    shard_tokens: int = 100_000_000,
    progress: bool = True,
    chunk_docs: int = 512,
    made_from: dict[str, Any] | None = None,
    report: Callable[[str], None] | None = None,
) -> TokenIndex:
    """Tokenize ``documents`` into a token folder (see the module docstring for re-runs).

    ``tokenizer`` needs ``encode_batch(texts, bos=, eos=)``, ``vocab_size``,
    ``eos_id`` and ``bos_id``; chunks of ``chunk_docs`` documents go to
    ``encode_batch`` so a multi-threaded tokenizer stays busy. ``made_from``
    describes the documents (``{"inputs": describe_inputs(files), ...}``); a
    caller that leaves it out vouches that the documents did not change.
    ``report`` receives one line saying why a finished folder was reused or redone.
    """
    out = Path(out_dir)
    fingerprint = tokenizer_fingerprint(tokenizer)
    vocab, eos, bos = int(tokenizer.vocab_size), int(tokenizer.eos_id), tokenizer.bos_id
    bos = int(bos) if bos is not None and int(bos) >= 0 else None
    recipe = {**(made_from or {}), "shard_tokens": shard_tokens}
    replacing = None
    if (out / INDEX_NAME).is_file():
        index = TokenIndex.load(out)
        mine, theirs = fingerprint["sha256"], index.tokenizer.get("sha256")
        if (index.vocab_size, index.eos_id, index.bos_id) != (vocab, eos, bos) or (
            mine and theirs and mine != theirs
        ):
            raise DataError(
                f"{out} already holds tokens from a different tokenizer "
                f"({index.tokenizer.get('path')}); choose another output folder"
            )
        try:
            TokenShards(out)  # sizes still match
        except DataError as error:  # a shard was lost or damaged: start over
            if report:
                report(f"{out}: damaged ({error}); tokenizing again")
        else:
            if index.made_from == recipe:
                if report:
                    report(f"{out}: up to date (same inputs, tokenizer and settings); reused")
                return index
            if report:
                report(f"{out}: {_what_changed(index.made_from, recipe)}; tokenizing again")
            replacing = index
    with ShardWriter(
        out, vocab_size=vocab, eos_id=eos, bos_id=bos, shard_tokens=shard_tokens,
        tokenizer=fingerprint, made_from=recipe, replacing=replacing,
    ) as writer:  # fmt: skip
        _write_documents(writer, documents, tokenizer, out, progress, chunk_docs)
        return writer.finish()


def _write_documents(
    writer: ShardWriter,
    documents: Iterable[str],
    tokenizer: Any,
    out: Path,
    progress: bool,
    chunk_docs: int,
) -> None:
    eos = int(tokenizer.eos_id)
    bar = tqdm(desc=f"tokenizing -> {out.name}", unit="doc", disable=not progress)
    it = iter(documents)
    n_seen = 0
    while chunk := list(itertools.islice(it, chunk_docs)):
        texts = []
        for i, text in enumerate(chunk):
            if not isinstance(text, str):
                raise DataError(f"document {n_seen + i} is a {type(text).__name__}, not a str")
            if text:
                texts.append(text)
        writer.index.n_empty_skipped += len(chunk) - len(texts)
        n_seen += len(chunk)
        ids = tokenizer.encode_batch(texts, bos=True, eos=True) if texts else []
        if any(not d or d[-1] != eos for d in ids):
            raise ValueError("tokenizer.encode_batch(eos=True) did not end a document with EOS")
        writer.add_documents(ids)
        bar.update(len(chunk))
    bar.close()
    if writer.n_docs_written == 0:
        raise DataError(f"no non-empty documents to tokenize into {out}; check the input paths")
