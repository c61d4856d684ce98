"""Documents from JSONL (plain, .gz, .zst) and text files, for tokenization.

A folder is searched recursively in sorted order so the document order, and
hence the token stream, is reproducible. A ``.txt`` file is one document; a
JSONL line is one document (its ``"text"`` field).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llamaforge.data.sources.textio import BadInput, iter_lines
from llamaforge.errors import DataError

# Longest JSONL line read: a whole book is one line, so leave room for very long books; a
# hostile 6 GB line is refused without ever being held in memory.
MAX_LINE_BYTES = 64 << 20
# Largest .txt file read as one document: it is held whole (and tokenized whole), so a
# 5 GB file would end in a MemoryError. Four times a JSONL line's limit: a .txt is a whole
# book or article; anything larger is not one document and should be split.
MAX_TXT_BYTES = 4 * MAX_LINE_BYTES


def read_documents(
    paths: str | Path | Iterable[str | Path],
    *,
    errors: str = "raise",
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[str]:
    """Yield documents from ``.jsonl`` (``{"text": ...}`` per line; ``.gz``/``.zst`` too) and ``.txt``.

    A ``.txt`` file is one document. Directories are searched recursively, in
    sorted order, so the stream (and the shards) are reproducible. A bad JSONL
    line (invalid JSON, invalid UTF-8, no string ``"text"``) raises a
    :class:`DataError` naming file and line by default: our own pipeline wrote
    these files, so a bad line means corruption and silently changing the
    mixture would be worse. ``errors="skip"`` skips such lines and warns once
    per file with the count, for messy third-party dumps; it also skips (with
    a warning) a ``.txt`` file that is not UTF-8. Blank lines are ignored. A line longer
    than ``max_line_bytes`` is a bad line too, found without holding it in memory; so is a
    ``.txt`` file over :data:`MAX_TXT_BYTES` (at most that much of it is ever read).
    """
    if errors not in ("raise", "skip"):
        raise DataError(f"errors must be 'raise' or 'skip', got {errors!r}")
    if (
        isinstance(max_line_bytes, bool)
        or not isinstance(max_line_bytes, int)
        or max_line_bytes < 1
    ):
        raise DataError(f"max_line_bytes must be a positive integer, got {max_line_bytes!r}")
    for path in _expand(paths):
        if path.name.endswith(".txt"):
            with open(path, "rb") as f:
                data = f.read(MAX_TXT_BYTES + 1)
            if len(data) > MAX_TXT_BYTES:
                message = (
                    f"{path} is larger than {MAX_TXT_BYTES:,} bytes, too large for one "
                    "document (a .txt file is one document); split it into smaller files"
                )
                if errors == "raise":
                    raise DataError(message + " or skip it (tokenize --skip-bad-lines)")
                warnings.warn(f"{path}: skipped ({message})", stacklevel=2)
                continue
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as error:
                if errors == "raise":
                    raise DataError(
                        f"{path} is not UTF-8 text ({error}); convert it to UTF-8 or skip "
                        "bad inputs (tokenize --skip-bad-lines; errors='skip' in Python)"
                    ) from error
                warnings.warn(f"{path}: skipped (not UTF-8 text: {error})", stacklevel=2)
        else:
            yield from _read_jsonl(path, errors, max_line_bytes)


_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".txt")


def list_input_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The files :func:`read_documents` would read, in its order; a missing path is an error.

    Listed up front so a command fails on a wrong path before doing anything,
    and so it can record what its output was made from. A folder holding no
    input file is an error too: it is almost always a wrong path.
    """
    files: list[Path] = []
    for entry in [paths] if isinstance(paths, str | os.PathLike) else paths:
        found = list(_expand([entry]))
        if not found:
            raise DataError(f"{entry} holds no input files ({', '.join(_SUFFIXES)})")
        files.extend(found)
    return files


def _expand(paths: str | Path | Iterable[str | Path]) -> Iterator[Path]:
    for entry in [paths] if isinstance(paths, str | os.PathLike) else paths:
        path = Path(entry)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.name.endswith(_SUFFIXES))
        elif not path.is_file():
            raise DataError(f"{path} does not exist")
        elif not path.name.endswith(_SUFFIXES):
            raise DataError(f"{path}: unsupported file type; use one of {', '.join(_SUFFIXES)}")
        else:
            yield path


def _open_binary(path: Path) -> Any:
    if path.name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        try:
            from llamaforge.data.sources.zstdio import open_zstd
        except ImportError as error:  # zstdio imports zstandard
            raise DataError(f"{path}: reading .zst needs `pip install zstandard`") from error

        return open_zstd(path)  # EOFError at a cut-short end, which _read_jsonl refuses
    return open(path, "rb")


def _read_jsonl(path: Path, errors: str, max_line_bytes: int) -> Iterator[str]:
    """The ``"text"`` of each line, read by :func:`iter_lines` so memory stays bounded.

    A line over ``max_line_bytes`` is never held whole: it is a bad line like invalid JSON
    (a DataError, or skipped and counted with ``errors="skip"``). A compressed file that is
    damaged or cut short is always a DataError: the lines after the fault are lost, so
    skipping it would silently change the mixture.
    """
    skipped, first = 0, 0
    with _open_binary(path) as f:
        for lineno, raw in enumerate(iter_lines(f, str(path), max_line_bytes), start=1):
            if isinstance(raw, BadInput) and raw.reason != "line_too_long":
                raise DataError(
                    f"{raw.where}: the file is damaged or truncated ({raw.reason}); "
                    "download or write it again"
                )
            if not isinstance(raw, BadInput) and not raw.strip():
                continue
            try:
                if isinstance(raw, BadInput):
                    raise ValueError(
                        f"longer than {max_line_bytes} bytes; split the document, or raise "
                        "max_line_bytes (read_documents) if it is real"
                    )
                try:
                    record = json.loads(raw.decode("utf-8"))
                except RecursionError:
                    raise ValueError("nested too deeply") from None
                text = record.get("text") if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise ValueError('no string "text" field')
                text.encode("utf-8")  # a "\ud800" escape: valid JSON, not text
            except ValueError as error:  # JSONDecodeError, Unicode{De,En}codeError too
                if errors == "raise":
                    raise DataError(
                        f"{path}:{lineno}: bad JSONL line ({error}); fix it or skip "
                        "bad lines (tokenize --skip-bad-lines; errors='skip' in Python)"
                    ) from error
                skipped, first = skipped + 1, first or lineno
                continue
            yield text
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} bad lines (first: line {first})", stacklevel=2)
