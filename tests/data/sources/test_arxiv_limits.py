"""``max_source_bytes`` holds for every layer: nested compression, sparse tar members, bulk tars."""

import bz2
import gzip
import io
import tarfile
import tracemalloc

import pytest

from llamaforge.data.samples.arxiv import BIBLIOGRAPHY, PREAMBLE
from llamaforge.data.sources.arxiv import ArxivConfig, ArxivSource
from llamaforge.data.sources.base import FilterReport

LIMIT = 1 << 20  # max_source_bytes in these tests
BOMB = 16 << 20  # what the bombs expand to: far over LIMIT, yet quick to build


def paper(title):
    return PREAMBLE.replace("%EXTRA%", "") + f"\\section{{{title}}} body of {title}" + BIBLIOGRAPHY


def tar(members, sparse=None):
    """An uncompressed tar; ``sparse`` names members that claim ``BOMB`` bytes (GNU sparse)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name in (sparse or {}):
                # tarfile reads holes as NUL bytes: a few header bytes expand to sparse[name].
                info.pax_headers = {
                    "GNU.sparse.map": f"0,{len(data)}",
                    "GNU.sparse.size": str(sparse[name]),
                }
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_measured(paths, **config):
    source = ArxivSource(ArxivConfig(max_source_bytes=LIMIT, **config))
    report = FilterReport()
    tracemalloc.start()
    try:
        docs = {doc.id: doc for path in paths for doc in source.process(path, report)}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return docs, report, peak


def test_gzipped_tar_gz_bomb_is_too_large_in_bounded_memory(tmp_path):
    """The red-team's 4 KB file: a gzip of a tar.gz whose main.tex is 2.5 GB (here 16 MiB)."""
    inner = gzip.compress(tar({"main.tex": b"\\section{A}" + b" " * BOMB}))
    path = tmp_path / "2301.00001.tar.gz"
    path.write_bytes(gzip.compress(inner))
    assert path.stat().st_size < 64 << 10
    docs, report, peak = run_measured([path])
    assert docs == {} and dict(report.bad_input) == {"too_large": 1}
    assert "2301.00001.tar.gz: over 1048576 bytes" in report.bad_input_examples["too_large"]
    assert peak < 4 * LIMIT  # a few copies of the limit; unbounded, it held 2 x 16 MiB


def test_second_layer_within_the_limit_is_read_and_a_third_is_refused(tmp_path):
    source_tar = tar({"main.tex": paper("Nested").encode()})
    files = {
        "2301.00002.tar.gz": gzip.compress(gzip.compress(source_tar)),  # gzip again
        "2301.00003.tar": bz2.compress(source_tar),  # what tarfile's r:* used to undo
        "2301.00004.gz": gzip.compress(gzip.compress(paper("Tex").encode())),  # a .tex
        "2301.00005.tar.gz": gzip.compress(gzip.compress(gzip.compress(source_tar))),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    docs, report, _ = run_measured(sorted(tmp_path.iterdir()))
    assert sorted(docs) == ["2301.00002", "2301.00003", "2301.00004"]
    assert docs["2301.00004"].text == "\\section{Tex} body of Tex"
    assert dict(report.bad_input) == {"nested_archive": 1}
    assert "2301.00005" in report.bad_input_examples["nested_archive"]


@pytest.mark.parametrize(
    "sparse",
    [
        {"main.tex": BOMB},  # one member over the limit
        {"main.tex": LIMIT * 2 // 3, "b.tex": LIMIT * 2 // 3},  # each under, together over
    ],
)
def test_sparse_members_cannot_expand_past_the_limit(tmp_path, sparse):
    """A 10 KB uncompressed tar: no decompression at all, and still a bomb without a bound."""
    path = tmp_path / "2301.00006.tar"
    path.write_bytes(tar({"main.tex": paper("Sparse").encode(), "b.tex": b"x"}, sparse))
    assert path.stat().st_size < 64 << 10
    docs, report, peak = run_measured([path])
    assert docs == {} and dict(report.bad_input) == {"too_large": 1}
    assert ".tex members over 1048576 bytes" in report.bad_input_examples["too_large"]
    assert peak < 4 * LIMIT


def test_bomb_inside_a_bulk_tar_is_one_bad_member(tmp_path):
    bomb = gzip.compress(gzip.compress(tar({"main.tex": b" " * BOMB})))
    members = {
        "2301/2301.00007.gz": gzip.compress(tar({"main.tex": paper("Kept").encode()})),
        "2301/2301.00008.gz": bomb,
    }
    bulk = tmp_path / "arXiv_src_2301_001.tar"
    bulk.write_bytes(tar(members))
    docs, report, peak = run_measured([bulk])
    assert list(docs) == ["2301.00007"]
    assert dict(report.bad_input) == {"too_large": 1}
    assert "2301.00008" in report.bad_input_examples["too_large"]
    assert peak < 4 * LIMIT
