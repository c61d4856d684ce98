"""Which files finetune.data names, and how compressed, pretty-printed and folder inputs read."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma

import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.data import read_conversations

ALPACA = {"instruction": "Add", "input": "1 2", "output": "3"}
LINES = (json.dumps(ALPACA) + "\n" + json.dumps({"instruction": "x", "output": ""}) + "\n").encode()


def test_tilde_is_expanded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.jsonl").write_text(json.dumps(ALPACA) + "\n", encoding="utf-8")
    assert len(read_conversations("~/x.jsonl")[0]) == 1
    with pytest.raises(ConfigError, match=r"~/y\.jsonl \(.*y\.jsonl\) does not exist"):
        read_conversations("~/y.jsonl")


def test_an_existing_path_with_a_comma_is_one_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a,b.jsonl").write_text(json.dumps(ALPACA) + "\n", encoding="utf-8")
    conversations, report = read_conversations("a,b.jsonl")  # not "a" (a Hub name) and "b.jsonl"
    assert len(conversations) == 1 and report.where == ["a,b.jsonl:1"]
    (tmp_path / "c.jsonl").write_text(json.dumps(ALPACA) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="b.jsonl does not exist"):
        read_conversations("c.jsonl,b.jsonl")  # not a whole path: split on commas


@pytest.mark.parametrize(
    "compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"]
)
def test_compressed_files_are_read_with_their_line_numbers(tmp_path, compress) -> None:
    path = tmp_path / "d.jsonl.gz"  # the name does not matter: the first bytes say
    path.write_bytes(compress(LINES))
    with pytest.raises(DataError, match=r"d\.jsonl\.gz:2: empty response"):
        read_conversations(str(path))
    conversations, report = read_conversations(str(path), skip_bad=True)
    assert conversations[0][1]["content"] == "3" and report.skipped == {"empty_response": 1}


def test_zstd_and_damaged_compressed_files_say_what_to_do(tmp_path) -> None:
    zst = tmp_path / "d.jsonl.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 8)
    with pytest.raises(DataError, match=r"zstd-compressed, which is not read; decompress it"):
        read_conversations(str(zst), skip_bad=True)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(LINES)[:12])
    with pytest.raises(DataError, match=r"cannot decompress its gzip data .*truncated"):
        read_conversations(str(cut), skip_bad=True)


def test_a_directory_is_refused_with_the_files_to_name(tmp_path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(ALPACA) + "\n", encoding="utf-8")
    (folder / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is a directory \(it holds train\.jsonl\); name the"):
        read_conversations(str(folder))


def test_pretty_printed_objects_name_the_formats_instead_of_counting_lines(tmp_path) -> None:
    path = tmp_path / "pretty.jsonl"
    path.write_text(
        json.dumps(ALPACA)
        + "\n"
        + json.dumps(ALPACA, indent=2)
        + "\n"
        + json.dumps(ALPACA, indent=2),
        encoding="utf-8",
    )
    for skip in (False, True):  # a layout error: never 10 "invalid_json" records
        with pytest.raises(DataError, match=r"pretty\.jsonl:2: a JSON record spans several lines"
                           r".*one JSON object per line \(JSONL\) or one JSON array"):  # fmt: skip
            read_conversations(str(path), skip_bad=skip)
    broken = tmp_path / "broken.jsonl"  # a bad line in real JSONL is still one bad record
    broken.write_text(json.dumps(ALPACA) + "\n{oops\n" + json.dumps(ALPACA) + "\n", "utf-8")
    assert read_conversations(str(broken), skip_bad=True)[1].skipped == {"invalid_json": 1}
