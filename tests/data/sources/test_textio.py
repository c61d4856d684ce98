import bz2
import gzip
import io
import lzma
import random

import pytest
import zstandard

from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.textio import (
    BadInput,
    decode_utf8,
    iter_json_records,
    iter_lines,
    looks_binary,
    open_binary,
    strip_compression_suffix,
)

LINES = [f"line {i} of a dump".encode() for i in range(2000)]
DATA = b"\n".join(LINES) + b"\n"


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".txt", lambda d: d),
        (".gz", gzip.compress),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
        (".zst", lambda d: zstandard.ZstdCompressor().compress(d)),
    ],
)
def test_open_binary_decompresses_by_suffix(tmp_path, suffix, compress):
    path = tmp_path / f"dump{suffix}"
    path.write_bytes(compress(DATA))
    with open_binary(path) as stream:
        assert list(iter_lines(stream, str(path))) == LINES


def test_strip_compression_suffix():
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        assert strip_compression_suffix(f"a.jsonl{suffix}") == "a.jsonl"
    assert strip_compression_suffix("a.jsonl") == "a.jsonl"


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".bz2", lambda d: bz2.compress(d, compresslevel=1))],
)
def test_truncated_archive_yields_lines_before_the_cut_then_one_bad_input(
    tmp_path, suffix, compress
):
    # 400 KB: several 100 KB bz2 blocks, since bz2 can only return whole blocks.
    lines = [f"line {i} of a longer dump".encode() for i in range(16000)]
    packed = compress(b"\n".join(lines) + b"\n")
    path = tmp_path / f"dump{suffix}"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    with open_binary(path) as stream:
        items = list(iter_lines(stream, str(path), chunk_bytes=4096))
    kept = [i for i in items if not isinstance(i, BadInput)]
    bad = [i for i in items if isinstance(i, BadInput)]
    assert len(bad) == 1 and bad[0].reason.startswith("truncated") and items[-1] is bad[0]
    assert bad[0].where.startswith(str(path))
    assert len(lines) // 3 < len(kept) < len(lines)
    assert kept[:-1] == lines[: len(kept) - 1]  # everything before the cut, in order
    assert lines[len(kept) - 1].startswith(kept[-1])  # the last one may be cut mid-line


def test_long_line_is_skipped_in_bounded_memory_and_counted(tmp_path):
    """A 100 MB line, scaled down: max_line_bytes 1 KiB, a 64 KiB line read in 100-byte chunks."""
    data = b"first\n" + b"x" * 65536 + b"\nlast\nunterminated"

    class Watched(io.BytesIO):
        def read(self, size=-1):
            assert 0 < size <= 100  # never asked to read everything
            return super().read(size)

    items = list(iter_lines(Watched(data), "f", max_line_bytes=1024, chunk_bytes=100))
    assert items[0] == b"first" and items[2:] == [b"last", b"unterminated"]
    assert isinstance(items[1], BadInput)
    assert (items[1].reason, items[1].where) == ("line_too_long", "f:2")


def test_long_last_line_without_newline_is_counted():
    items = list(iter_lines(io.BytesIO(b"ok\n" + b"y" * 5000), "g", max_line_bytes=100))
    assert items[0] == b"ok"
    assert isinstance(items[1], BadInput) and items[1].where == "g:2"
    assert len(items) == 2


def test_line_exactly_at_the_limit_is_kept():
    line = b"z" * 100
    assert list(iter_lines(io.BytesIO(line + b"\n"), "h", max_line_bytes=100)) == [line]
    assert isinstance(
        next(iter(iter_lines(io.BytesIO(line + b"z\n"), "h", max_line_bytes=100))), BadInput
    )


def test_decode_utf8_is_strict():
    assert decode_utf8("café ✓".encode()) == "café ✓"
    assert decode_utf8(b"caf\xe9") is None  # latin-1, not UTF-8
    assert decode_utf8(b"\xed\xa0\x80") is None  # an encoded surrogate
    assert decode_utf8("ab€".encode()[:-1]) is None  # a cut multi-byte character


def test_looks_binary():
    assert looks_binary(b"text\x00with a NUL")
    assert looks_binary(bytes(range(1, 32)) * 4)  # mostly control bytes
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert not looks_binary("plain text, tabs\tand\nnewlines\r\n and é".encode())
    assert not looks_binary(b"")
    assert not looks_binary(b"a\x1b[0m coloured " * 10)  # a few escape codes are text


