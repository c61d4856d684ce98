"""The build's own ``.jsonl.zst`` files: written through exclusive temps, read strictly.

Every file is written to a new temp beside its destination
(:func:`llamaforge.data.outputs.open_temp_binary`: never through a planted
symlink), fsynced and renamed. Reading (:func:`read_jsonl_zst`) goes through
:func:`~llamaforge.data.sources.zstdio.open_zstd`, so a file cut short raises
instead of reading as fewer documents; since the build wrote these files,
any damage is a :class:`DataError` that says to run the build again.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from llamaforge.data.outputs import open_temp_binary
from llamaforge.data.sources.base import Document
from llamaforge.data.sources.zstdio import open_zstd
from llamaforge.errors import DataError


def open_zst_writer(dest: Path) -> tuple[io.TextIOWrapper, Path]:
    """A text writer into a new, exclusively created temp file beside ``dest``, and its path."""
    raw, tmp = open_temp_binary(dest)
    stream = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=True)
    return io.TextIOWrapper(stream, encoding="utf-8", newline="\n"), tmp


def close_synced(writer: io.TextIOWrapper, path: Path) -> None:
    writer.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def read_jsonl_zst(path: Path, report: Path | None = None) -> Iterator[Document]:
    """The documents of a ``.jsonl.zst`` the build wrote; damage is a :class:`DataError`.

    ``report`` is the report that vouches for ``path``: it is removed before the
    error is raised, so a re-run redoes the damaged file instead of trusting it.
    """
    errors = (EOFError, OSError, ValueError, KeyError, TypeError, zlib.error, zstandard.ZstdError)
    try:
        with io.TextIOWrapper(open_zstd(path), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield Document.from_json(json.loads(line))
    except errors as error:
        if report is not None:
            report.unlink(missing_ok=True)
        raise DataError(
            f"{path} is damaged ({type(error).__name__}: {error}); the build wrote it, so run "
            "the build again: it redoes this file"
        ) from error


class ShardSink:
    """Writes documents into ``part-NNNNN.jsonl.zst`` files cut by documents or bytes.

    Each part is written to a new temp and renamed when it is closed, like every file here.
    """

    def __init__(self, folder: Path, shard_docs: int, shard_bytes: int) -> None:
        self.folder, self.shard_docs, self.shard_bytes = folder, shard_docs, shard_bytes
        self.shards: list[dict[str, Any]] = []
        self._writer: io.TextIOWrapper | None = None
        self._tmp: Path | None = None  # the open part's temp file
        self._docs = self._bytes = 0

    def add(self, doc: Document) -> int:
        if self._writer is None:
            name = f"part-{len(self.shards):05d}.jsonl.zst"
            self._writer, self._tmp = open_zst_writer(self.folder / name)
            self.shards.append({"file": name, "docs": 0, "bytes": 0})
        size = len(doc.text.encode("utf-8", "replace"))
        self._writer.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
        self._docs, self._bytes = self._docs + 1, self._bytes + size
        if (self.shard_docs and self._docs >= self.shard_docs) or (
            self.shard_bytes and self._bytes >= self.shard_bytes
        ):
            self.close()
        return size

    def close(self) -> None:
        if self._writer is not None:
            close_synced(self._writer, self._tmp)
            os.replace(self._tmp, self.folder / self.shards[-1]["file"])
            self.shards[-1].update(docs=self._docs, bytes=self._bytes)
            self._writer, self._docs, self._bytes = None, 0, 0
