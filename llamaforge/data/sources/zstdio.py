"""Reading ``.zst`` files so that a file cut short is an error, as it is for gzip.

``zstandard``'s stream reader returns end-of-file where the compressed data
stops, even in the middle of a frame, so a download cut in half reads as a
shorter (or empty) file and nothing says that documents were lost. gzip and
bz2 raise ``EOFError`` there. :func:`open_zstd` does the same: it passes the
compressed bytes through a small frame walker (:class:`FrameTracker`, which
reads only frame and block headers and skips block contents, so it costs
almost nothing) and raises ``EOFError`` at the end of the file when the last
frame is incomplete.

Decisions: a file holding no bytes at all is complete (zero frames; the
caller sees no lines and counts it as empty). Bytes that are not a zstd or
skippable frame stop the walker without an error of its own: the
decompressor reports them (``ZstdError``), or, if it accepts them (a legacy
format), the walker simply cannot vouch for the end.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import zstandard

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
_DICT_ID_BYTES = (0, 1, 2, 4)
_CONTENT_SIZE_BYTES = (0, 2, 4, 8)


class FrameTracker:
    """Follows zstd frame structure (RFC 8878) over a stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._state, self._buf, self._skip = "magic", bytearray(), 0
        self._checksum = False
        self.lost = False  # met bytes that are no frame: cannot tell complete from cut

    @property
    def complete(self) -> bool:
        """Whether the bytes fed so far end exactly at a frame boundary."""
        return self.lost or (self._state == "magic" and not self._buf and not self._skip)

    def _need(self) -> int:
        return {"magic": 4, "skippable": 4, "descriptor": 1, "block": 3}[self._state]

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while not self.lost:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip, pos = self._skip - take, pos + take
                if self._skip:
                    return
            missing = self._need() - len(self._buf)
            take = min(missing, end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if take < missing:
                return
            self._step(int.from_bytes(self._buf, "little"))
            self._buf.clear()

    def _step(self, value: int) -> None:
        if self._state == "magic":
            if value == _ZSTD_MAGIC:
                self._state = "descriptor"
            elif value & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                self._state = "skippable"
            else:
                self.lost = True
        elif self._state == "skippable":
            self._state, self._skip = "magic", value
        elif self._state == "descriptor":
            single_segment = (value >> 5) & 1
            size_bytes = _CONTENT_SIZE_BYTES[value >> 6] or single_segment
            self._checksum = bool((value >> 2) & 1)
            self._skip = (not single_segment) + _DICT_ID_BYTES[value & 3] + size_bytes
            self._state = "block"
        else:  # a block header: last-block bit, type, size
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:  # reserved: corrupt, the decompressor says so
                self.lost = True
                return
            self._skip = (1 if kind == 1 else size) + (4 if last and self._checksum else 0)
            if last:
                self._state = "magic"


class _Tee:
    """The compressed file, showing every byte read to a :class:`FrameTracker`."""

    def __init__(self, raw: IO[bytes], tracker: FrameTracker) -> None:
        self.raw, self.tracker = raw, tracker

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.tracker.feed(data)
        return data


class _CheckedZstdRaw(io.RawIOBase):
    def __init__(self, raw: IO[bytes], where: str) -> None:
        self._raw, self._where, self._tracker = raw, where, FrameTracker()
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _Tee(raw, self._tracker), read_across_frames=True, closefd=False
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        n = self._reader.readinto(buffer)
        if n == 0 and not self._tracker.complete:
            raise EOFError(f"{self._where}: zstd data ends inside a frame (the file is cut short)")
        return n

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
            self._raw.close()
        super().close()


class ZstdCheckedReader(io.BufferedReader):
    """A buffered ``.zst`` reader (``read``, ``read1``, lines) that raises at a cut-short end."""


def open_zstd(path: str | Path) -> ZstdCheckedReader:
    """Open a ``.zst`` file for reading bytes; ``EOFError`` where its last frame is cut."""
    raw = open(path, "rb")  # noqa: SIM115 (closed by the reader)
    try:
        return ZstdCheckedReader(_CheckedZstdRaw(raw, str(path)), 1 << 17)
    except BaseException:
        raw.close()
        raise
