"""Hostile book files: bombs stop at the size cap, odd encodings and line ends are handled."""

import gzip
import tracemalloc

from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.books import BooksConfig, BooksSource

TEXT = "It was a bright cold day in April, and the clocks were striking thirteen.\n"


def run(path, **config):
    report = FilterReport()
    docs = list(BooksSource(BooksConfig(**config)).process(path, report))
    return docs, report


def test_gzip_bomb_stops_at_max_book_bytes(tmp_path):
    path = tmp_path / "bomb.txt.gz"
    with gzip.open(path, "wb") as out:
        for _ in range(400):  # 40 MB decompressed, ~100 KB on disk
            out.write(b"x" * 899 + b"\n" + b"y" * 99_000 + b"\n")
    tracemalloc.start()
    docs, report = run(path, max_book_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert docs == [] and dict(report.bad_input) == {"too_large": 1}
    assert peak < 8 << 20, peak  # the whole book would be 40 MB (and its lines again)


def test_book_under_the_cap_is_kept(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text(TEXT * 100)
    docs, report = run(path, max_book_bytes=len(TEXT) * 100 + 1)
    assert [d.text for d in docs] == [(TEXT * 100).strip()]


def test_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes((TEXT * 3).replace("\n", "\r\n").encode("utf-16"))  # BOM + UTF-16-LE
    docs, report = run(path)
    assert [d.text for d in docs] == [(TEXT * 3).strip()]
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"\xff\xfe" + "ab".encode("utf-16-le") + b"\x00\xd8")  # lone surrogate
    docs, report = run(broken)
    assert docs == [] and dict(report.bad_input) == {"utf16": 1}


def test_cr_only_line_ends_are_line_breaks(tmp_path):
    path = tmp_path / "mac.txt"
    path.write_bytes((TEXT * 50).replace("\n", "\r").encode())
    docs, report = run(path, max_line_bytes=1000)  # the file is 3.7 KB: one "line" before
    assert [d.text for d in docs] == [(TEXT * 50).strip()]
    assert dict(report.bad_input) == {}


def test_keys_stay_unique_when_a_file_is_named_like_a_suffixed_key():
    texts = {"a": "alpha " * 300, "b": "beta gamma " * 300, "c": "delta epsilon zeta " * 300}
    docs = [
        Document(text=texts["a"], source="books", id="x", meta={}),
        Document(text=texts["b"], source="books", id="x", meta={}),
        Document(text=texts["c"], source="books", id="x#2", meta={}),
    ]
    report = FilterReport()
    kept = list(BooksSource(BooksConfig()).global_filter(docs, report))
    assert [d.text for d in kept] == [texts["a"], texts["b"], texts["c"]]