def _reasons(path):
    report = FilterReport()
    records = list(iter_json_records(path, report))
    return records, dict(report.bad_input), report.bad_input_examples


def test_binary_jsonl_is_one_binary_input_not_many_utf8_lines(tmp_path):
    path = tmp_path / "blob.jsonl"
    path.write_bytes(random.Random(0).randbytes(200_000))  # ~780 "lines" split at \n bytes
    records, bad, examples = _reasons(path)
    assert records == [] and bad == {"binary": 1}
    assert "not text" in examples["binary"]
    packed = tmp_path / "blob.jsonl.gz"
    packed.write_bytes(gzip.compress(random.Random(1).randbytes(50_000)))
    assert _reasons(packed)[1] == {"binary": 1}


def test_latin1_lines_are_still_utf8_errors(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "ok"}\n' + '{"text": "caf\xe9"}\n'.encode("latin-1") * 3)
    records, bad, _ = _reasons(path)
    assert len(records) == 1 and bad == {"utf8": 3}


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [(".gz", "not_gzip"), (".bz2", "not_bz2"), (".xz", "not_xz"), (".zst", "not_zstd")],
)
def test_data_that_is_not_the_compression_format_is_named_so(tmp_path, suffix, reason):
    path = tmp_path / f"plain.jsonl{suffix}"
    path.write_bytes(b'{"text": "I was never compressed"}\n' * 50)
    records, bad, _ = _reasons(path)
    assert records == [] and bad == {reason: 1}


def test_truncated_and_corrupt_gzip_are_told_apart(tmp_path):
    body = b"".join(b'{"text": "record %d"}\n' % i for i in range(20_000))
    packed = gzip.compress(body)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    records, bad, _ = _reasons(cut)
    assert bad == {"truncated": 1} and 0 < len(records) < 20_000
    trailing = tmp_path / "trailing.jsonl.gz"
    trailing.write_bytes(packed + b"garbage after the last member")
    records, bad, _ = _reasons(trailing)
    assert bad == {"corrupt": 1} and len(records) == 20_000


def test_broken_deflate_block_is_counted_not_raised(tmp_path):
    """gzip raises zlib.error, which is no OSError, for a broken deflate block."""
    body = b"".join(b'{"text": "record %d"}\n' % i for i in range(20_000))
    broken = bytearray(gzip.compress(body))
    broken[100:110] = b"\xff" * 10
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(gzip.compress(body) + bytes(broken))  # a good member, then a bad one
    records, bad, _ = _reasons(path)
    assert bad == {"corrupt": 1} and len(records) == 20_000


@pytest.mark.parametrize(
    "line",
    [
        b'{"text": "big", "stars": ' + b"9" * 5000 + b"}",  # past int's 4300-digit limit
        b"[" * 100_000,  # deeper than the parser's recursion limit
    ],
)
def test_json_that_python_refuses_is_a_counted_bad_line(tmp_path, line):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b'{"text": "ok"}\n' + line + b'\n{"text": "also ok"}\n')
    records, bad, examples = _reasons(path)
    assert [record["text"] for _, record in records] == ["ok", "also ok"]
    assert bad == {"json": 1} and examples["json"].endswith("hostile.jsonl:2")


def test_a_lone_surrogate_escape_is_a_counted_bad_line_and_a_pair_is_text(tmp_path):
    """No UTF-8 text holds "\\ud800": the zstd writer and the tokenizer would raise on it."""
    path = tmp_path / "surrogates.jsonl"
    path.write_bytes(
        b'{"text": "ok"}\n{"text": "a\\ud800b"}\n{"meta": {"x": ["\\udc00"]}, "text": "c"}\n'
        b'{"text": "\\ud83d\\ude00"}\n{"text": "a \\\\ud800 spelled out"}\n'
    )
    records, bad, examples = _reasons(path)
    assert [record["text"] for _, record in records] == [
        "ok",
        "\U0001f600",
        "a \\ud800 spelled out",
    ]
    assert bad == {"utf8": 2} and "surrogates.jsonl:2" in examples["utf8"]
