"""Token shards: documents tokenized once into flat arrays on disk.

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
* **Atomic.** Each shard is written to a hidden temp file, fsynced and
  renamed; ``index.json`` is written last, the same way, and is the commit
  point: a folder without it is unfinished and is never read. Replacing a
  finished folder (``ShardWriter(replacing=old_index)``) writes the new shards
  under new names (``g<N>-shard_00000.bin``, generation N) next to the old
  ones, swaps ``index.json``, and only then deletes the old shards, so an
  interrupted redo leaves the previous output readable. Only files named like
  ours (``shard_NNNNN.bin``, ``g<N>-shard_NNNNN.bin`` and our hidden temps)
  are ever deleted; anything else in the folder is left alone.
* Each shard's sha256 is stored; :meth:`TokenShards.verify` checks it on
  demand, while opening a folder only checks sizes (hashing terabytes on
  every start would be slow).
* **Bounded open files.** Reads use ``pread`` on file descriptors kept in one
  process-wide LRU (at most 64, and at most a quarter of ``RLIMIT_NOFILE``),
  so a mixture over thousands of shards never runs out of descriptors; a
  miss costs one ``open``. ``pread`` copies from the page cache straight into
  the batch buffer, as a memory map would, without one map per shard.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
import threading
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llamaforge.errors import ConfigError, DataError

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_SHARD_NAME = re.compile(r"^(?:g(\d{1,9})-)?shard_\d{5}\.bin$")
# Files a writer may delete: our shards and our hidden temporaries, nothing else.
_OURS = re.compile(r"^\.?(?:g\d{1,9}-)?shard_\d{5}\.bin(?:\.tmp)?$|^\.index\.json\.tmp$")


def shard_generation(index: TokenIndex) -> int:
    """The generation of a finished folder's shards (0 for ``shard_NNNNN.bin``)."""
    found = [_SHARD_NAME.match(s.filename) for s in index.shards]
    return max((int(m.group(1) or 0) for m in found if m), default=0)


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
    # What made the output (inputs with size and mtime, settings); see tokenize_folder.
    made_from: dict[str, Any] = field(default_factory=dict)
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
            for shard in index.shards:  # a plain name in this folder, never a path elsewhere
                if not isinstance(shard.filename, str) or not _SHARD_NAME.match(shard.filename):
                    raise ValueError(f"shard file name {shard.filename!r} is not ours")
            # Only what the writer writes: another dtype would read the bytes as other ids.
            if type(index.vocab_size) is not int or index.vocab_size < 1:
                raise ValueError(f"vocab_size {index.vocab_size!r} is not a positive integer")
            if index.dtype != token_dtype(index.vocab_size).name:
                raise ValueError(
                    f"dtype {index.dtype!r} is not {token_dtype(index.vocab_size).name}, "
                    f"what vocab_size {index.vocab_size} is written as"
                )
            for name in ("eos_id", "bos_id"):
                value = getattr(index, name)
                if value is not None and (type(value) is not int or value < 0):
                    raise ValueError(f"{name} {value!r} is not a token id")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{path} is corrupt ({error}); re-run tokenization") from error
        if totals != (index.n_tokens, index.n_docs):
            raise DataError(f"{path}: totals disagree with its shards; re-run tokenization")
        return index


