"""Small, realistic raw dumps in each source's real format, written on demand.

They let a newcomer try ``llamaforge data build`` without downloading
terabytes, and give the tests and ``benchmarks/data_throughput.py`` inputs
with known good documents, documents each filter must drop, and bad input.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` via a sibling temp file and ``os.replace``.

    A sample folder interrupted mid-write must never hold a truncated dump that the
    pipeline would then read as deliberately broken input.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def gzip_json_lines(records: list[dict]) -> bytes:
    """``records`` as gzip-compressed JSON lines, byte-identical on every run (mtime 0)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        for record in records:
            stream.write((json.dumps(record) + "\n").encode("utf-8"))
    return buffer.getvalue()
