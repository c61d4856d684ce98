"""The build's .jsonl.zst files: written through a temp and renamed, damage read as DataError."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaforge.data.build_files import ShardSink, read_jsonl_zst
from llamaforge.data.sources.base import Document
from llamaforge.errors import DataError


def test_shards_round_trip_and_leave_no_temps(tmp_path):
    sink = ShardSink(tmp_path, shard_docs=2, shard_bytes=0)
    for i in range(5):
        sink.add(Document(f"text {i}", "c4", str(i), {}))
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["part-00000.jsonl.zst", "part-00001.jsonl.zst", "part-00002.jsonl.zst"]
    texts = [d.text for n in names for d in read_jsonl_zst(tmp_path / n)]
    assert texts == [f"text {i}" for i in range(5)]


def test_a_cut_file_is_an_error_and_its_report_goes(tmp_path):
    sink = ShardSink(tmp_path, shard_docs=0, shard_bytes=1 << 20)
    for i in range(200):
        sink.add(Document(f"document number {i} " * 20, "c4", str(i), {}))
    sink.close()
    part, report = tmp_path / "part-00000.jsonl.zst", tmp_path / "report.json"
    report.write_text("{}")
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(DataError, match="part-00000.jsonl.zst is damaged .*EOFError"):
        list(read_jsonl_zst(part, report))
    assert not report.exists()


def test_input_keys_fit_one_file_name_and_stay_unique():
    """A deep path flattens to a name over 255 bytes; every file made from its key must fit."""
    from llamaforge.data.build_stages import MAX_KEY_BYTES, input_keys

    root = Path("/in")
    deep = [
        root / ("d" * 40) / ("e" * 40) / ("f" * 40) / ("g" * 40) / f"{c * 203}.txt" for c in "xy"
    ]
    short = root / "a" / "Posts.xml"
    keys = input_keys([(root, p) for p in [*deep, short]])
    assert sorted(keys.values()) == sorted([*deep, short])
    assert keys["a__Posts.xml"] == short  # short names are unchanged, so earlier builds match
    for key in keys:
        assert len(key.encode()) <= MAX_KEY_BYTES
        assert len(f".{key}.jsonl.zst.XXXXXXXX.tmp".encode()) <= 255
