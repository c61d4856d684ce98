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
  finished folder (``ShardWriter(replacing=old_index)``, in :mod:`~llamaforge.data.shard_writer`) writes the new shards
  under new names (``g<N>-shard_00000.bin``, generation N) next to the old
  ones, swaps ``index.json``, and only then deletes the old shards, so an
  interrupted redo leaves the previous output readable. Only shards that
  ``index.json`` or the writer's journal (``.shards-written.json``) lists, and
  our hidden temps, are ever deleted; a user's file merely *named* like a
  shard makes the writer refuse the folder, and anything else is left alone.
  Temps are created exclusively (never through a planted symlink).
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

from llamaforge.errors import DataError
from llamaforge.umask import atomic_write_text  # noqa: F401 (the writers import it from here)

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_SHARD_NAME = re.compile(r"^(?:g(\d{1,9})-)?shard_\d{5}\.bin$")


def shard_generation(index: TokenIndex) -> int:
    """The generation of a finished folder's shards (0 for ``shard_NNNNN.bin``)."""
    found = [_SHARD_NAME.match(s.filename) for s in index.shards]
    return max((int(m.group(1) or 0) for m in found if m), default=0)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id: halves disk and page cache for 32k vocabs."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


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
        from llamaforge.data.index_fields import check_index_fields  # it imports this module

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            version = data.get("format_version")
            if type(version) is not int or version != FORMAT_VERSION:
                raise DataError(
                    f"{path}: format_version {version!r} is not "
                    f"{FORMAT_VERSION}; re-run tokenization with this llamaforge"
                )
            check_index_fields(data)  # every field's type and range: see index_fields
            del data["n_tokens"], data["n_docs"]  # totals: re-checked there, derived here
            data["shards"] = [ShardInfo(**s) for s in data["shards"]]
            index = cls(**data)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{path} is corrupt ({error}); re-run tokenization") from error
        return index


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
                flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
                fd = os.open(path, flags)  # never through a link: see TokenShards
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

    A shard that is a symbolic link is refused: the writer never makes one,
    and the index's names are checked to stay inside the folder, which a link
    to a file elsewhere (of the right size, any content) would get around.

    :meth:`read` checks that every id it returns is below the index's
    ``vocab_size``: bytes changed on disk (the sizes still match) would
    otherwise reach the embedding as an index error, a device-side assert on a
    GPU. The one ``max`` over the tokens read costs about 1.5 us per read
    (measured on a 2049-token window): some 5% of the loader's time per
    batch, nothing next to a training step. Reads that check shards against
    a model's smaller vocabulary still need ``vocab_size <= model``, which
    ``train`` and ``eval-loss`` check when they open the folder.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index = TokenIndex.load(self.directory)
        self.dtype = np.dtype(self.index.dtype)
        for shard in self.index.shards:
            path = self.directory / shard.filename
            expected = shard.n_tokens * self.dtype.itemsize
            if path.is_symlink():  # see the class docstring
                raise DataError(
                    f"{path} is a symbolic link; a token folder holds its shards as plain "
                    f"files: copy the target in its place or re-run tokenization"
                )
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
        # A uint16 shard of a 65536-token vocabulary cannot hold a bad id: no check needed.
        self._ids_may_overflow = self.vocab_size <= np.iinfo(self.dtype).max
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
            try:
                got = _OPEN_FILES.read_into((self._id, k), path, piece, begin * size)
            except OSError as error:  # deleted or swapped for a link since the folder was opened
                raise DataError(
                    f"{path} cannot be read ({error.strerror}); "
                    f"re-run tokenization into {self.directory}"
                ) from error
            if got != len(piece):
                raise DataError(
                    f"{path} is shorter than its index says (truncated while in use?); "
                    f"re-run tokenization into {self.directory}"
                )
            filled += take
            k += 1
        if sys.byteorder != "little":
            out.byteswap(inplace=True)
        if length and self._ids_may_overflow and int(out.max()) >= self.vocab_size:
            self._bad_id(out, start)
        return out

    def _bad_id(self, tokens: np.ndarray, start: int) -> None:
        """Raise naming the shard file and position of the first id >= ``vocab_size``."""
        at = start + int(np.argmax(tokens >= self.vocab_size))
        k = int(np.searchsorted(self._ends, at, side="right"))
        offset = at - (int(self._ends[k - 1]) if k else 0)
        raise DataError(
            f"{self._paths[k]} holds token id {int(tokens[at - start])} at token {offset} "
            f"(byte {offset * self.dtype.itemsize}), outside vocab_size {self.vocab_size} of "
            f"{self.directory / INDEX_NAME}; the shard is damaged: re-run tokenization into "
            f"{self.directory}"
        )

    def verify(self) -> None:
        """Recompute every shard's sha256 (slow: reads everything)."""
        for shard in self.index.shards:
            if file_sha256(self.directory / shard.filename) != shard.sha256:
                raise DataError(
                    f"{self.directory / shard.filename}: sha256 mismatch; "
                    f"re-run tokenization into {self.directory}"
                )
