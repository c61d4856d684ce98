"""A small instruction set built offline from Python source files (the demo's second act).

Every machine that runs llamaforge has the standard library's sources, and
their functions come with a human-written summary: the docstring's first line.
That gives instruction/response pairs without any download. Two directions,
one per function (chosen by a seeded coin, so no function's source is a
response in one pair and an input in another):

* **write**: instruction ``Write a Python function `name(args)`: <summary>``,
  response = the function's source with its docstring removed;
* **explain**: instruction ``Explain what this Python function does.``, input
  = the same source without docstring, response = the summary line.

The docstring is always cut out of the source, or "explain" would be copying.
Functions are parsed with :mod:`ast` (the files are read, never imported or
run); a function is kept when its summary is a plain sentence (3 to 16 words,
ending in a full stop) and its source without docstring is 2 to 12 lines and
at most ``max_source_chars`` characters, so prompt and response fit a 256-token
context of the demo's tokenizer. Files that are not UTF-8 or do not parse are
skipped. Records are in the Alpaca schema (``instruction``, ``input``,
``output``), so the finetuning reader (:mod:`llamaforge.finetune.data`) is the
one that reads them back.
"""

from __future__ import annotations

import ast
import json
import os
import random
import textwrap
from collections.abc import Iterable
from pathlib import Path

EXPLAIN = "Explain what this Python function does."


def _summary(node: ast.FunctionDef) -> str | None:
    doc = ast.get_docstring(node, clean=True)
    if not doc:
        return None
    first = doc.strip().splitlines()[0].strip()
    words = first.split()
    if not 3 <= len(words) <= 16 or not first.endswith(".") or first.endswith(".."):
        return None
    if any(c in first for c in "`>:{}") or not first[0].isupper():
        return None  # doctest lines, reST roles and fragments read badly as an instruction
    return first


def _source_without_docstring(lines: list[str], node: ast.FunctionDef) -> str:
    doc = node.body[0]
    kept = lines[node.lineno - 1 : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    return textwrap.dedent("".join(kept)).rstrip() + "\n"


def _signature(node: ast.FunctionDef) -> str:
    return f"{node.name}({ast.unparse(node.args)})"


def functions_in(path: Path, max_source_chars: int = 400) -> list[tuple[str, str, str]]:
    """(signature, summary, source without docstring) of each suitable function in ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return []
    lines = text.splitlines(keepends=True)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("__"):
            continue
        summary = _summary(node)
        if summary is None or len(node.body) < 2:
            continue
        source = _source_without_docstring(lines, node)
        n_lines = source.count("\n")
        if not 2 <= n_lines <= 12 or len(source) > max_source_chars or '"""' in source:
            continue
        out.append((_signature(node), summary, source))
    return out


def build_pairs(files: Iterable[str | os.PathLike], max_pairs: int, seed: int = 0) -> list[dict]:
    """Up to ``max_pairs`` Alpaca records from ``files``, one per function, shuffled (seeded)."""
    found: dict[str, tuple[str, str, str]] = {}
    for file in sorted(map(str, files)):
        for signature, summary, source in functions_in(Path(file)):
            found.setdefault(source, (signature, summary, source))  # one pair per distinct body
    rng = random.Random(seed)
    functions = list(found.values())
    rng.shuffle(functions)
    records = []
    for signature, summary, source in functions[:max_pairs]:
        if rng.random() < 0.5:
            instruction = f"Write a Python function `{signature}`: {summary}"
            records.append({"instruction": instruction, "input": "", "output": source.rstrip()})
        else:
            records.append({"instruction": EXPLAIN, "input": source.rstrip(), "output": summary})
    return records


def write_jsonl(records: list[dict], path: str | os.PathLike) -> Path:
    """Write ``records`` as JSON-lines atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    os.replace(tmp, path)
    return path
