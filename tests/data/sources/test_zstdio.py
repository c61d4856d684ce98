"""A cut-short .zst is an error (EOFError), as gzip's is, not a shorter file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import zstandard

from llamaforge.data.documents import read_documents
from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.textio import iter_json_records
from llamaforge.data.sources.zstdio import FrameTracker, open_zstd
from llamaforge.errors import DataError

LINES = b"".join(json.dumps({"text": f"document {i} " * 8}).encode() + b"\n" for i in range(3000))


def read_all(path: Path) -> bytes:
    with open_zstd(path) as f:
        return f.read()


def streamed(data: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor(level=3)
    return compressor.compress(data[:1000]) + compressor.compress(data[1000:])


def with_checksum(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(data)


def skippable_then(data: bytes) -> bytes:  # a skippable frame (magic 0x184D2A50, 3 bytes)
    return b"\x50\x2a\x4d\x18\x03\x00\x00\x00abc" + zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("make", [streamed, with_checksum, skippable_then])
def test_whole_files_read_whole_and_every_cut_raises(tmp_path, make):
    whole = make(LINES)
    path = tmp_path / "x.jsonl.zst"
    path.write_bytes(whole)
    assert read_all(path) == LINES
    for cut in (1, 4, 5, 12, len(whole) // 2, len(whole) - 4, len(whole) - 1):
        path.write_bytes(whole[:cut])
        with pytest.raises(EOFError, match="ends inside a frame"):
            read_all(path)


def test_an_empty_file_is_complete_and_a_stream_writer_file_is_checked(tmp_path):
    empty = tmp_path / "e.zst"
    empty.write_bytes(b"")
    assert read_all(empty) == b""
    path = tmp_path / "w.zst"
    with open(path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as writer:
        writer.write(LINES)  # no content size in the header: only the last-block bit tells
    assert read_all(path) == LINES
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(EOFError):
        read_all(path)


def test_tracker_fed_byte_by_byte_agrees():
    whole, tracker = with_checksum(LINES[:5000]), FrameTracker()
    for i in range(len(whole)):
        assert not tracker.complete or i == 0
        tracker.feed(whole[i : i + 1])
    assert tracker.complete and not tracker.lost


def test_a_cut_dump_is_counted_as_truncated_not_empty(tmp_path):
    path = tmp_path / "c4.json.zst"
    path.write_bytes(with_checksum(LINES)[:20])  # cut before any block decodes
    report = FilterReport()
    assert list(iter_json_records(path, report)) == []
    assert report.to_json()["bad_input"] == {"truncated": 1}
    path.write_bytes(streamed(LINES)[:200])  # the first frame (9 lines) whole, then a cut
    report = FilterReport()
    assert len(list(iter_json_records(path, report))) == 9
    assert report.to_json()["bad_input"] == {"truncated": 1}


def test_tokenize_refuses_a_cut_zst_even_when_skipping_bad_lines(tmp_path):
    path = tmp_path / "docs.jsonl.zst"
    whole = streamed(LINES)
    path.write_bytes(whole[: len(whole) // 2])
    with warnings.catch_warnings(), pytest.raises(DataError, match="damaged or truncated"):
        warnings.simplefilter("ignore")
        list(read_documents(path, errors="skip"))
