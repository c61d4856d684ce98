import json
import pickle

import pytest

from llamaforge.data.samples.github import write_samples
from llamaforge.data.sources.base import FilterReport, config_from_table
from llamaforge.data.sources.github import GitHubConfig, GitHubSource
from llamaforge.data.sources.github_rules import line_stats, strip_license_header
from llamaforge.errors import ConfigError

CODE = "def add(a, b):\n    return a + b\n"


def run(source, paths):
    report = FilterReport()
    docs = [doc for path in paths for doc in source.process(path, report)]
    return docs, report


def record(content=CODE, path="pkg/add.py", license_key="mit", repo="org/repo"):
    return {"repo_name": repo, "path": path, "content": content, "license": license_key}


@pytest.mark.parametrize(
    ("header", "kept_prefix"),
    [
        ("# Copyright 2021 Acme\n# Licensed under the Apache License 2.0\n\n", ""),
        ("#!/usr/bin/env python\n# SPDX-License-Identifier: MIT\n", "#!/usr/bin/env python\n"),
        ("/*\n * Copyright (c) 2010 Foo.\n * All rights reserved.\n */\n", ""),
        ("// Copyright 2015 Bar\n// Use is governed by the MIT License.\n", ""),
        ("-- Copyright 2001 Baz\n", ""),
        ('"""\nCopyright 2019 Qux. Permission is hereby granted, free of charge.\n"""\n', ""),
        ("<!-- Copyright 2012 Web Co -->\n", ""),
        ("# Copyright 2020 A\n\n/* Licensed under the BSD license. */\n", ""),  # two banners
    ],
)
def test_license_banners_are_removed(header, kept_prefix):
    text, removed = strip_license_header(header + CODE)
    assert text == kept_prefix + CODE
    assert removed == len(header) - len(kept_prefix)


@pytest.mark.parametrize(
    "text",
    [
        "# Helper functions for the CLI.\n" + CODE,  # ordinary comment
        '"""Parse LICENSE files."""\n' + CODE,  # docstring about licences, no banner words
        "/* Copyright 2020 never closed\n" + CODE,  # unterminated block is code
        CODE + "# Copyright 2020 at the bottom\n",  # not at the top
    ],
)
def test_non_banner_text_is_left_alone(text):
    assert strip_license_header(text) == (text, 0)


def test_license_and_extension_filters():
    source = GitHubSource(GitHubConfig())
    assert source.check(record())[1] == ""
    assert source.check(record(license_key="Apache-2.0"))[1] == ""
    assert source.check(record(license_key="gpl-3.0"))[1] == "github.license"
    assert source.check({"content": CODE, "path": "a.py"})[1] == "github.license"
    assert source.check(record(path="assets/logo.svg"))[1] == "github.extension"
    assert source.check(record(path="build/Makefile"))[1] == ""
    assert GitHubSource(GitHubConfig(extensions=[])).check(record(path="x.svg"))[1] == ""
    only_mit = GitHubSource(GitHubConfig(licenses=["mit"]))
    assert only_mit.check(record(license_key="bsd-3-clause"))[1] == "github.license"


def test_line_heuristic_thresholds():
    source = GitHubSource(GitHubConfig())
    short = "x = 1\n" * 50
    assert source.check(record(content=short + "a" * 1000 + "\n"))[1] == ""
    assert source.check(record(content=short + "a" * 1001 + "\n"))[1] == "github.max_line_length"
    # RedPajama's mean is len(text) / lines: the line breaks count.
    wide = ("b" * 99 + "\n") * 5
    assert line_stats(wide).avg_line_length == 100
    assert source.check(record(content=wide))[1] == ""
    assert source.check(record(content=("b" * 100 + "\n") * 5))[1] == "github.avg_line_length"
    # 1 alphanumeric character in 4 is exactly the threshold; fewer is dropped.
    assert source.check(record(content="a--\n" * 10))[1] == ""
    assert source.check(record(content="a---\n" * 10))[1] == "github.alnum_fraction"


