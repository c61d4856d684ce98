"""Slices of a Wikipedia multistream dump, read through its index without the rest of the file.

``<lang>wiki-<date>-pages-articles-multistream.xml.bz2`` is many bz2 streams concatenated:
the first holds ``<mediawiki>`` and ``<siteinfo>``, each later one about 100 ``<page>``
elements, the last ``</mediawiki>``. The companion
``...-multistream-index.txt.bz2`` has one line per page, ``offset:page_id:title``, where
``offset`` is the byte at which the page's stream starts. So a worker can seek to a stream,
decompress just it and parse its pages: :func:`stream_slices` cuts the dump into runs of
``streams_per_slice`` streams, and :class:`MultistreamSlice` names one run as an input path
(``<dump>@<start>-<end>``) that the build hands to a worker like any file.

A slice is parsed as the header stream's opening (for the export namespace) + its streams +
``</mediawiki>``, so every page is read exactly once across the slices of a dump.
"""

from __future__ import annotations

import bz2
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path, PosixPath

_SLICE = re.compile(r"^(?P<dump>.+)@(?P<start>\d+)-(?P<end>\d+)$")
_SITEINFO_END = re.compile(rb"</siteinfo>\s*")
_FOOTER = re.compile(rb"</mediawiki>\s*$")
INDEX_SUFFIX = "-index.txt.bz2"
logger = logging.getLogger(__name__)


def index_path(dump: Path) -> Path:
    """``x-multistream.xml.bz2`` -> ``x-multistream-index.txt.bz2`` (beside it)."""
    return dump.with_name(dump.name.removesuffix(".xml.bz2") + INDEX_SUFFIX)


def stream_offsets(index: Path) -> list[int]:
    """Sorted distinct stream offsets of an index; a line that does not parse is skipped.

    Only ASCII digits count (``"²".isdigit()`` is true, but ``int`` rejects it). An index
    that breaks off (truncated or corrupt bz2) gives the offsets read before the fault, with
    a warning: :func:`stream_slices` still covers the whole dump, in fewer, larger slices.
    """
    offsets: set[int] = set()
    try:
        with bz2.open(index, "rt", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                head = line.split(":", 1)[0]
                if head.isascii() and head.isdigit():
                    offsets.add(int(head))
    except (EOFError, OSError, ValueError) as error:
        logger.warning(
            "%s: index unreadable after %d offsets (%s); slicing the dump with those",
            index,
            len(offsets),
            type(error).__name__,
        )
    return sorted(offsets)


def first_page_stream(dump: Path) -> int:
    """Byte offset where the header stream ends, i.e. the first page stream starts."""
    decompressor, read = bz2.BZ2Decompressor(), 0
    for chunk in _read_range(dump, 0, dump.stat().st_size, chunk=1 << 16):
        read += len(chunk)
        decompressor.decompress(chunk)
        if decompressor.eof:
            return read - len(decompressor.unused_data)
    raise EOFError("the header stream of the dump is cut")


class MultistreamSlice(PosixPath):
    """``<dump>@<start>-<end>``: bytes ``[start, end)`` of a multistream dump, as an input path.

    It does not exist on disk; :meth:`stat` answers for the dump with ``st_size`` the
    slice's compressed bytes, so the build's report counts the slice's input size.
    """

    def slice_range(self) -> tuple[Path, int, int] | None:
        match = _SLICE.match(self.name)
        if match is None:
            return None
        dump = Path(str(self.parent)) / match.group("dump")
        return dump, int(match.group("start")), int(match.group("end"))

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:  # type: ignore[override]
        parsed = self.slice_range()
        if parsed is None:
            return super().stat(follow_symlinks=follow_symlinks)
        dump, start, end = parsed
        real = list(os.stat(dump))
        real[6] = end - start  # st_size
        return os.stat_result(real)

    def is_file(self) -> bool:
        parsed = self.slice_range()
        return super().is_file() if parsed is None else parsed[0].is_file()


def stream_slices(dump: Path, streams_per_slice: int) -> list[MultistreamSlice]:
    """The dump cut into runs of ``streams_per_slice`` streams, via its index.

    Slices end where the next begins and the last ends at the dump's end, so missing index
    lines only make slices larger; every page stream after the header is in one slice.
    """
    offsets = stream_offsets(index_path(dump))
    size = dump.stat().st_size
    starts = [o for o in offsets if 0 < o < size]
    if not starts:  # an index with no usable line: one slice, so no page is lost
        try:
            starts = [first_page_stream(dump)]
        except (EOFError, OSError, ValueError):
            starts = [0]  # the slice fails when read and is counted there as bad input
    slices = []
    for i in range(0, len(starts), streams_per_slice):
        start = starts[i]
        end = starts[i + streams_per_slice] if i + streams_per_slice < len(starts) else size
        slices.append(MultistreamSlice(dump.parent / f"{dump.name}@{start}-{end}"))
    return slices


def _decompress(raw: Iterator[bytes]) -> Iterator[bytes]:
    """Decompressed bytes of consecutive bz2 streams; raises EOFError if the last is cut."""
    decompressor, fed = bz2.BZ2Decompressor(), False
    for chunk in raw:
        while chunk:
            fed = True
            yield decompressor.decompress(chunk)
            if not decompressor.eof:
                break
            chunk = decompressor.unused_data
            decompressor, fed = bz2.BZ2Decompressor(), False
    if fed and not decompressor.eof:
        raise EOFError("bz2 stream ends before its end-of-stream marker")


def _header(dump: Path) -> bytes:
    """The first stream's XML: ``<mediawiki ...>`` and ``<siteinfo>``."""
    decompressor, out = bz2.BZ2Decompressor(), []
    for chunk in _read_range(dump, 0, dump.stat().st_size, chunk=1 << 16):
        out.append(decompressor.decompress(chunk))
        if decompressor.eof:
            return b"".join(out)
    raise EOFError("the header stream of the dump is cut")


def _read_range(dump: Path, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    with open(dump, "rb") as raw:
        raw.seek(start)
        left = end - start
        while left > 0 and (data := raw.read(min(chunk, left))):
            left -= len(data)
            yield data


def slice_xml(dump: Path, start: int, end: int) -> Iterator[bytes]:
    """The XML of one slice: the header stream's opening, the slice's pages, the footer."""
    header = _header(dump)
    opening = _SITEINFO_END.search(header)
    yield header[: opening.end()] if opening else header
    tail = b""
    for data in _decompress(_read_range(dump, start, end)):
        data = tail + data
        tail, data = data[-64:], data[:-64]
        if data:
            yield data
    yield _FOOTER.sub(b"", tail) + b"</mediawiki>\n"
