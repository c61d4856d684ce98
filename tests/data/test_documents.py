import gzip
import json
import tracemalloc

import pytest

from llamaforge.data.documents import read_documents
from llamaforge.errors import DataError

GOOD = json.dumps({"text": "fine"}) + "\n"


def _long_line_file(tmp_path, line_bytes):
    """A .jsonl.gz whose second line is ``line_bytes`` long: a few KB on disk."""
    path = tmp_path / "long.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(GOOD.encode())
        f.write(b'{"text": "' + b"a" * line_bytes + b'"}\n')
        f.write(GOOD.encode())
    return path


def test_over_long_line_is_a_bad_line_read_in_bounded_memory(tmp_path):
    """The red-team's 6 GB line, scaled down: a 1 MiB limit and a 32 MiB line."""
    path = _long_line_file(tmp_path, 32 << 20)
    with pytest.raises(DataError, match=r"long\.jsonl\.gz:2: bad JSONL line \(longer than 1048576"):
        list(read_documents(path, max_line_bytes=1 << 20))
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match=r"skipped 1 bad lines \(first: line 2\)"):
            docs = list(read_documents(path, errors="skip", max_line_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert docs == ["fine", "fine"]
    assert peak < 10 << 20  # the line is 32 MiB; only the limit and a read chunk are held


def test_line_under_the_limit_is_read_and_the_limit_is_checked(tmp_path):
    path = _long_line_file(tmp_path, 1000)
    assert [len(doc) for doc in read_documents(path, max_line_bytes=2000)] == [4, 1000, 4]
    with pytest.raises(DataError, match="max_line_bytes must be a positive integer"):
        list(read_documents(path, max_line_bytes=0))


def test_corrupt_deflate_data_is_one_clear_error_naming_file_and_line(tmp_path):
    """gzip raises zlib.error (not an OSError) for a broken deflate block."""
    rows = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(1000)).encode()
    broken = bytearray(gzip.compress(rows))
    broken[100:110] = b"\xff" * 10  # "invalid distance too far back"
    path = tmp_path / "corrupt.jsonl.gz"
    path.write_bytes(gzip.compress(rows) + bytes(broken))  # a good member, then a bad one
    with pytest.raises(DataError, match=r"corrupt\.jsonl\.gz:1001: the file is damaged"):
        list(read_documents(path, errors="skip"))
