"""The contract between one pretraining source (paper §2.1) and the pipeline that runs it.

A source turns its raw dumps (WARC/WET, XML, LaTeX, ...) into filtered
:class:`Document` records. The pipeline (``llamaforge data build``) owns
everything around that: listing inputs, running files in parallel processes,
restartability, output shards, reports and the Table 1 mixture. Keeping the
split this way means a source is a plain, testable iterator over one input
file, and the pipeline never needs to know a format.

Two kinds of filtering exist:

* **per input file** (:meth:`Source.process`): parsing, heuristics,
  classifiers, and dedup whose scope is one shard (CCNet's line dedup hashes
  lines across one WET shard). Runs in parallel worker processes.
* **across the whole source** (:meth:`Source.global_filter`): exact or
  near-duplicate removal that must see every kept document (GitHub file
  dedup, book-level MinHash). Runs once, after all files, in one process.

Bad input is never fatal: a truncated archive, malformed XML, invalid UTF-8,
a binary file or a pathological line is recorded in the :class:`FilterReport`
with its reason and skipped; documents already yielded stay kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from llamaforge.errors import ConfigError

ConfigT = TypeVar("ConfigT")


@dataclass
class Document:
    """One kept document with its provenance.

    ``source`` is the Table 1 row (``commoncrawl``, ``c4``, ``github``,
    ``wikipedia``, ``books``, ``arxiv``, ``stackexchange``); ``id`` is what a
    user needs to find the original (URL, repository path, page title, post
    id). ``meta`` records provenance: the input file, the filters passed and
    any scores (language probability, perplexity bucket, classifier score).
    """

    text: str
    source: str
    id: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "id": self.id, "meta": self.meta}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Document:
        return cls(
            text=record["text"],
            source=record["source"],
            id=record["id"],
            meta=dict(record.get("meta") or {}),
        )


@dataclass
class FilterReport:
    """Documents and bytes kept and dropped, by reason; plus unreadable input.

    Reasons are short stable keys (``"lang"``, ``"c4.terminal_punct"``,
    ``"dedup.exact"``) so reports from parallel workers add up with
    :meth:`merge` and a user can see which filter removed what.
    """

    kept_docs: int = 0
    kept_bytes: int = 0
    dropped_docs: Counter = field(default_factory=Counter)
    dropped_bytes: Counter = field(default_factory=Counter)
    bad_input: Counter = field(default_factory=Counter)
    bad_input_examples: dict[str, str] = field(default_factory=dict)

    def keep(self, text: str) -> None:
        self.kept_docs += 1
        self.kept_bytes += len(text.encode("utf-8", "replace"))

    def drop(self, reason: str, text: str = "") -> None:
        self.dropped_docs[reason] += 1
        self.dropped_bytes[reason] += len(text.encode("utf-8", "replace"))

    def bad(self, reason: str, where: str) -> None:
        """Record unreadable input (``where``: file, and line/record if known)."""
        self.bad_input[reason] += 1
        self.bad_input_examples.setdefault(reason, where)

    def merge(self, other: FilterReport) -> None:
        self.kept_docs += other.kept_docs
        self.kept_bytes += other.kept_bytes
        self.dropped_docs.update(other.dropped_docs)
        self.dropped_bytes.update(other.dropped_bytes)
        self.bad_input.update(other.bad_input)
        for reason, where in other.bad_input_examples.items():
            self.bad_input_examples.setdefault(reason, where)

    def to_json(self) -> dict[str, Any]:
        return {
            "kept_docs": self.kept_docs,
            "kept_bytes": self.kept_bytes,
            "dropped_docs": dict(sorted(self.dropped_docs.items())),
            "dropped_bytes": dict(sorted(self.dropped_bytes.items())),
            "bad_input": dict(sorted(self.bad_input.items())),
            "bad_input_examples": dict(sorted(self.bad_input_examples.items())),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> FilterReport:
        return cls(
            kept_docs=record["kept_docs"],
            kept_bytes=record["kept_bytes"],
            dropped_docs=Counter(record["dropped_docs"]),
            dropped_bytes=Counter(record["dropped_bytes"]),
            bad_input=Counter(record["bad_input"]),
            bad_input_examples=dict(record.get("bad_input_examples", {})),
        )


class Source(Protocol):
    """What the pipeline needs from a source; each source module implements it.

    A source is built from its config dataclass (the ``[sources.NAME]`` table
    of the data TOML) and must be picklable, since worker processes receive it.
    """

    name: ClassVar[str]

    def list_inputs(self, root: Path) -> list[Path]:
        """Input files under ``root`` in sorted order: the units of parallel work."""
        ...

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        """Read one input file, filter it, yield kept documents; count every drop in ``report``."""
        ...

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """Source-wide dedup over every kept document; sources without one pass ``docs`` through."""
        ...


def config_from_table(cls: type[ConfigT], table: dict[str, Any], section: str) -> ConfigT:
    """Build a source's config dataclass from its TOML table, naming bad fields.

    Unknown keys are errors rather than ignored, so a typo such as
    ``min_word`` for ``min_words`` cannot silently fall back to a default.
    Type and range checks belong in the dataclass's ``__post_init__``
    (raise :class:`ConfigError` naming ``[section].field``).
    """
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"[{section}]: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**table)
    except TypeError as error:  # a required field is missing
        raise ConfigError(f"[{section}]: {error}") from error
