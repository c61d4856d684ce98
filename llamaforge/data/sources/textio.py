"""Reading raw dumps defensively: compression by suffix, bounded lines, UTF-8 checks.

Real dumps contain truncated archives, binary files, invalid UTF-8 and
single "lines" of hundreds of megabytes. A source must count such input and
go on, never crash or hold a 100 MB line in memory, so these helpers report
problems as values (or :class:`BadInput`) that the source records in its
:class:`~llamaforge.data.sources.base.FilterReport`.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from llamaforge.data.sources.base import FilterReport

# Errors a truncated or corrupt compressed stream raises while being read (gzip raises
# zlib.error, which is no OSError, for a damaged deflate block).
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    lzma.LZMAError,
    ValueError,
    zlib.error,
)
try:  # zstandard reports corruption with its own error class
    import zstandard

    STREAM_ERRORS = (*STREAM_ERRORS, zstandard.ZstdError)
except ImportError:  # pragma: no cover - zstandard is a declared dependency of the data extra
    zstandard = None  # type: ignore[assignment]

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
# Control bytes that do not occur in text (tab, newline, form feed and CR do).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


class BadInput(Exception):
    """Input that cannot be read as its format; ``reason`` is the report key."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.where = where


def open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing by suffix (.gz .bz2 .xz .zst).

    Every format raises ``EOFError`` at a cut-short end (``zstandard`` alone would not:
    :mod:`llamaforge.data.sources.zstdio`), so a truncated dump is counted, not taken whole.
    """
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".zst"):
        if zstandard is None:
            raise BadInput("zstd_unavailable", str(path))
        from llamaforge.data.sources.zstdio import open_zstd

        return open_zstd(path)  # a cut-short file raises EOFError, as gzip does
    return open(path, "rb")


def _stream_format(stream: IO[bytes]) -> str | None:
    """The compression a stream undoes (``gzip``, ``bz2``, ``xz``, ``zstd``); None for plain."""
    if isinstance(stream, _Prefixed):
        stream = stream.stream
    if isinstance(stream, gzip.GzipFile):
        return "gzip"
    if isinstance(stream, bz2.BZ2File):
        return "bz2"
    if isinstance(stream, lzma.LZMAFile):
        return "xz"
    if "zstd" in type(stream).__name__.lower():
        return "zstd"
    return None


_LONE_GZIP_MAGIC = "Not a gzipped file (%r)" % b"\x1f"  # noqa: UP031 - gzip's own wording


def is_truncation(error: BaseException) -> bool:
    """Whether ``error`` means the compressed data stops early (rather than being damaged).

    ``EOFError`` is a stream cut inside a member. A file cut one byte into the
    next gzip member's header leaves only the first magic byte, and Python's
    gzip reports that as ``BadGzipFile("Not a gzipped file (b'\\x1f')")``: a
    cut too, not corruption (the next member's first byte is all that arrived).
    """
    if isinstance(error, EOFError):
        return True
    return isinstance(error, gzip.BadGzipFile) and str(error) == _LONE_GZIP_MAGIC


def stream_error_reason(stream: IO[bytes], error: BaseException, decoded_any: bool) -> str:
    """The report key for an error raised while reading ``stream``: what really went wrong.

    ``truncated``: the compressed data ends before its end marker (``EOFError``);
    ``not_<format>``: the very first read fails, so the file is not that format at all
    (a ``.gz`` holding plain text, random bytes named ``.bz2``); ``corrupt``: it was that
    format but breaks later (bad CRC, garbage after the last gzip member);
    ``unreadable``: an I/O error on an uncompressed file.
    """
    if is_truncation(error):
        return "truncated"
    if isinstance(stream, _Prefixed) and stream.head:
        decoded_any = True
    fmt = _stream_format(stream)
    if fmt is None:
        return "unreadable"
    return "corrupt" if decoded_any else f"not_{fmt}"


def strip_compression_suffix(name: str) -> str:
    """``"x.jsonl.gz"`` -> ``"x.jsonl"``: lets a source match on the inner format."""
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def iter_lines(
    stream: IO[bytes], where: str, max_line_bytes: int = 8 << 20, chunk_bytes: int = 1 << 20
) -> Iterator[bytes | BadInput]:
    """Lines of ``stream`` (without the newline), reading at most ``chunk_bytes`` at a time.

    A line longer than ``max_line_bytes`` is skipped without being held in
    memory and yields ``BadInput("line_too_long", "where:line")`` instead; a
    stream that breaks off (truncated archive) yields ``BadInput("truncated")``
    and ends -- or ``not_gzip`` (etc.) / ``corrupt`` / ``unreadable`` when that is what the
    fault is (:func:`stream_error_reason`). The caller decides what to count; lines before
    the fault are kept.
    """
    pending = bytearray()
    skipping = False
    lineno = 1
    decoded_any = False
    # read1 returns what one underlying read decompressed, so a stream cut off
    # later still delivers every complete line before the cut; read(n) would
    # raise and throw away up to n bytes already decompressed.
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            chunk = read(chunk_bytes)
        except STREAM_ERRORS as error:
            reason = stream_error_reason(stream, error, decoded_any)
            yield BadInput(f"{reason} ({type(error).__name__})", f"{where}:{lineno}")
            return
        if not chunk:
            break
        decoded_any = True
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > max_line_bytes:
                        pending.clear()
                        skipping = True
                break
            if skipping:
                yield BadInput("line_too_long", f"{where}:{lineno}")
                skipping = False
            else:
                pending += chunk[start:end]
                if len(pending) > max_line_bytes:
                    yield BadInput("line_too_long", f"{where}:{lineno}")
                else:
                    yield bytes(pending)
                pending.clear()
            lineno += 1
            start = end + 1
    if skipping:
        yield BadInput("line_too_long", f"{where}:{lineno}")
    elif pending:
        yield bytes(pending)


def decode_utf8(data: bytes) -> str | None:
    """Strict UTF-8 decoding; None for invalid bytes (the caller counts them)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def looks_binary(sample: bytes) -> bool:
    """True for data that is not text: NUL bytes, or mostly control bytes (git's heuristic plus)."""
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    # bytes.translate deletes them in C; a per-byte Python loop was a hot spot on big files.
    control = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return control / len(sample) > 0.3


def iter_json_records(
    path: Path, report: FilterReport, max_line_bytes: int = 8 << 20
) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each JSON-object line of a (compressed) JSON-lines file.

    Everything unreadable is counted in ``report`` and skipped: a file that
    cannot be opened, a file that is not its compression format (``not_gzip``
    ...), a truncated stream (records before the cut are kept), a binary file
    (its first 64 KiB look like :func:`looks_binary`: counted once as
    ``binary`` and not read further, rather than as thousands of ``utf8``
    lines), over-long or non-UTF-8 lines (a line that itself looks binary
    counts as ``binary``), invalid JSON (``json``: also an integer with more
    digits than Python's int-string limit, 4300 by default, which ``json``
    refuses with a plain ``ValueError``, and nesting too deep for the parser's
    recursion), a line that is not an object, a string holding a lone
    surrogate escape (``utf8``), and a file with no lines at all.
    """
    where = str(path)
    try:
        stream = open_binary(path)
    except BadInput as bad:
        report.bad(bad.reason, bad.where)
        return
    except OSError as error:
        report.bad("unreadable", f"{where} ({type(error).__name__})")
        return
    seen_any = False
    with stream:
        sniffed = _Prefixed(stream)
        if looks_binary(sniffed.head):
            report.bad("binary", f"{where}: binary data, not text (NUL or control bytes)")
            return
        lines = iter_lines(sniffed, where, max_line_bytes)
        for lineno, item in enumerate(lines, start=1):
            seen_any = True
            if isinstance(item, BadInput):
                report.bad(item.reason.split(" ")[0], item.where)
                continue
            if not item.strip():
                continue
            line = decode_utf8(item)
            if line is None:
                reason = "binary" if looks_binary(item[:8192]) else "utf8"
                report.bad(reason, f"{where}:{lineno}")
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
                report.bad("json", f"{where}:{lineno}")
                continue
            if not isinstance(record, dict):
                report.bad("schema", f"{where}:{lineno}")
                continue
            if _SURROGATE_ESCAPE.search(line) and not _encodable(record):
                report.bad("utf8", f"{where}:{lineno}: a lone surrogate escape (\\udXXX)")
                continue
            yield lineno, record
    if not seen_any:
        report.bad("empty", where)


_HEAD_BYTES = 64 << 10
# JSON can spell a lone UTF-16 surrogate ("\ud800"), which no UTF-8 text holds: every writer
# downstream (zstd JSONL, the tokenizer) would raise on it. Only lines with such an escape
# are checked in full.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(record: dict) -> bool:
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Prefixed:
    """A stream whose first 64 KiB (decompressed) are read ahead, so a file can be sniffed.

    :func:`iter_lines` reads it through ``read1``: first ``head``, then the rest; a fault
    met while reading ahead is raised again once ``head`` is used up, so lines before it
    still come out first and the fault is reported where it is.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self._read = getattr(stream, "read1", stream.read)
        self.error: BaseException | None = None
        head = bytearray()
        while len(head) < _HEAD_BYTES:
            try:
                chunk = self._read(_HEAD_BYTES - len(head))
            except STREAM_ERRORS as error:
                self.error = error
                break
            if not chunk:
                break
            head += chunk
        self.head = bytes(head)
        self._pending = self.head

    def read1(self, size: int) -> bytes:
        if self._pending:
            chunk, self._pending = self._pending[:size], self._pending[size:]
            return chunk
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self._read(size)

    read = read1
