"""Books (paper §2.1, 4.5 % of the mixture): Project Gutenberg and Books3, one book per file.

Inputs are plain-text files (``.txt``, optionally ``.txt.gz``/``.bz2``/``.xz``/``.zst``),
searched recursively; the document id is the file name without ``.txt`` (``pg1342``,
``The Hobbit.epub``). Project Gutenberg's licence header and footer are cut at the
``*** START OF THE/THIS PROJECT GUTENBERG EBOOK ... ***`` and ``*** END OF ...`` markers (the
older ``*END*THE SMALL PRINT!`` and ``End of the Project Gutenberg EBook`` forms too); a file
without markers (Books3) is kept whole. A book left with no text is dropped as ``books.empty``.

Book-level near-duplicate removal (the paper: "removing books with more than 90 % content
overlap") runs in :meth:`BooksSource.global_filter`: MinHash over word ``shingle_words``-grams
(5, as in RedPajama's and the Pile's book dedup) with ``num_perm`` permutations (128), LSH
candidates verified with the MinHash Jaccard estimate; a book whose estimate exceeds
``dedup_threshold`` with a book already kept is dropped as ``dedup.near_duplicate``. The
first book in the order the pipeline passes them (sorted input order) wins. Dropped books are
not yielded, so which book each duplicated is logged and kept in
:attr:`BooksSource.near_duplicates` (id, duplicate_of, jaccard).

Bad input, skipping the whole book: ``empty`` (no bytes or only blanks), ``binary``,
``utf8`` (Gutenberg's UTF-8 files only: convert legacy encodings first), ``line_too_long``,
``too_large`` (over ``max_book_bytes`` decompressed, default 64 MiB: the longest books are
a few MB, and a compressed bomb must not be held whole) and ``truncated`` compressed files.
Line ends (``\\r\\n``, and a bare ``\\r`` in old Mac files) are normalised to ``\\n`` and a
BOM removed. A file that starts with a UTF-16 byte-order mark is decoded as UTF-16
(``utf16`` when that fails) rather than rejected as ``binary`` for its NUL bytes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.textio import (
    COMPRESSED_SUFFIXES,
    STREAM_ERRORS,
    BadInput,
    decode_utf8,
    iter_lines,
    looks_binary,
    open_binary,
    strip_compression_suffix,
)
from llamaforge.errors import ConfigError

if TYPE_CHECKING:
    from llamaforge.data.sources.minhash_dedup import Duplicate

logger = logging.getLogger(__name__)

_START = re.compile(
    r"^\s*(?:\*{3}\s*START OF (?:THE |THIS )?PROJECT GUTENBERG E-?BOOK|\*END\*THE SMALL PRINT)",
    re.IGNORECASE | re.MULTILINE,
)
_END = re.compile(
    r"^\s*(?:\*{3}\s*END OF (?:THE |THIS )?PROJECT GUTENBERG E-?BOOK"
    r"|End of (?:the )?Project Gutenberg(?:'s)?\b)",
    re.IGNORECASE | re.MULTILINE,
)
_BLANK_RUNS = re.compile(r"\n{3,}")
_BINARY_SNIFF_BYTES = 8192
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass
class BooksConfig:
    """``[sources.books]``: the near-duplicate threshold and its MinHash settings."""

    dedup_threshold: float = 0.9
    shingle_words: int = 5
    num_perm: int = 128
    max_line_bytes: int = 1 << 20
    max_book_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if not isinstance(self.dedup_threshold, int | float) or not 0 < self.dedup_threshold < 1:
            raise ConfigError(
                "[sources.books].dedup_threshold must be a Jaccard similarity strictly between "
                f"0 and 1 (the paper: 0.9), got {self.dedup_threshold!r}"
            )
        for name in ("shingle_words", "num_perm", "max_line_bytes", "max_book_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"[sources.books].{name} must be a positive integer, got {value!r}"
                )
        if self.num_perm < 16:
            raise ConfigError(
                f"[sources.books].num_perm={self.num_perm} is too few permutations for a "
                "reliable Jaccard estimate; use at least 16 (default 128)"
            )


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """The book between Project Gutenberg's start and end markers, and whether any were found."""
    start = _START.search(text)
    body_start = 0
    if start is not None:
        line_end = text.find("\n", start.end())
        body_start = len(text) if line_end < 0 else line_end + 1
        if "***" not in text[start.end() : line_end if line_end >= 0 else len(text)]:
            # The marker's title wrapped onto the next line(s): skip to the closing "***".
            closing = text.find("***", body_start, body_start + 1000)
            if closing >= 0:
                next_line = text.find("\n", closing)
                body_start = len(text) if next_line < 0 else next_line + 1
    end = _END.search(text, body_start)
    body_end = end.start() if end is not None else len(text)
    return text[body_start:body_end], start is not None or end is not None


