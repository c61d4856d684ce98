"""Small GitHub dumps as exported from BigQuery: ``github-sample-00000.jsonl.gz``.

One JSON record per file with ``repo_name``, ``path``, ``content``,
``license`` (keys of ``bigquery-public-data.github_repos.licenses``) and
``binary``. Record ``i`` plays the role ``ROLES[i % len(ROLES)]``:

* ``python_mit`` (with an MIT banner that is removed), ``go_apache``, ``c_bsd``
  (``/* */`` BSD banner): kept;
* ``gpl``: ``github.license``; ``lockfile`` (``package-lock.json``):
  ``github.extension``; ``minified`` (one 3000-char line):
  ``github.max_line_length``; ``wide`` (every line ~150 chars):
  ``github.avg_line_length``; ``ascii_art``: ``github.alnum_fraction``;
  ``binary`` (NUL bytes): ``github.binary``; ``banner_only``: ``github.empty``;
* ``copy``: the first ``python_mit`` file in another repository, with a
  different banner year: ``dedup.exact`` in the global filter.

With ``n_docs >= 20`` a second file ``github-sample-00001.jsonl`` holds one
good record, a line of invalid UTF-8 (``utf8``) and a cut-off record (``json``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
from pathlib import Path

ROLES = (
    "python_mit", "gpl", "go_apache", "lockfile", "minified", "c_bsd",
    "wide", "ascii_art", "binary", "banner_only", "copy", "python_mit",
)  # fmt: skip

NAMES = ["parse", "render", "load", "merge", "split", "count", "scale", "route", "index", "fetch"]


def python_body(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    return (
        f'"""Helpers to {name} records."""\n\nimport os\n\n\n'
        f"def {name}_items(items, limit={rng.randint(2, 99999)}):\n"
        f'    """Return the first items after {name}."""\n'
        "    result = []\n"
        "    for item in items[:limit]:\n"
        "        result.append(str(item).strip())\n"
        "    return result\n"
    )


def mit_banner(year: int) -> str:
    return (
        f"# Copyright (c) {year} The Sample Authors\n"
        "# Permission is hereby granted, free of charge, to any person obtaining a copy\n"
        "# of this software, to deal in the Software without restriction.\n\n"
    )


def content_for(rng: random.Random, role: str) -> tuple[str, str, str]:
    """``(path, license, content)`` for one role."""
    if role == "python_mit":
        return f"src/{rng.choice(NAMES)}.py", "mit", mit_banner(2020) + python_body(rng)
    if role == "gpl":
        return "lib/util.py", "gpl-3.0", python_body(rng)
    if role == "go_apache":
        n = rng.randint(1, 10**6)
        body = f'package main\n\nimport "fmt"\n\nfunc main() {{\n\tfmt.Println({n})\n}}\n'
        return "cmd/main.go", "apache-2.0", body
    if role == "c_bsd":
        banner = (
            "/*\n * Copyright 2018 Sample Project. All rights reserved.\n"
            " * Use of this source code is governed by a BSD-style license.\n */\n"
        )
        body = f"#include <stdio.h>\n\nint main(void) {{\n    return {rng.randint(0, 10**6)} % 256;\n}}\n"
        return "src/main.c", "bsd-3-clause", banner + body
    if role == "lockfile":
        return "package-lock.json", "mit", '{\n  "name": "sample",\n  "lockfileVersion": 2\n}\n'
    if role == "minified":
        return "dist/app.min.js", "mit", "var a=1;" * 375 + "\n"
    if role == "wide":
        line = "const value = " + " + ".join(["alpha_beta_gamma"] * 7) + ";"
        return "src/wide.js", "apache-2.0", "\n".join([line] * 20) + "\n"
    if role == "ascii_art":
        return "docs/diagram.md", "mit", "\n".join(["+----+----+", "|    |    |"] * 10) + "\n"
    if role == "binary":
        return "assets/blob.c", "mit", "\x00\x01\x02ELF\x00" * 20
    if role == "banner_only":
        return "src/__init__.py", "mit", mit_banner(2019)
    raise ValueError(role)


def _records(rng: random.Random, n_docs: int) -> list[dict]:
    records: list[dict] = []
    first_python = None
    for index in range(n_docs):
        role = ROLES[index % len(ROLES)]
        if role == "copy" and first_python is not None:
            path, license_key = first_python[0], "mit"
            content = mit_banner(2023) + first_python[1]
        else:
            path, license_key, content = content_for(rng, "python_mit" if role == "copy" else role)
            if role == "python_mit" and first_python is None:
                first_python = (path, content.split("\n\n", 1)[1])
        records.append(
            {
                "repo_name": f"sample-org/repo-{index:03d}-{role}",
                "path": path,
                "content": content,
                "license": license_key,
                "binary": False,
            }
        )
    return records


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_samples(directory: Path, n_docs: int = 20, seed: int = 0) -> list[Path]:
    """Write the sample export(s) into ``directory`` (roles in the module docstring)."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r).encode("utf-8") + b"\n" for r in _records(rng, n_docs)]
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        stream.writelines(lines)
    main = directory / "github-sample-00000.jsonl.gz"
    _write_atomic(main, buffer.getvalue())
    paths = [main]
    if n_docs >= 20:
        good = {
            "repo_name": "sample-org/extra",
            "path": "extra.py",
            "content": python_body(rng),
            "license": "bsd-2-clause",
        }
        broken = json.dumps(good).encode("utf-8")
        data = broken + b"\n" + b'{"content": "caf\xe9"}\n' + broken[: len(broken) // 2] + b"\n"
        extra = directory / "github-sample-00001.jsonl"
        _write_atomic(extra, data)
        paths.append(extra)
    return paths