class ShardWriter:
    """Appends documents' token ids to shards; :meth:`finish` writes the index.

    Use as a context manager: on an exception the open temp shard is deleted
    and no index is written, so the folder stays "unfinished" (or, with
    ``replacing``, keeps its previous, still valid output).

    ``replacing`` is the index of the finished output already in ``out_dir``:
    its shards and ``index.json`` stay untouched until :meth:`finish` commits
    the new index; then its shards (and only those) are deleted. Without it,
    the folder is taken to be unfinished and our leftovers in it are removed.
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
        made_from: dict[str, Any] | None = None,
        replacing: TokenIndex | None = None,
    ) -> None:
        if shard_tokens <= 0:
            raise ConfigError(f"shard_tokens must be positive, got {shard_tokens}")
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._replacing = replacing
        live = {s.filename for s in replacing.shards} if replacing is not None else set()
        for stale in self.dir.iterdir():  # our leftovers of an interrupted run
            if _OURS.match(stale.name) and stale.name not in live and not stale.is_dir():
                stale.unlink()
        if replacing is None:
            (self.dir / INDEX_NAME).unlink(missing_ok=True)
        self._prefix = f"g{shard_generation(replacing) + 1}-" if replacing is not None else ""
        self.dtype = token_dtype(vocab_size)
        self.index = TokenIndex(
            dtype=self.dtype.name,
            vocab_size=vocab_size,
            eos_id=eos_id,
            bos_id=bos_id if bos_id is not None and bos_id >= 0 else None,
            tokenizer=tokenizer or {"path": None, "sha256": None},
            made_from=made_from or {},
        )
        self.shard_tokens = shard_tokens
        self._file: Any = None
        self._count = self._docs = self.n_docs_written = 0
        self._hash = hashlib.sha256()

    def _name(self) -> str:
        return f"{self._prefix}shard_{len(self.index.shards):05d}.bin"

    def _tmp_path(self) -> Path:
        return self.dir / f".{self._name()}.tmp"

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
        name = self._name()
        os.replace(self._tmp_path(), self.dir / name)
        self.index.shards.append(ShardInfo(name, self._count, self._docs, self._hash.hexdigest()))
        self._count = self._docs = 0
        self._hash = hashlib.sha256()

    def finish(self) -> TokenIndex:
        if self._file is not None:
            self._close()
        atomic_write_text(self.dir / INDEX_NAME, json.dumps(self.index.to_json(), indent=2) + "\n")
        if self._replacing is not None:  # committed: the previous output's shards go
            kept = {s.filename for s in self.index.shards}
            for shard in self._replacing.shards:
                if shard.filename not in kept and _SHARD_NAME.match(shard.filename):
                    (self.dir / shard.filename).unlink(missing_ok=True)
        return self.index

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        if self._file is not None:
            self._file.close()
            self._tmp_path().unlink(missing_ok=True)
        if self._replacing is not None:  # the previous output stays; our new shards go
            for shard in self.index.shards:
                (self.dir / shard.filename).unlink(missing_ok=True)


class _OpenShardFiles:
    """One process-wide LRU of read-only shard descriptors, shared by every :class:`TokenShards`.

    The cap is read at each miss, so a limit lowered with ``setrlimit`` after
    import still holds. Keys are ``(reader id, shard number)``: a descriptor
    keeps reading the file that was size-checked when the folder was opened,
    even if a redo renames new shards into the folder meanwhile.
    """

    def __init__(self) -> None:
        self._fds: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._forgotten: list[int] = []  # readers collected while the lock was held

    def new_id(self) -> int:
        return next(self._ids)

    @staticmethod
    def capacity() -> int:
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):
            return MAX_OPEN_SHARD_FILES
        if soft == resource.RLIM_INFINITY:
            return MAX_OPEN_SHARD_FILES
        return max(2, min(MAX_OPEN_SHARD_FILES, soft // 4))

    def read_into(self, key: tuple[int, int], path: Path, buf: memoryview, offset: int) -> int:
        """Bytes read from ``path`` at ``offset`` into ``buf`` (fewer only at end of file)."""
        with self._lock:
            self._close_forgotten()
            fd = self._fds.pop(key, None)
            if fd is None:
                while len(self._fds) >= self.capacity():
                    os.close(self._fds.popitem(last=False)[1])
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._fds[key] = fd  # most recently used last
            done = 0
            while done < len(buf):
                n = _pread_into(fd, buf[done:], offset + done)
                if n == 0:
                    break
                done += n
            return done

    def forget(self, reader: int) -> None:
        """Close a reader's descriptors (when it is garbage collected).

        A finalizer runs wherever the garbage collector happens to fire, which
        can be inside :meth:`read_into` on this very thread, with the lock
        held: waiting for the lock there would deadlock (it did, in the test
        suite under load). So the reader is queued, and its descriptors are
        closed now if the lock is free, else by the next read.
        """
        self._forgotten.append(reader)  # atomic; no lock needed
        if self._lock.acquire(blocking=False):
            try:
                self._close_forgotten()
            finally:
                self._lock.release()

    def _close_forgotten(self) -> None:
        """Close the queued readers' descriptors; the caller holds the lock."""
        while self._forgotten:
            reader = self._forgotten.pop()
            for key in [k for k in self._fds if k[0] == reader]:
                os.close(self._fds.pop(key))

    def open_count(self) -> int:
        return len(self._fds)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a fork mid-read must not leave the child's lock held


def _pread_into(fd: int, buf: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buf], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # platforms without preadv; the lock serialises us
    data = os.read(fd, len(buf))
    buf[: len(data)] = data
    return len(data)


MAX_OPEN_SHARD_FILES = 64
_OPEN_FILES = _OpenShardFiles()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_OPEN_FILES._after_fork)


class TokenShards:
    """A finished token folder as one read-only token stream; no tokens are copied into RAM.

    Opening a folder only checks sizes; shard files are opened on first read
    and kept in a bounded process-wide cache of descriptors (see the module
    docstring), so thousands of shards cost no more descriptors than a few.
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
        self._paths = [self.directory / s.filename for s in self._shards]
        self._id = _OPEN_FILES.new_id()
        weakref.finalize(self, _OPEN_FILES.forget, self._id)

    vocab_size = property(lambda self: self.index.vocab_size)
    eos_id = property(lambda self: self.index.eos_id)
    bos_id = property(lambda self: self.index.bos_id)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream, across shard boundaries."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"tokens [{start}, {start + length}) outside [0, {len(self)})")
        out = np.empty(length, dtype=self.dtype)
        raw = memoryview(out).cast("B")
        size = self.dtype.itemsize
        k, filled = int(np.searchsorted(self._ends, start, side="right")), 0
        while filled < length:
            begin = start + filled - (int(self._ends[k - 1]) if k else 0)
            take = min(length - filled, self._shards[k].n_tokens - begin)
            path = self._paths[k]
            piece = raw[filled * size : (filled + take) * size]
            if _OPEN_FILES.read_into((self._id, k), path, piece, begin * size) != len(piece):
                raise DataError(
                    f"{path} is shorter than its index says (truncated while in use?); "
                    f"re-run tokenization into {self.directory}"
                )
            filled += take
            k += 1
        if sys.byteorder != "little":
            out.byteswap(inplace=True)
        return out

    def verify(self) -> None:
        """Recompute every shard's sha256 (slow: reads everything)."""
        for shard in self.index.shards:
            if file_sha256(self.directory / shard.filename) != shard.sha256:
                raise DataError(
                    f"{self.directory / shard.filename}: sha256 mismatch; "
                    f"re-run tokenization into {self.directory}"
                )
