"""The build pipeline on fake sources that implement the real Source contract.

The fake format is one document per line (``id<TAB>text``, optionally
gzipped); its filter drops documents shorter than ``min_words`` words
("fake.short"), its global filter drops exact duplicates ("dedup.exact").
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from llamaforge.data.build import build
from llamaforge.data.build_config import DataBuildConfig
from llamaforge.data.build_stages import read_jsonl_zst
from llamaforge.data.sources import registry
from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.textio import BadInput, decode_utf8, iter_lines, open_binary
from llamaforge.errors import ConfigError

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "data",
    "flows",
    "through",
    "the",
    "pipeline",
]


@dataclass
class FakeConfig:
    min_words: int = 3
    fail_on: str = ""  # an input name to crash on: a bug, not bad data
    stopwords_path: str = ""

    def __post_init__(self) -> None:
        if self.min_words < 0:
            raise ConfigError(f"[sources.fake].min_words must be >= 0, got {self.min_words}")


class FakeSource:
    name: ClassVar[str] = "fake"

    def __init__(self, config: FakeConfig) -> None:
        self.config = config

    def list_inputs(self, root: Path) -> list[Path]:
        return sorted(p for p in root.rglob("*") if p.name.endswith((".txt", ".txt.gz")))

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        # A bug, not a setting: the crash is switched by the environment so that "fixing" it
        # leaves the recipe (the settings) unchanged, as a real code fix would.
        fail_on = self.config.fail_on or os.environ.get("FAKE_SOURCE_FAIL_ON", "")
        if fail_on and fail_on == path.name:
            raise RuntimeError(f"bug while reading {path.name}")
        with open_binary(path) as stream:
            for line in iter_lines(stream, str(path)):
                if isinstance(line, BadInput):
                    report.bad(line.reason.split(" ")[0], line.where)
                    continue
                text = decode_utf8(line)
                if text is None:
                    report.bad("utf8", str(path))
                    continue
                doc_id, _, body = text.partition("\t")
                if len(body.split()) < self.config.min_words:
                    report.drop("fake.short", body)
                    continue
                yield Document(body, "fake", doc_id, {"filters": ["fake.short"]})

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        seen = set()
        for doc in docs:
            if doc.text in seen:
                report.drop("dedup.exact", doc.text)
                continue
            seen.add(doc.text)
            yield doc


@pytest.fixture
def fake_sources(monkeypatch):
    """Register the fake as sources "alpha" and "beta" (the registry maps names to classes)."""
    for name in ("alpha", "beta", "gamma"):
        monkeypatch.setitem(registry.SOURCES, name, f"{__name__}:FakeSource")


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    from llamaforge.tokenizer import train_tokenizer

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(200)]
    path = tmp_path_factory.mktemp("tok") / "tiny.model"
    train_tokenizer(path, texts=texts, vocab_size=300, progress=False, hard_vocab_limit=False)
    return path


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_docs(path: Path, docs: list[str]) -> Path:
    data = "".join(f"{path.stem}-{i}\t{d}\n" for i, d in enumerate(docs)).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def make_config(tmp_path: Path, sources: dict, **build) -> DataBuildConfig:
    table = {
        "build": {"output": "out", "shard_docs": 2, **build},
        "mixture": {"total_tokens": 1e6},
        "sources": sources,
    }
    return DataBuildConfig.from_dict(table, tmp_path)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """alpha: 2 files (3 kept, 1 short, 1 duplicate across files); beta: 1 file, 2 kept."""
    write_docs(tmp_path / "alpha" / "a.txt", ["one two three four", "too short", "same same same"])
    write_docs(tmp_path / "alpha" / "sub" / "b.txt.gz", ["same same same", "five six seven eight"])
    write_docs(tmp_path / "beta.txt", ["beta doc number one", "beta doc number two"])
    return tmp_path


def two_sources(**alpha) -> dict:
    return {
        "alpha": {"input": "alpha", "weight": 3.0, "epochs": 1.5, **alpha},
        "beta": {"input": ["beta.txt"], "weight": 1.0},
    }


def final_docs(out: Path, name: str) -> list[Document]:
    return [
        d for f in sorted((out / name / "final").glob("*.jsonl.zst")) for d in read_jsonl_zst(f)
    ]


def test_build_filters_dedups_tokenizes_and_reports(corpus, fake_sources, tiny_tokenizer):
    config = make_config(corpus, two_sources(), tokenizer=str(tiny_tokenizer))
    result = build(config, progress=False)
    out = corpus / "out"
    assert result.failures == []
    assert sorted(p.name for p in (out / "alpha" / "filtered").iterdir()) == [
        "a.txt.jsonl.zst", "a.txt.report.json", "sub__b.txt.jsonl.zst", "sub__b.txt.report.json"
    ]  # fmt: skip
    kept = final_docs(out, "alpha")
    assert [d.text for d in kept] == [
        "one two three four",
        "same same same",
        "five six seven eight",
    ]
    assert kept[0].id == "a-0" and kept[0].meta["input"] == str(corpus / "alpha" / "a.txt")
    assert len(list((out / "alpha" / "final").glob("part-*.jsonl.zst"))) == 2  # shard_docs = 2

    row = result.report["sources"]["alpha"]
    assert row["files"] == {"total": 2, "done": 2, "failed": 0}
    assert row["process"]["kept_docs"] == 4
    assert row["process"]["dropped_docs"] == {"fake.short": 1}
    assert row["process"]["dropped_bytes"] == {"fake.short": len("too short")}
    assert row["global_filter"]["dropped_docs"] == {"dedup.exact": 1}
    assert row["global_filter"]["kept_docs"] == 3
    assert row["share"] == 0.75 and row["epochs_table1"] == 1.5
    assert row["tokens"] > 0
    assert row["epochs_planned"] == pytest.approx(0.75 * 1e6 / row["tokens"])
    assert result.report["sources"]["beta"]["epochs_table1"] is None

    mixture = (out / "mixture.toml").read_text()
    import tomllib

    data = tomllib.loads(mixture)["data"]
    assert [(Path(s["path"]).parent.name, s["weight"]) for s in data["sources"]] == [
        ("alpha", 3.0), ("beta", 1.0)
    ]  # fmt: skip
    assert data["tokenizer"] == str(tiny_tokenizer.resolve())
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["sources"]["alpha"]["global_filter"]["dropped_docs"] == {"dedup.exact": 1}
    markdown = (out / "report.md").read_text()
    assert "fake.short 1" in markdown and "dedup.exact 1" in markdown


def test_rerun_skips_finished_work_and_redoes_partial_output(corpus, fake_sources):
    config = make_config(corpus, two_sources())
    build(config, progress=False)
    filtered = corpus / "out" / "alpha" / "filtered"
    a_report, b_report = filtered / "a.txt.report.json", filtered / "sub__b.txt.report.json"
    before = a_report.stat().st_mtime_ns
    b_report.unlink()  # data without a report: an interrupted file, redone
    (filtered / "sub__b.txt.jsonl.zst").write_bytes(b"garbage, not zstd")
    (filtered / ".c.txt.jsonl.zst.tmp").write_bytes(b"leftover temp file")
    final_report = corpus / "out" / "alpha" / "final" / "report.json"
    final_before = final_report.stat().st_mtime_ns
    build(config, progress=False)
    assert a_report.stat().st_mtime_ns == before
    assert b_report.is_file()
    assert [d.text for d in read_jsonl_zst(filtered / "sub__b.txt.jsonl.zst")] == [
        "same same same", "five six seven eight"
    ]  # fmt: skip
    assert final_report.stat().st_mtime_ns == final_before  # same inputs: stage 2 skipped

    # A new input file makes stage 2 run again and include it.
    write_docs(corpus / "alpha" / "c.txt", ["a brand new document"])
    build(config, progress=False)
    assert a_report.stat().st_mtime_ns == before
    assert "a brand new document" in [d.text for d in final_docs(corpus / "out", "alpha")]


def test_worker_crash_is_reported_and_loses_no_other_output(corpus, fake_sources, monkeypatch):
    monkeypatch.setenv("FAKE_SOURCE_FAIL_ON", "a.txt")
    config = make_config(corpus, two_sources(), workers=2)
    result = build(config, progress=False)
    assert [(f["source"], Path(f["where"]).name) for f in result.failures] == [("alpha", "a.txt")]
    assert "bug while reading a.txt" in result.failures[0]["traceback"]
    out = corpus / "out"
    assert (out / "alpha" / "filtered" / "sub__b.txt.report.json").is_file()
    assert not (out / "alpha" / "filtered" / "a.txt.jsonl.zst").exists()
    assert not list((out / "alpha" / "filtered").glob(".*tmp"))
    assert not (out / "alpha" / "final").exists()  # waits until every file is done
    assert [d.text for d in final_docs(out, "beta")] == [
        "beta doc number one",
        "beta doc number two",
    ]
    assert result.report["sources"]["alpha"]["files"] == {"total": 2, "done": 1, "failed": 1}
    assert "a.txt" in (out / "report.md").read_text()

    monkeypatch.delenv("FAKE_SOURCE_FAIL_ON")
    fixed = make_config(corpus, two_sources(), workers=2)
    b_mtime = (out / "alpha" / "filtered" / "sub__b.txt.report.json").stat().st_mtime_ns
    assert build(fixed, progress=False).failures == []
    assert (out / "alpha" / "filtered" / "sub__b.txt.report.json").stat().st_mtime_ns == b_mtime
    assert len(final_docs(out, "alpha")) == 3


def test_bad_input_is_counted_and_kept_documents_survive(tmp_path, fake_sources):
    # > 2 MB so whole 1 MiB read chunks come before the cut (textio reads in chunks).
    n = 40_000
    good = "".join(f"g-{i}\tkept document number {i:>50}\n" for i in range(n)).encode()
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "cut.txt.gz").write_bytes(gzip.compress(good)[:-30])  # truncated
    (tmp_path / "alpha" / "latin1.txt").write_bytes(
        b"x-0\tcaf\xe9 au lait ok\nx-1\tfine text here\n"
    )
    config = make_config(tmp_path, {"alpha": {"input": "alpha", "weight": 1.0}}, shard_docs=0)
    row = build(config, progress=False).report["sources"]["alpha"]
    assert row["process"]["bad_input"] == {"truncated": 1, "utf8": 1}
    assert n // 2 < row["process"]["kept_docs"] < n + 1  # lines before the cut stay kept
    assert row["global_filter"]["kept_docs"] == row["process"]["kept_docs"]
    assert "fine text here" in [d.text for d in final_docs(tmp_path / "out", "alpha")]


def test_same_file_names_under_different_folders_do_not_collide(tmp_path, fake_sources):
    for site in ("math", "physics"):
        write_docs(tmp_path / "se" / site / "Posts.txt", [f"{site} post with words"])
    config = make_config(tmp_path, {"alpha": {"input": "se", "weight": 1.0}})
    build(config, progress=False)
    names = sorted(p.name for p in (tmp_path / "out" / "alpha" / "filtered").glob("*.zst"))
    assert names == ["math__Posts.txt.jsonl.zst", "physics__Posts.txt.jsonl.zst"]
    assert len(final_docs(tmp_path / "out", "alpha")) == 2


def test_dask_local_cluster_gives_the_same_output(corpus, fake_sources, tiny_tokenizer):
    """The distributed path: the same task functions on a 2-process Dask LocalCluster.

    Workers are forked from this process (already holding llamaforge and torch) rather than
    spawned, which only saves start-up time: tasks and arguments still travel pickled.
    """
    import dask
    from distributed import Client, LocalCluster

    config = make_config(corpus, two_sources(), tokenizer=str(tiny_tokenizer))
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        result = build(config, progress=False, executor=client.get_executor(pure=False))
    assert result.failures == []
    dask_docs = [d.to_json() for d in final_docs(corpus / "out", "alpha")]
    dask_tokens = result.report["sources"]["alpha"]["tokens"]
    inline = make_config(corpus, two_sources(), tokenizer=str(tiny_tokenizer), output="inline")
    reference = build(inline, progress=False)
    assert dask_docs == [d.to_json() for d in final_docs(corpus / "inline", "alpha")]
    assert dask_tokens == reference.report["sources"]["alpha"]["tokens"]