def book_id(path: Path) -> str:
    name = strip_compression_suffix(path.name)
    return name[: -len(".txt")] if name.lower().endswith(".txt") else name


class BooksSource:
    """One document per book file, Gutenberg boilerplate removed, near-duplicates dropped."""

    name: ClassVar[str] = "books"

    def __init__(self, config: BooksConfig) -> None:
        self.config = config
        self.near_duplicates: list[Duplicate] = []

    def list_inputs(self, root: Path) -> list[Path]:
        suffixes = tuple(".txt" + s for s in ("", *COMPRESSED_SUFFIXES))
        return sorted(
            p for p in Path(root).rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)
        )

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        try:
            text = self._read(path)
        except BadInput as error:
            report.bad(error.reason, error.where)
            return
        body, had_markers = strip_gutenberg(text)
        body = _BLANK_RUNS.sub("\n\n", body).strip()
        if not body:
            report.drop("books.empty", text)
            return
        report.keep(body)
        filters = ["books.gutenberg_boilerplate"] if had_markers else []
        meta = {"file": str(path), "gutenberg": had_markers, "filters": filters}
        yield Document(text=body, source=self.name, id=book_id(path), meta=meta)

    def _read(self, path: Path) -> str:
        """The whole book as text, or :class:`BadInput` naming why it cannot be used."""
        where = str(path)
        try:
            with open_binary(path) as stream:
                head = stream.read(_BINARY_SNIFF_BYTES)
        except (EOFError, OSError, ValueError) as error:
            raise BadInput("truncated", f"{where}: {type(error).__name__}") from error
        if not head.strip():
            raise BadInput("empty", where)
        if head.startswith(_UTF16_BOMS):
            try:
                text = self._read_all(path, where).decode("utf-16")
            except UnicodeDecodeError:
                raise BadInput("utf16", where) from None
            return self._finish(text, where)
        if looks_binary(head):
            raise BadInput("binary", where)
        if b"\r" in head and b"\n" not in head:  # old Mac line ends: one "line" to iter_lines
            text = decode_utf8(self._read_all(path, where))
            if text is None:
                raise BadInput("utf8", where)
            if max(map(len, text.split("\r"))) > self.config.max_line_bytes:
                raise BadInput("line_too_long", where)
            return self._finish(text, where)
        lines = []
        total = 0
        with open_binary(path) as stream:
            for number, line in enumerate(iter_lines(stream, where, self.config.max_line_bytes)):
                if isinstance(line, BadInput):  # "truncated (EOFError)" -> "truncated"
                    raise BadInput(line.reason.split(" ")[0], line.where)
                total += len(line) + 1
                if total > self.config.max_book_bytes:
                    raise BadInput("too_large", f"{where}: over {self.config.max_book_bytes} bytes")
                decoded = decode_utf8(line)
                if decoded is None:
                    raise BadInput("utf8", f"{where}:{number + 1}")
                lines.append(decoded)
        return self._finish("\n".join(lines), where)

    def _read_all(self, path: Path, where: str) -> bytes:
        """The decompressed file, read in chunks so a bomb stops at ``max_book_bytes``."""
        limit = self.config.max_book_bytes
        chunks: list[bytes] = []
        total = 0
        try:
            with open_binary(path) as stream:
                while chunk := stream.read(1 << 20):
                    total += len(chunk)
                    if total > limit:
                        raise BadInput("too_large", f"{where}: over {limit} bytes")
                    chunks.append(chunk)
        except STREAM_ERRORS as error:
            raise BadInput("truncated", f"{where}: {type(error).__name__}") from error
        return b"".join(chunks)

    @staticmethod
    def _finish(text: str, where: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
        if not text.strip():
            raise BadInput("empty", where)
        return text

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """Drop books with more than ``dedup_threshold`` estimated overlap with a kept book."""
        from llamaforge.data.sources.minhash_dedup import NearDuplicateIndex  # imports scipy: slow

        index = NearDuplicateIndex(
            self.config.dedup_threshold, self.config.num_perm, self.config.shingle_words
        )
        self.near_duplicates = []
        used: set[str] = set()
        for doc in docs:
            # Two files may share a name in different folders (and a third may be named
            # "x#2"); LSH keys must be unique, so count up until the key is free.
            key, n = doc.id, 1
            while key in used:
                n += 1
                key = f"{doc.id}#{n}"
            used.add(key)
            duplicate = index.check_and_add(key, doc.text)
            if duplicate is not None:
                self.near_duplicates.append(duplicate)
                logger.info(
                    "books: %s dropped, near-duplicate of %s (Jaccard ~ %.3f)",
                    key,
                    duplicate.duplicate_of,
                    duplicate.jaccard,
                )
                report.drop("dedup.near_duplicate", doc.text)
                continue
            doc.meta["filters"] = [*doc.meta.get("filters", []), "dedup.near_duplicate"]
            yield doc
