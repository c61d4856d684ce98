"""GitHub (paper Table 1, 4.5 %): BigQuery's public GitHub dataset, permissive licences only.

Inputs are JSON lines (``.jsonl``/``.json``, optionally ``.gz``/``.zst``)
exported from ``bigquery-public-data.github_repos`` with one record per file:
``repo_name``, ``path``, ``content``, ``license`` (licence keys as in the
``licenses`` table: ``mit``, ``apache-2.0``, ``bsd-3-clause``, ...), and
optionally ``binary``. Records in RedPajama's processed form (``text`` plus a
``meta`` object holding those fields) are read too.

Per record, in order (drop reason in brackets): licence not in ``licenses``
(``github.license``); file name not in the extension whitelist
(``github.extension``; ``extensions = []`` disables it); no content or binary
content (``github.binary``: a NUL anywhere -- no source file holds one, and git's 8 KB
sniff would let a text header hide a binary tail -- or a first 8 KB of control bytes);
content that was not valid UTF-8 -- lone surrogates or U+FFFD replacement characters left
by a lossy decode
(``github.non_utf8``); then the licence banner is removed (see
:mod:`github_rules`) and a file left empty is dropped (``github.empty``);
then RedPajama's line heuristics on what is left (RedPajama's order: banner
removal, then statistics): longest line over ``max_line_length``
(``github.max_line_length``), mean line length over ``max_avg_line_length``
(``github.avg_line_length``), alphanumeric fraction below
``min_alnum_fraction`` (``github.alnum_fraction``).

Exact dedup runs source-wide in :meth:`GitHubSource.global_filter` on a
128-bit BLAKE2 hash of the kept text (after banner removal, so copies that
differ only in their banner collapse), keeping the first copy in input order
(``dedup.exact``); memory is ~100 bytes per distinct file. ``id`` is
``repo_name/path``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llamaforge.data.sources import github_rules
from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.textio import (
    iter_json_records,
    looks_binary,
)
from llamaforge.errors import ConfigError

INPUT_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst")
PERMISSIVE_LICENSES = ("apache-2.0", "bsd-2-clause", "bsd-3-clause", "mit")


@dataclass
class GitHubConfig:
    """``[sources.github]``: licence list and RedPajama's file heuristics."""

    licenses: list[str] = field(default_factory=lambda: list(PERMISSIVE_LICENSES))
    extensions: list[str] = field(default_factory=lambda: list(github_rules.DEFAULT_EXTENSIONS))
    max_line_length: int = 1000
    max_avg_line_length: float = 100.0
    min_alnum_fraction: float = 0.25
    remove_license_header: bool = True
    dedup: bool = True
    max_record_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        for name in ("licenses", "extensions"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"[sources.github].{name} must be a list of strings")
            setattr(self, name, [v.lower() for v in value])
        if not self.licenses:
            raise ConfigError("[sources.github].licenses is empty: nothing would be kept")
        for name in ("max_line_length", "max_record_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"[sources.github].{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.max_avg_line_length, int | float) or self.max_avg_line_length <= 0:
            raise ConfigError("[sources.github].max_avg_line_length must be a number > 0")
        if not isinstance(self.min_alnum_fraction, int | float) or not (
            0.0 <= self.min_alnum_fraction <= 1.0
        ):
            raise ConfigError("[sources.github].min_alnum_fraction must be in [0, 1]")


def _field(record: dict[str, Any], name: str) -> Any:
    """A BigQuery field, at the top level or inside RedPajama's ``meta`` object."""
    if name in record:
        return record[name]
    meta = record.get("meta")
    return meta.get(name) if isinstance(meta, dict) else None


def content_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class GitHubSource:
    """BigQuery GitHub JSON lines -> permissively licensed, filtered, banner-free files."""

    name: ClassVar[str] = "github"

    def __init__(self, config: GitHubConfig) -> None:
        self.config = config
        self._licenses = frozenset(config.licenses)
        self._extensions = frozenset(config.extensions)

    def list_inputs(self, root: Path) -> list[Path]:
        root = Path(root)
        if root.is_file():
            return [root]
        return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(INPUT_SUFFIXES))

    def check(self, record: dict[str, Any]) -> tuple[str | None, str, int]:
        """One record -> ``(kept_text, "", banner_chars)`` or ``(None, "github.<rule>", 0)``."""
        config = self.config
        license_key = _field(record, "license")
        if not isinstance(license_key, str) or license_key.lower() not in self._licenses:
            return None, "github.license", 0
        path = _field(record, "path")
        if self._extensions and not github_rules.extension_allowed(
            str(path or ""), self._extensions
        ):
            return None, "github.extension", 0
        content = record.get("content", record.get("text"))
        if not isinstance(content, str) or _field(record, "binary") is True:
            return None, "github.binary", 0
        try:
            sample = content[:8192].encode("utf-8")
            content.encode("utf-8")
        except UnicodeEncodeError:
            return None, "github.non_utf8", 0
        if looks_binary(sample) or "\x00" in content:
            return None, "github.binary", 0
        if "\ufffd" in content:
            return None, "github.non_utf8", 0
        removed = 0
        if config.remove_license_header:
            content, removed = github_rules.strip_license_header(content)
        if not content.strip():
            return None, "github.empty", 0
        # On the text that is kept, as RedPajama's github_clean_dedup_local.py does: a long
        # licence line must not drop a file whose code is fine, nor a banner rich in letters
        # rescue a file of symbols.
        stats = github_rules.line_stats(content)
        if stats.max_line_length > config.max_line_length:
            return None, "github.max_line_length", 0
        if stats.avg_line_length > config.max_avg_line_length:
            return None, "github.avg_line_length", 0
        if stats.alnum_fraction < config.min_alnum_fraction:
            return None, "github.alnum_fraction", 0
        return content, "", removed

    def _records(self, path: Path, report: FilterReport) -> Iterator[tuple[int, dict]]:
        return iter_json_records(path, report, self.config.max_record_bytes)

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        path = Path(path)
        filters = ["github.license", "github.heuristics"]
        if self._extensions:
            filters.insert(1, "github.extension")
        if self.config.remove_license_header:
            filters.append("github.header")
        for lineno, record in self._records(path, report):
            text, reason, banner_chars = self.check(record)
            if text is None:
                original = record.get("content", record.get("text"))
                report.drop(reason, original if isinstance(original, str) else "")
                continue
            report.keep(text)
            repo, file_path = _field(record, "repo_name"), _field(record, "path")
            doc_id = f"{repo}/{file_path}" if repo and file_path else f"{path.name}:{lineno}"
            meta = {
                "input": path.name,
                "line": lineno,
                "repo_name": repo,
                "path": file_path,
                "license": str(_field(record, "license")).lower(),
                "content_hash": content_hash(text),
                "header_removed_chars": banner_chars,
                "filters": filters,
            }
            yield Document(text, self.name, doc_id, meta)

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """Exact file-level dedup across the source: the first copy (input order) is kept."""
        if not self.config.dedup:
            yield from docs
            return
        seen: set[bytes] = set()
        for doc in docs:
            digest = bytes.fromhex(doc.meta.get("content_hash") or content_hash(doc.text))
            if digest in seen:
                report.drop("dedup.exact", doc.text)
                continue
            seen.add(digest)
            doc.meta["filters"] = [*doc.meta.get("filters", []), "dedup.exact"]
            yield doc
