"""Writing token folders: :class:`ShardWriter` and the clean-up of a folder's own output.

The format and the design rules (atomic shards, ``index.json`` as the commit
point, generations when a finished folder is replaced, the journal that makes a
shard ours) are in :mod:`llamaforge.data.shards`, which readers use alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from llamaforge.data.shards import (
    _SHARD_NAME,
    INDEX_NAME,
    ShardInfo,
    TokenIndex,
    atomic_write_text,
    shard_generation,
    token_dtype,
)
from llamaforge.errors import ConfigError, DataError

# Our hidden temporaries (``.shard_00000.bin.XXXXXXXX.tmp``, ``.index.json.XXXXXXXX.tmp``,
# and the fixed names older versions used): a writer deletes these by name.
_OUR_TEMP = re.compile(
    r"^\.(?:(?:g\d{1,9}-)?shard_\d{5}\.bin|index\.json|\.?shards-written\.json)"
    r"(?:\.[A-Za-z0-9_]{8})?\.tmp$"
)
# Shards renamed into place but not yet in an index.json: so an interrupted run's shards
# are known to be ours, and a user's file that merely looks like a shard never is.
JOURNAL_NAME = ".shards-written.json"


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