def test_binary_and_non_utf8_content():
    source = GitHubSource(GitHubConfig())
    assert source.check(record(content="\x00\x01bin\x00"))[1] == "github.binary"
    assert source.check(record(content=None))[1] == "github.binary"
    assert source.check({**record(), "binary": True})[1] == "github.binary"
    assert source.check(record(content="caf\ufffd = 1\n"))[1] == "github.non_utf8"
    assert source.check(record(content="x = '\udce9'\n"))[1] == "github.non_utf8"


def test_samples_end_to_end_with_global_dedup(tmp_path):
    paths = write_samples(tmp_path, n_docs=24, seed=0)
    source = pickle.loads(pickle.dumps(GitHubSource(GitHubConfig())))
    assert source.list_inputs(tmp_path) == sorted(paths)
    docs, report = run(source, source.list_inputs(tmp_path))
    assert dict(report.dropped_docs) == {
        reason: 2
        for reason in (
            "github.license",
            "github.extension",
            "github.max_line_length",
            "github.avg_line_length",
            "github.alnum_fraction",
            "github.binary",
            "github.empty",
        )
    }
    assert dict(report.bad_input) == {"utf8": 1, "json": 1}
    assert report.kept_docs == len(docs) == 11
    final_report = FilterReport()
    final = list(source.global_filter(docs, final_report))
    assert dict(final_report.dropped_docs) == {"dedup.exact": 2}
    assert len(final) == 9 and not any("-copy" in doc.id for doc in final)
    first = final[0]
    assert first.id == f"{first.meta['repo_name']}/{first.meta['path']}"
    assert first.meta["license"] == "mit" and first.meta["header_removed_chars"] > 0
    assert "Copyright" not in first.text and first.text.startswith('"""Helpers')
    assert "dedup.exact" in first.meta["filters"]


def test_redpajama_record_form_and_dedup_off(tmp_path):
    rows = [
        {"text": CODE, "meta": {"repo_name": "a/b", "path": "x.py", "license": "mit"}},
        {"text": CODE, "meta": {"repo_name": "c/d", "path": "y.py", "license": "mit"}},
    ]
    path = tmp_path / "rp.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    source = GitHubSource(GitHubConfig(dedup=False))
    docs, report = run(source, [path])
    assert [doc.id for doc in docs] == ["a/b/x.py", "c/d/y.py"]
    assert len(list(source.global_filter(docs, FilterReport()))) == 2


def test_config_validation():
    with pytest.raises(ConfigError, match=r"\[sources.github\].licenses"):
        GitHubConfig(licenses=[])
    with pytest.raises(ConfigError, match="min_alnum_fraction"):
        config_from_table(GitHubConfig, {"min_alnum_fraction": 2}, "sources.github")
    assert GitHubConfig(licenses=["MIT"]).licenses == ["mit"]


def test_line_stats_use_redpajamas_formulas():
    stats = line_stats("ab\ncd\n")
    assert (stats.max_line_length, stats.avg_line_length) == (2, 3.0)
    assert stats.alnum_fraction == 4 / 6
    assert line_stats("").max_line_length == 0 and line_stats("").alnum_fraction == 0.0


def test_line_statistics_are_taken_after_the_banner_is_removed():
    source = GitHubSource(GitHubConfig())
    long_banner = "# Copyright 2020 Acme. " + "Licensed under the MIT License. " * 40 + "\n"
    assert len(long_banner) > 1000
    # The 1300-character licence line goes with the banner, so the code is judged alone.
    assert source.check(record(content=long_banner + CODE)) == (CODE, "", len(long_banner))
    # A letter-rich banner must not lift a file of symbols over the alphanumeric threshold.
    symbols = "+-*/ = ;\n" * 30
    wordy = "# Copyright 2021 Acme Corporation All Rights Reserved\n" * 20
    assert source.check(record(content=symbols))[1] == "github.alnum_fraction"
    assert source.check(record(content=wordy + symbols))[1] == "github.alnum_fraction"
    # Without banner removal the statistics cover the whole file, banner included.
    keep_banner = GitHubSource(GitHubConfig(remove_license_header=False))
    assert keep_banner.check(record(content=long_banner + CODE))[1] == "github.max_line_length"
