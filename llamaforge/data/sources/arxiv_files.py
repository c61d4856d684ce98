"""Bounded reading of one arXiv paper's source: every decompression layer and member.

A paper's source is a ``.gz`` of a ``.tex`` or of a tar, sometimes compressed
once more; a few KB of crafted input can expand to gigabytes at any layer (a
gzip of a ``.tar.gz``, a sparse tar member). Every read here stops at
``limit + 1`` bytes (``ArxivConfig.max_source_bytes``), so an over-large
source is counted as ``too_large`` in bounded memory, and tars are opened
uncompressed only (``r:``): ``tarfile``'s ``r:*`` would decompress a layer
again without a bound.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import posixpath
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from llamaforge.data.sources.latex import strip_comments
from llamaforge.data.sources.textio import STREAM_ERRORS, BadInput, decode_utf8, looks_binary

TEX_MEMBER_SUFFIXES = (".tex", ".ltx")
# "BZh", the block size digit, then the magic of the first block or of the stream's end.
_BZIP2_MAGIC = re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)")


def compression(data: bytes) -> Callable[[IO[bytes]], IO[bytes]] | None:
    """A reader for gzip, bzip2 or xz ``data`` (what ``tarfile``'s ``r:*`` undid); else None."""
    if data[:2] == b"\x1f\x8b":
        return lambda raw: gzip.GzipFile(fileobj=raw)
    if _BZIP2_MAGIC.match(data[:10]):
        return bz2.BZ2File
    return lzma.LZMAFile if data[:6] == b"\xfd7zXZ\x00" else None


def decompress(packed: bytes, where: str, limit: int) -> bytes:
    """``packed`` decompressed if gzip, bzip2 or xz, else as is; reads limit + 1 bytes at most."""
    opener = compression(packed)
    if opener is None:
        return packed
    return _read_bounded(lambda: opener(io.BytesIO(packed)), where, limit)


def read_source(path: Path, where: str, limit: int) -> bytes:
    """One paper file's bytes, gunzipped if gzip, at most ``limit``."""

    def open_source() -> IO[bytes]:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gzipped else open(path, "rb")

    return _read_bounded(open_source, where, limit)


def _read_bounded(open_stream: Callable[[], IO[bytes]], where: str, limit: int) -> bytes:
    try:
        with open_stream() as stream:
            data = stream.read(limit + 1)
    except (*STREAM_ERRORS, gzip.BadGzipFile) as error:
        raise BadInput("truncated", f"{where}: {type(error).__name__}") from error
    if len(data) > limit:
        raise BadInput("too_large", f"{where}: over {limit} bytes decompressed")
    return data


def tar_members(data: bytes, where: str, limit: int) -> dict[str, str | None]:
    """Comment-free text of each ``.tex`` member of an uncompressed tar (None: not UTF-8).

    The members together are read within ``limit`` bytes (a sparse member's
    header can claim any size).
    """
    members: dict[str, str | None] = {}
    budget = limit
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                name = posixpath.normpath(member.name).removeprefix("./")
                if not member.isfile() or not name.lower().endswith(TEX_MEMBER_SUFFIXES):
                    continue
                content = archive.extractfile(member).read(budget + 1)  # type: ignore[union-attr]
                budget -= len(content)
                if budget < 0:
                    raise BadInput("too_large", f"{where}: .tex members over {limit} bytes")
                text = None if looks_binary(content[:8192]) else decode_utf8(content)
                members[name] = None if text is None else strip_comments(text)
    except (tarfile.TarError, *STREAM_ERRORS) as error:
        raise BadInput("truncated", f"{where}: {type(error).__name__}") from error
    return members
