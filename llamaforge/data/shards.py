"""Token shards: documents tokenized once into flat, memory-mapped arrays.

A *token folder* holds ``shard_00000.bin, shard_00001.bin, ...`` (raw
little-endian ``uint16`` when ``vocab_size <= 65536``, else ``uint32``) and an
``index.json`` describing them. Design decisions:

* **Document framing.** Every document is ``BOS text EOS``, as in LLaMA's own
  training data (the released tokenizer adds BOS, and the paper packs
  documents into 2048-token sequences), so packed windows tell the model where
  a document starts and ends. Empty strings are skipped (counted in the index):
  a lone ``BOS EOS`` teaches nothing.
* **Shards are cut at a token count, not at document boundaries**: every shard
  but the last holds exactly ``shard_tokens`` tokens and a document may
  continue in the next shard. Readers see one stream per folder, so this costs
  nothing, and shard sizes stay predictable. A shard's ``n_docs`` counts the
  documents whose EOS lies in it.
* **Atomic and restartable.** Each shard is written to a hidden temp file,
  fsynced and renamed; ``index.json`` is written last, the same way. A folder
  without ``index.json`` is unfinished and is never read; running again on it
  starts over (documents may come from a one-shot iterator, so there is no safe
  way to skip what an interrupted run saw). Running again on a finished folder
  made with the same tokenizer does nothing and returns its index (unless a
  shard is missing or has the wrong size: then it is tokenized again).
* Each shard's sha256 is stored; :meth:`TokenShards.verify` checks it on
  demand, while opening a folder only checks sizes (hashing terabytes on
  every start would be slow).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError, DataError

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_SHARD_RE = re.compile(r"^shard_\d{5}\.bin$|^\.shard_\d{5}\.bin\.tmp$|^\.index\.json\.tmp$")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id: halves disk and page cache for 32k vocabs."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    filename: str
    n_tokens: int
    n_docs: int
    sha256: str


@dataclass
class TokenIndex:
    """Contents of ``index.json``; totals are stored for humans and re-checked on load."""

    dtype: str
    vocab_size: int
    eos_id: int
    bos_id: int | None
    shards: list[ShardInfo] = field(default_factory=list)
    tokenizer: dict[str, Any] = field(default_factory=dict)  # {"path": ..., "sha256": ...}
    n_empty_skipped: int = 0
    format_version: int = FORMAT_VERSION

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.shards)

    @property
    def n_docs(self) -> int:
        return sum(s.n_docs for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["n_tokens"], data["n_docs"] = self.n_tokens, self.n_docs
        return data

    @classmethod
    def load(cls, directory: str | Path) -> TokenIndex:
        path = Path(directory) / INDEX_NAME
        if not path.is_file():
            raise DataError(
                f"{path} not found: {directory} is not a finished token folder; "
                "run tokenization (again) into it"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format_version") != FORMAT_VERSION:
                raise DataError(
                    f"{path}: format_version {data.get('format_version')!r} is not "
                    f"{FORMAT_VERSION}; re-run tokenization with this llamaforge"
                )
            totals = data.pop("n_tokens"), data.pop("n_docs")
            data["shards"] = [ShardInfo(**s) for s in data["shards"]]
            index = cls(**data)
        except (ValueError, KeyError, TypeError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{path} is corrupt ({error}); re-run tokenization") from error
        if totals != (index.n_tokens, index.n_docs):
            raise DataError(f"{path}: totals disagree with its shards; re-run tokenization")
        return index


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """Where the tokenizer model lives and its hash, when the object tells us (``model_path``)."""
    for attr in ("model_path", "path", "model_file"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, str | os.PathLike) and Path(value).is_file():
            return {"path": str(Path(value).resolve()), "sha256": file_sha256(Path(value))}
    return {"path": None, "sha256": None}


class ShardWriter:
    """Appends documents' token ids to shards; :meth:`finish` writes the index.

    Use as a context manager: on an exception the open temp shard is deleted
    and no index is written, so the folder stays "unfinished".
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        vocab_size: int,
        eos_id: int,
        bos_id: int | None,
        shard_tokens: int = 100_000_000,
        tokenizer: dict[str, Any] | None = None,
    ) -> None:
        if shard_tokens <= 0:
            raise ConfigError(f"shard_tokens must be positive, got {shard_tokens}")
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.iterdir():  # leftovers of an interrupted run
            if _SHARD_RE.match(stale.name):
                stale.unlink()
        (self.dir / INDEX_NAME).unlink(missing_ok=True)
        self.dtype = token_dtype(vocab_size)
        self.index = TokenIndex(
            dtype=self.dtype.name,
            vocab_size=vocab_size,
            eos_id=eos_id,
            bos_id=bos_id if bos_id is not None and bos_id >= 0 else None,
            tokenizer=tokenizer or {"path": None, "sha256": None},
        )
        self.shard_tokens = shard_tokens
        self._file: Any = None
        self._count = self._docs = self.n_docs_written = 0
        self._hash = hashlib.sha256()

    def _tmp_path(self) -> Path:
        return self.dir / f".shard_{len(self.index.shards):05d}.bin.tmp"

    def add_documents(self, docs: list[list[int]]) -> None:
        """Append whole documents (each already framed with BOS/EOS)."""
        if not docs:
            return
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        flat = np.fromiter(itertools.chain.from_iterable(docs), np.int64, int(lengths.sum()))
        self.add_tokens(flat, doc_ends=np.cumsum(lengths))

    def add_tokens(self, tokens: np.ndarray, doc_ends: np.ndarray | None = None) -> None:
        """Append a flat id array; ``doc_ends`` are exclusive end offsets of documents in it."""
        tokens = np.asarray(tokens)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.index.vocab_size):
            bad = tokens.min() if tokens.min() < 0 else tokens.max()
            raise DataError(
                f"token id {int(bad)} is outside vocab_size {self.index.vocab_size}; "
                "the tokenizer and the vocab_size it reports disagree"
            )
        tokens = tokens.astype(self.dtype, copy=False)
        ends = np.zeros(0, np.int64) if doc_ends is None else np.asarray(doc_ends)
        pos = 0
        while pos < tokens.size:
            if self._file is None:
                self._file = open(self._tmp_path(), "wb")  # noqa: SIM115 (closed in _close)
            take = min(self.shard_tokens - self._count, tokens.size - pos)
            piece = tokens[pos : pos + take]
            data = piece.astype(piece.dtype.newbyteorder("<"), copy=False).tobytes()
            self._file.write(data)
            self._hash.update(data)
            new_docs = int(np.count_nonzero((ends > pos) & (ends <= pos + take)))
            self._docs += new_docs
            self.n_docs_written += new_docs
            self._count += take
            pos += take
            if self._count == self.shard_tokens:
                self._close()

    def _close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        name = f"shard_{len(self.index.shards):05d}.bin"
        os.replace(self._tmp_path(), self.dir / name)
        self.index.shards.append(ShardInfo(name, self._count, self._docs, self._hash.hexdigest()))
        self._count = self._docs = 0
        self._hash = hashlib.sha256()

    def finish(self) -> TokenIndex:
        if self._file is not None:
            self._close()
        atomic_write_text(self.dir / INDEX_NAME, json.dumps(self.index.to_json(), indent=2) + "\n")
        return self.index

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._file is not None:
            self._file.close()
            self._tmp_path().unlink(missing_ok=True)


