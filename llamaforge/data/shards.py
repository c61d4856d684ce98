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

from llamaforge.errors import ConfigError, DataError

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_SHARD_NAME = re.compile(r"^(?:g(\d{1,9})-)?shard_\d{5}\.bin$")
# Our hidden temporaries (``.shard_00000.bin.XXXXXXXX.tmp``, ``.index.json.XXXXXXXX.tmp``,
# and the fixed names older versions used): a writer deletes these by name.
_OUR_TEMP = re.compile(
    r"^\.(?:(?:g\d{1,9}-)?shard_\d{5}\.bin|index\.json|\.?shards-written\.json)"
    r"(?:\.[A-Za-z0-9_]{8})?\.tmp$"
)
# Shards renamed into place but not yet in an index.json: so an interrupted run's shards
# are known to be ours, and a user's file that merely looks like a shard never is.
JOURNAL_NAME = ".shards-written.json"


def shard_generation(index: TokenIndex) -> int:
    """The generation of a finished folder's shards (0 for ``shard_NNNNN.bin``)."""
    found = [_SHARD_NAME.match(s.filename) for s in index.shards]
    return max((int(m.group(1) or 0) for m in found if m), default=0)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id: halves disk and page cache for 32k vocabs."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a new, exclusively created temp file and one rename (never a planted link)."""
    from llamaforge.data.outputs import atomic_write_text as write

    write(Path(path), text)


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


class ShardWriter:
    """Appends documents' token ids to shards; :meth:`finish` writes the index.

    Use as a context manager: on an exception the open temp shard is deleted
    and no index is written, so the folder stays "unfinished" (or, with
    ``replacing``, keeps its previous, still valid output).

    ``replacing`` is the index of the finished output already in ``out_dir``:
    its shards and ``index.json`` stay untouched until :meth:`finish` commits
    the new index; then its shards (and only those) are deleted. Without it,
    the folder is taken to be unfinished and our leftovers in it are removed.

    Which shard files are ours is recorded, not guessed from names: a
    ``shard_NNNNN.bin`` is deleted only when ``index.json`` or the journal
    (:data:`JOURNAL_NAME`, the shards renamed into place and not yet committed,
    or about to be deleted) lists it. A file named like a shard that neither
    lists is a user's: the writer refuses the folder (:class:`DataError`)
    before writing anything, rather than delete or overwrite it.
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
        self._remove_leftovers(replacing)
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
        self._tmp: Path | None = None
        self._committed = False
        self._count = self._docs = self.n_docs_written = 0
        self._hash = hashlib.sha256()

    def _remove_leftovers(self, replacing: TokenIndex | None) -> None:
        """Delete our temps and our uncommitted shards; refuse shard-named files not ours."""
        live = {s.filename for s in replacing.shards} if replacing is not None else set()
        owned = set(read_journal(self.dir))
        if replacing is None and (self.dir / INDEX_NAME).is_file():
            try:  # a finished folder being redone from scratch (its shards were damaged)
                owned |= {s.filename for s in TokenIndex.load(self.dir).shards}
                (self.dir / INDEX_NAME).unlink()
            except DataError:
                pass  # not an index we can read: left for finish() to replace
        entries = sorted(self.dir.iterdir())
        foreign = [e for e in entries if _SHARD_NAME.match(e.name) and e.name not in live | owned]
        if foreign:
            raise DataError(
                f"{foreign[0]} is named like a token shard, but neither {INDEX_NAME} nor "
                f"{JOURNAL_NAME} in {self.dir} lists it, so llamaforge did not write it; "
                "move it away or choose another output folder"
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                continue
            if _OUR_TEMP.match(entry.name) or (entry.name in owned and entry.name not in live):
                entry.unlink()

    def _name(self) -> str:
        return f"{self._prefix}shard_{len(self.index.shards):05d}.bin"

    def _record(self, names: list[str]) -> None:
        atomic_write_text(self.dir / JOURNAL_NAME, json.dumps(names) + "\n")

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
                from llamaforge.data.outputs import open_temp_binary

                self._file, self._tmp = open_temp_binary(self.dir / self._name())
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
        self._record([*(s.filename for s in self.index.shards), name])  # before it appears
        os.replace(self._tmp, self.dir / name)
        self._tmp = None
        self.index.shards.append(ShardInfo(name, self._count, self._docs, self._hash.hexdigest()))
        self._count = self._docs = 0
        self._hash = hashlib.sha256()

    def finish(self) -> TokenIndex:
        if self._file is not None:
            self._close()
        kept = {s.filename for s in self.index.shards}
        old = [s.filename for s in self._replacing.shards] if self._replacing else []
        doomed = [name for name in old if name not in kept and _SHARD_NAME.match(name)]
        if doomed:  # a kill after the commit below still leaves them known as ours
            self._record([*kept, *doomed])
        atomic_write_text(self.dir / INDEX_NAME, json.dumps(self.index.to_json(), indent=2) + "\n")
        self._committed = True
        for name in doomed:  # committed: the previous output's shards go
            (self.dir / name).unlink(missing_ok=True)
        (self.dir / JOURNAL_NAME).unlink(missing_ok=True)
        return self.index

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        if self._replacing is not None and not self._committed:
            for shard in self.index.shards:  # the previous output stays; our new shards go
                (self.dir / shard.filename).unlink(missing_ok=True)
            (self.dir / JOURNAL_NAME).unlink(missing_ok=True)  # it listed only those


def read_journal(folder: Path) -> list[str]:
    """The shard names :data:`JOURNAL_NAME` in ``folder`` lists as ours ([] if none/unreadable)."""
    path = folder / JOURNAL_NAME
    if path.is_symlink() or not path.is_file():
        return []
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and _SHARD_NAME.match(n)]


def remove_token_output(folder: Path) -> None:
    """Delete a token folder's output (listed shards, index, journal, temps); nothing else."""
    if not folder.is_dir():
        return
    owned = set(read_journal(folder))
    try:
        owned |= {s.filename for s in TokenIndex.load(folder).shards}
    except DataError:
        pass
    else:
        (folder / INDEX_NAME).unlink()
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            continue
        if entry.name in owned or _OUR_TEMP.match(entry.name):
            entry.unlink()
    (folder / JOURNAL_NAME).unlink(missing_ok=True)


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
