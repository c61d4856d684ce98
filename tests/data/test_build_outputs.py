"""The build's output folder: never read as input, others' files kept, no planted link followed."""

from __future__ import annotations

import json
import os

import pytest

from llamaforge.data.build import build
from llamaforge.data.build_stages import global_filter_source
from llamaforge.data.sources.registry import build_source
from llamaforge.errors import ConfigError, DataError
from tests.data.test_build import (  # noqa: F401 (fixtures)
    corpus,
    fake_sources,
    make_config,
    two_sources,
    write_docs,
)


def kept_docs(result, name="alpha") -> int:
    return result.report["sources"][name]["global_filter"]["kept_docs"]


@pytest.mark.parametrize(
    ("output", "inputs"),
    [
        ("alpha/out", "alpha"),  # output inside the input folder
        ("alpha", "alpha"),  # the same folder
        ("out", "out/alpha"),  # an input inside the output
    ],
)
def test_overlapping_output_and_input_are_refused(corpus, fake_sources, output, inputs):  # noqa: F811
    (corpus / "out" / "alpha").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"\[sources\.alpha\]\.input .*output|output .*input"):
        make_config(corpus, {"alpha": {"input": inputs, "weight": 1.0}}, output=output)
    assert not (corpus / "alpha" / "out").exists()


def test_a_symlink_into_the_output_is_refused_not_read(corpus, fake_sources):  # noqa: F811
    config = make_config(corpus, {"alpha": {"input": "alpha", "weight": 1.0}})
    first = build(config, progress=False)
    assert first.failures == [] and kept_docs(first) == 3
    write_docs(corpus / "out" / "alpha" / "kept.txt", ["one two three four five"])
    os.symlink(corpus / "out" / "alpha" / "kept.txt", corpus / "alpha" / "loop.txt")
    with pytest.raises(ConfigError, match="inside \\[build\\].output"):
        build(config, progress=False)


def test_a_users_report_or_mixture_is_refused_before_any_work(corpus, fake_sources):  # noqa: F811
    config = make_config(corpus, two_sources())
    build(config, progress=False)  # the build's own report.md is replaced quietly on re-runs
    assert build(config, progress=False).failures == []
    for name in ("report.md", "report.json", "mixture.toml"):
        path = corpus / "out" / name
        before = path.read_bytes() if path.exists() else None
        path.write_text("my own notes\n")
        filtered = sorted((corpus / "out" / "alpha" / "filtered").iterdir())
        with pytest.raises(ConfigError, match=f"{name} was not written by .*move it away"):
            build(config, progress=False)
        assert path.read_text() == "my own notes\n"
        assert sorted((corpus / "out" / "alpha" / "filtered").iterdir()) == filtered
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)
    assert build(config, progress=False).failures == []


def test_an_output_that_is_a_file_is_a_clear_error(corpus, fake_sources):  # noqa: F811
    (corpus / "out").write_text("a file")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        build(make_config(corpus, two_sources()), progress=False)
    assert (corpus / "out").read_text() == "a file"


def test_planted_symlinks_at_temp_names_are_not_followed(corpus, fake_sources, tmp_path):  # noqa: F811
    config = make_config(corpus, two_sources())
    assert build(config, progress=False).failures == []
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    filtered = corpus / "out" / "alpha" / "filtered"
    for link in (
        filtered / ".a.txt.jsonl.zst.tmp",  # the fixed temp names of earlier versions
        filtered / ".a.txt.report.json.tmp",
        corpus / "out" / ".report.json.tmp",
        corpus / "out" / "alpha" / ".final.tmp",
    ):
        link.symlink_to(victim)
    (filtered / "a.txt.report.json").unlink()  # stage 1 redoes a.txt, stage 2 the source
    result = build(config, progress=False)
    assert result.failures == [] and kept_docs(result) == 3
    assert victim.read_text() == "precious"
    assert not (filtered / "a.txt.jsonl.zst").is_symlink()
    assert json.loads((corpus / "out" / "report.json").read_text())["failures"] == []


def test_a_damaged_intermediate_is_an_error_and_redone_next_run(corpus, fake_sources):  # noqa: F811
    config = make_config(corpus, two_sources())
    assert build(config, progress=False).failures == []
    source_dir = corpus / "out" / "alpha"
    data = source_dir / "filtered" / "a.txt.jsonl.zst"
    data.write_bytes(data.read_bytes()[:-3])  # cut short after it was finished
    source = build_source("alpha", config.sources[0].settings, corpus)
    with pytest.raises(DataError, match="a.txt.jsonl.zst is damaged .*run the build again"):
        global_filter_source(source, source_dir, ["a.txt", "sub__b.txt"], 2, 0)
    assert not (source_dir / "filtered" / "a.txt.report.json").exists()
    result = build(config, progress=False)  # a.txt is redone from its input
    assert result.failures == [] and kept_docs(result) == 3