def tokenize_to_shards(
    documents: Iterable[str],
    tokenizer: Any,
    out_dir: str | Path,
    *,
    shard_tokens: int = 100_000_000,
    progress: bool = True,
    chunk_docs: int = 512,
) -> TokenIndex:
    """Tokenize ``documents`` into a token folder (see the module docstring for the format).

    ``tokenizer`` needs ``encode_batch(texts, bos=, eos=)``, ``vocab_size``,
    ``eos_id`` and ``bos_id``; chunks of ``chunk_docs`` documents go to
    ``encode_batch`` so a multi-threaded tokenizer stays busy.
    """
    out = Path(out_dir)
    fingerprint = tokenizer_fingerprint(tokenizer)
    vocab, eos, bos = int(tokenizer.vocab_size), int(tokenizer.eos_id), tokenizer.bos_id
    bos = int(bos) if bos is not None and int(bos) >= 0 else None
    if (out / INDEX_NAME).is_file():
        index = TokenIndex.load(out)
        mine, theirs = fingerprint["sha256"], index.tokenizer.get("sha256")
        if (index.vocab_size, index.eos_id, index.bos_id) != (vocab, eos, bos) or (
            mine and theirs and mine != theirs
        ):
            raise DataError(
                f"{out} already holds tokens from a different tokenizer "
                f"({index.tokenizer.get('path')}); delete it or choose another output folder"
            )
        try:
            TokenShards(out)  # sizes still match
            return index
        except DataError:
            pass  # a shard was lost or damaged: tokenize again from scratch
    with ShardWriter(
        out,
        vocab_size=vocab,
        eos_id=eos,
        bos_id=bos,
        shard_tokens=shard_tokens,
        tokenizer=fingerprint,
    ) as writer:
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
        return writer.finish()


class TokenShards:
    """A finished token folder as one read-only token stream; no tokens are copied into RAM.

    Shards are memory-mapped lazily (on first read), so opening a folder with
    thousands of shards is cheap; sizes are checked up front.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index = TokenIndex.load(self.directory)
        self.dtype = np.dtype(self.index.dtype)
        for shard in self.index.shards:
            path = self.directory / shard.filename
            expected = shard.n_tokens * self.dtype.itemsize
            if not path.is_file():
                raise DataError(f"{path} is missing; re-run tokenization into {self.directory}")
            if path.stat().st_size != expected:
                raise DataError(
                    f"{path} has {path.stat().st_size} bytes, the index says {expected}; "
                    f"it is truncated or replaced: re-run tokenization into {self.directory}"
                )
        self._shards = [s for s in self.index.shards if s.n_tokens > 0]
        self._ends = np.cumsum([s.n_tokens for s in self._shards], dtype=np.int64)
        self._maps: list[np.memmap | None] = [None] * len(self._shards)

    vocab_size = property(lambda self: self.index.vocab_size)
    eos_id = property(lambda self: self.index.eos_id)
    bos_id = property(lambda self: self.index.bos_id)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def _map(self, k: int) -> np.memmap:
        if self._maps[k] is None:
            path = self.directory / self._shards[k].filename
            self._maps[k] = np.memmap(path, dtype=self.dtype.newbyteorder("<"), mode="r")
        return self._maps[k]

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream, across shard boundaries."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"tokens [{start}, {start + length}) outside [0, {len(self)})")
        out = np.empty(length, dtype=self.dtype)
        k, filled = int(np.searchsorted(self._ends, start, side="right")), 0
        while filled < length:
            begin = start + filled - (int(self._ends[k - 1]) if k else 0)
            piece = self._map(k)[begin : begin + length - filled]
            out[filled : filled + piece.size] = piece
            filled += piece.size
            k += 1
        return out

    def verify(self) -> None:
        """Recompute every shard's sha256 (slow: reads everything)."""
        for shard in self.index.shards:
            if file_sha256(self.directory / shard.filename) != shard.sha256:
                raise DataError(
                    f"{self.directory / shard.filename}: sha256 mismatch; "
                    f"re-run tokenization into {self.directory}"
                )
