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

``doc_bytes`` (0 by default: files of a few hundred bytes, which the tests are
written against) grows every Python, Go and C file with more functions to about
that size; :data:`TYPICAL_DOC_BYTES` is the average of a kept source file in
RedPajama's GitHub subset, for throughput figures.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from llamaforge.data.samples import gzip_json_lines, write_atomic

ROLES = (
    "python_mit", "gpl", "go_apache", "lockfile", "minified", "c_bsd",
    "wide", "ascii_art", "binary", "banner_only", "copy", "python_mit",
)  # fmt: skip

# Average kept file in RedPajama's GitHub subset (~3-8 KB by language); we take 5 KB.
TYPICAL_DOC_BYTES = 5000

NAMES = ["parse", "render", "load", "merge", "split", "count", "scale", "route", "index", "fetch"]


def python_body(rng: random.Random, doc_bytes: int = 0) -> str:
    name = rng.choice(NAMES)
    body = (
        f'"""Helpers to {name} records."""\n\nimport os\n\n\n'
        f"def {name}_items(items, limit={rng.randint(2, 99999)}):\n"
        f'    """Return the first items after {name}."""\n'
        "    result = []\n"
        "    for item in items[:limit]:\n"
        "        result.append(str(item).strip())\n"
        "    return result\n"
    )
    return _grow(rng, body, doc_bytes, _python_function)


def _python_function(rng: random.Random, index: int) -> str:
    verb, noun = rng.choice(NAMES), rng.choice(("rows", "paths", "tokens", "users", "events"))
    return (
        f"\n\ndef {verb}_{noun}_{index}(source, threshold={rng.randint(1, 999)}, strict=False):\n"
        f'    """{verb.capitalize()} the {noun} of ``source`` above ``threshold``."""\n'
        "    selected = {}\n"
        "    for key, value in sorted(source.items()):\n"
        "        if value is None and strict:\n"
        f'            raise ValueError(f"{{key}}: missing {noun[:-1]}")\n'
        "        if value is not None and len(str(value)) > threshold:\n"
        f"            selected[key] = os.path.join(str(key), str(value))  # {verb} {index}\n"
        "    return selected\n"
    )


def _go_function(rng: random.Random, index: int) -> str:
    name = rng.choice(NAMES).capitalize()
    return (
        f"\n// {name}{index} returns the entries whose weight is above the limit.\n"
        f"func {name}{index}(entries map[string]int) []string {{\n"
        "\tvar out []string\n"
        "\tfor key, weight := range entries {\n"
        f"\t\tif weight > {rng.randint(1, 10**4)} {{\n"
        '\t\t\tout = append(out, fmt.Sprintf("%s=%d", key, weight))\n'
        "\t\t}\n\t}\n\treturn out\n}\n"
    )


def _c_function(rng: random.Random, index: int) -> str:
    name = rng.choice(NAMES)
    return (
        f"\n/* {name}_{index}: sum of the values below the limit. */\n"
        f"static long {name}_{index}(const int *values, size_t count)\n{{\n"
        "    long total = 0;\n"
        "    for (size_t i = 0; i < count; i++) {\n"
        f"        if (values[i] < {rng.randint(1, 10**6)})\n"
        "            total += values[i];\n"
        "    }\n    return total;\n}\n"
    )


def _grow(rng: random.Random, body: str, doc_bytes: int, function) -> str:
    """``body`` followed by more ``function`` blocks up to ~``doc_bytes`` (0: unchanged)."""
    if not doc_bytes:
        return body
    target = doc_bytes * rng.uniform(0.5, 1.5)
    blocks = [body]
    size = len(body)
    while size < target:
        blocks.append(function(rng, len(blocks)))
        size += len(blocks[-1])
    return "".join(blocks)


def mit_banner(year: int) -> str:
    return (
        f"# Copyright (c) {year} The Sample Authors\n"
        "# Permission is hereby granted, free of charge, to any person obtaining a copy\n"
        "# of this software, to deal in the Software without restriction.\n\n"
    )


def content_for(rng: random.Random, role: str, doc_bytes: int = 0) -> tuple[str, str, str]:
    """``(path, license, content)`` for one role (code files grown to ~``doc_bytes``)."""
    if role == "python_mit":
        path = f"src/{rng.choice(NAMES)}.py"  # drawn before the body, as the tests expect
        return path, "mit", mit_banner(2020) + python_body(rng, doc_bytes)
    if role == "gpl":
        return "lib/util.py", "gpl-3.0", python_body(rng, doc_bytes)
    if role == "go_apache":
        n = rng.randint(1, 10**6)
        body = f'package main\n\nimport "fmt"\n\nfunc main() {{\n\tfmt.Println({n})\n}}\n'
        return "cmd/main.go", "apache-2.0", _grow(rng, body, doc_bytes, _go_function)
    if role == "c_bsd":
        banner = (
            "/*\n * Copyright 2018 Sample Project. All rights reserved.\n"
            " * Use of this source code is governed by a BSD-style license.\n */\n"
        )
        body = f"#include <stdio.h>\n\nint main(void) {{\n    return {rng.randint(0, 10**6)} % 256;\n}}\n"
        return "src/main.c", "bsd-3-clause", banner + _grow(rng, body, doc_bytes, _c_function)
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


def _records(rng: random.Random, n_docs: int, doc_bytes: int = 0) -> list[dict]:
    records: list[dict] = []
    first_python = None
    for index in range(n_docs):
        role = ROLES[index % len(ROLES)]
        if role == "copy" and first_python is not None:
            path, license_key = first_python[0], "mit"
            content = mit_banner(2023) + first_python[1]
        else:
            path, license_key, content = content_for(
                rng, "python_mit" if role == "copy" else role, doc_bytes
            )
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


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write the sample export(s) into ``directory`` (roles and ``doc_bytes`` in the docstring)."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    main = directory / "github-sample-00000.jsonl.gz"
    write_atomic(main, gzip_json_lines(_records(rng, n_docs, doc_bytes)))
    paths = [main]
    if n_docs >= 20:
        good = {
            "repo_name": "sample-org/extra",
            "path": "extra.py",
            "content": python_body(rng, doc_bytes),
            "license": "bsd-2-clause",
        }
        broken = json.dumps(good).encode("utf-8")
        data = broken + b"\n" + b'{"content": "caf\xe9"}\n' + broken[: len(broken) // 2] + b"\n"
        extra = directory / "github-sample-00001.jsonl"
        write_atomic(extra, data)
        paths.append(extra)
    return paths
