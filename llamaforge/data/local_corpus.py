"""A small corpus of real text that every fresh install already has on disk.

The demo must run with no network, so it cannot fetch any of the paper's
sources. Two kinds of files exist on every machine that has run ``make demo``'s
install, and together they look a little like the paper's mixture of prose
and code:

* the **package descriptions** (``*.dist-info/METADATA``) of the installed
  distributions: torch, numpy, matplotlib, sentencepiece ... ship their README
  there, i.e. English prose and Markdown;
* the **Python standard library sources** (``sysconfig``'s ``stdlib`` path):
  code with docstrings and comments, the "GitHub" share of our tiny mixture.

Files are read in sorted order so the corpus, and therefore the whole demo,
is the same on every run of the same install. Undecodable or empty files are
skipped.
"""

from __future__ import annotations

import site
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalDocument:
    source: str  # "package-docs" or "python-stdlib"
    path: str
    text: str


def _site_packages() -> list[Path]:
    candidates = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    candidates += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    seen: list[Path] = []
    for entry in candidates:
        path = Path(entry)
        if path.is_dir() and path not in seen:
            seen.append(path)
    return seen


def _metadata_files() -> list[Path]:
    files: set[Path] = set()
    for directory in _site_packages():
        files.update(directory.glob("*.dist-info/METADATA"))
    return sorted(files)


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files (tests, IDLE, lib2to3 and site-packages left out)."""
    return _stdlib_files()


def _stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    return sorted(p for p in stdlib.rglob("*.py") if not skip.intersection(p.parts))


def _read(path: Path, max_bytes: int) -> str | None:
    try:
        data = path.read_bytes()[:max_bytes]
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.strip() else None


def _metadata_body(text: str) -> str:
    """The long description after the e-mail style header block."""
    _, sep, body = text.partition("\n\n")
    return body if sep and body.strip() else text


def iter_local_documents(
    max_bytes: int = 8_000_000, max_file_bytes: int = 200_000, prose_share: float = 0.5
) -> Iterator[LocalDocument]:
    """Yield up to ``max_bytes`` of text, about ``prose_share`` of it package docs."""
    budgets = {"package-docs": int(max_bytes * prose_share)}
    budgets["python-stdlib"] = max_bytes - budgets["package-docs"]
    sources = {"package-docs": _metadata_files(), "python-stdlib": _stdlib_files()}
    for source, paths in sources.items():
        used = 0
        for path in paths:
            if used >= budgets[source]:
                break
            text = _read(path, max_file_bytes)
            if text is None:
                continue
            if source == "package-docs":
                text = _metadata_body(text)
            used += len(text.encode("utf-8"))
            yield LocalDocument(source=source, path=str(path), text=text)


def describe_sources() -> str:
    """One line for reports: where the demo's text came from."""
    return (
        f"Python {sys.version.split()[0]} standard library sources "
        f"({sysconfig.get_paths()['stdlib']}) and the METADATA descriptions of the "
        "installed packages (site-packages/*.dist-info)"
    )
