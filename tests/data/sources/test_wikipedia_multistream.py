"""Damaged multistream indexes: listing inputs never aborts, and no page is lost."""

import bz2

from llamaforge.data.sources.wikipedia import WikipediaConfig, WikipediaSource
from llamaforge.data.sources.wikipedia_multistream import index_path, stream_offsets
from tests.data.sources.test_wikipedia import run, write_multistream

STREAMS = [[(1, "Alpha"), (2, "Beta")], [(3, "Gamma")], [(4, "Delta"), (5, "Eps")]]


def titles(tmp_path, streams_per_slice=1):
    source = WikipediaSource(WikipediaConfig(streams_per_slice=streams_per_slice))
    slices = source.list_inputs(tmp_path)
    return [d.meta["title"] for piece in slices for d in run(source, [piece])[0]], slices


def test_non_ascii_digits_in_the_index_are_skipped(tmp_path):
    dump, sizes = write_multistream(tmp_path, STREAMS)
    index = index_path(dump)
    lines = bz2.decompress(index.read_bytes()).decode()
    index.write_bytes(bz2.compress(("\u00b2:2:X\n\u0663:3:Y\n" + lines).encode()))
    assert stream_offsets(index) == [sizes[0], sum(sizes[:2]), sum(sizes[:3])]
    assert titles(tmp_path)[0] == ["Alpha", "Beta", "Gamma", "Delta", "Eps"]


def test_truncated_index_gives_larger_slices_not_an_error(tmp_path, caplog):
    dump, sizes = write_multistream(tmp_path, STREAMS)
    index = index_path(dump)
    lines = bz2.decompress(index.read_bytes()).decode().splitlines()
    data = bz2.compress(("\n".join(lines[:2]) + "\n" + "9" * 20000).encode())
    index.write_bytes(data[: len(data) - 20])  # the end-of-stream marker is cut off
    got, slices = titles(tmp_path)
    assert got == ["Alpha", "Beta", "Gamma", "Delta", "Eps"]
    assert len(slices) == 1  # offsets read before the cut: only the first page stream
    assert "index unreadable" in caplog.text


def test_index_without_usable_lines_still_reads_every_page(tmp_path):
    dump, _ = write_multistream(tmp_path, STREAMS)
    index_path(dump).write_bytes(b"BZh9 not really bz2")
    got, slices = titles(tmp_path)
    assert got == ["Alpha", "Beta", "Gamma", "Delta", "Eps"] and len(slices) == 1


def test_a_slice_has_a_build_recipe_of_its_own_bytes(tmp_path):
    """The build fingerprints every input; a slice is no file on disk (os.stat failed on it)."""
    from llamaforge.data.build_recipe import file_recipe

    dump, sizes = write_multistream(tmp_path, STREAMS)
    source = WikipediaSource(WikipediaConfig(streams_per_slice=1))
    slices = source.list_inputs(tmp_path)
    recipes = [file_recipe(source, piece) for piece in slices]
    counted = [r["input"]["bytes"] for r in recipes]  # each slice's compressed bytes
    assert counted[:-1] == sizes[1 : len(slices)]  # the last one runs on to the dump's end
    assert sum(counted) == dump.stat().st_size - sizes[0]  # all but the header stream
    assert len({r["input"]["path"] for r in recipes}) == len(slices)
