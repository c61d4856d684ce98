"""Wikipedia (paper §2.1, 4.5 % of the mixture): MediaWiki XML dumps of 20 languages.

Inputs are the dumps Wikimedia publishes, ``<lang>wiki-<date>-pages-articles*.xml.bz2``
(or the decompressed ``.xml``); the language comes from the file name, and files of languages
outside ``languages`` (the paper's 20 by default) are not listed. Each dump is stream-parsed
(an incremental ``XMLPullParser``, the parser behind ``iterparse``, fed from ``bz2.open``) and
every element is dropped from the tree once it ends (a page once its fields are read), so
memory stays flat on a 20 GB dump and on junk between or inside pages. Any ``export-0.x``
schema namespace is accepted.

Kept: namespace-0 pages (articles) that are not redirects, with markup removed by
:func:`~llamaforge.data.sources.wikitext.wikitext_to_text`. Dropped, by reason:

* ``wikipedia.namespace``: talk, user, template, category ... pages;
* ``wikipedia.redirect``: redirect pages (no text of their own);
* ``wikipedia.too_short``: pages with fewer than ``min_chars`` characters after markup
  removal (default 200: what is left of stubs, lists and disambiguation pages is mostly
  template output that was removed, and such fragments are not useful prose).

Multistream dumps (``...-pages-articles-multistream.xml.bz2`` with its
``...-multistream-index.txt.bz2`` beside it) can be split across workers: with
``streams_per_slice = N`` (0, the default, reads whole files) the file listing
has one input per run of ``N`` bz2 streams, ``<dump>@<start>-<end>``, and each is
read by seeking to its byte offset and decompressing only its streams
(:mod:`wikipedia_multistream`); ~100 pages a stream, so ``N = 1000`` gives
slices of ~100k pages. Dumps without an index are read whole.

A truncated bz2 stream counts as ``truncated`` (a ``.bz2`` of which no page can be read as
``not_bz2``, other undecodable bz2 data as ``corrupt``), malformed XML or elements nested more
than ``MAX_DEPTH`` deep as ``xml``; pages read before the fault stay kept. Top-level elements
other than ``<page>`` and ``<siteinfo>`` (a pages-articles dump has no others) are skipped and
counted once per file as ``unexpected_element``. Document ids are ``<lang>:<title>``, as a
reader would look the page up; ``meta`` keeps page id, revision id and language.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from llamaforge.data.sources import wikipedia_multistream as multistream
from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.textio import STREAM_ERRORS, is_truncation, open_binary
from llamaforge.data.sources.wikitext import wikitext_to_text
from llamaforge.errors import ConfigError

# The 20 languages of paper §2.1 (Latin and Cyrillic scripts).
PAPER_LANGUAGES = (
    "bg", "ca", "cs", "da", "de", "en", "es", "fr", "hr", "hu",
    "it", "nl", "pl", "pt", "ro", "ru", "sl", "sr", "sv", "uk",
)  # fmt: skip

DUMP_NAME = re.compile(r"^([a-z][a-z_-]*?)wiki-(\d{8}|latest)-pages-articles.*\.xml(\.bz2)?$")
_EXPORT_NS = re.compile(r"^\{http://www\.mediawiki\.org/xml/export-0\.\d+/\}")
_FILTERS = ["wikipedia.namespace", "wikipedia.redirect", "wikipedia.markup", "wikipedia.min_chars"]


@dataclass
class WikipediaConfig:
    """``[sources.wikipedia]``: which languages to read and the shortest page kept."""

    languages: list[str] = field(default_factory=lambda: list(PAPER_LANGUAGES))
    min_chars: int = 200
    streams_per_slice: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.languages, list | tuple) or not self.languages:
            raise ConfigError(
                "[sources.wikipedia].languages must be a non-empty list of language codes"
            )
        for lang in self.languages:
            if not isinstance(lang, str) or not re.fullmatch(r"[a-z][a-z_-]*", lang):
                raise ConfigError(
                    f"[sources.wikipedia].languages: {lang!r} is not a wiki language code "
                    "(e.g. 'en', 'de')"
                )
        self.languages = list(self.languages)
        if not isinstance(self.streams_per_slice, int) or self.streams_per_slice < 0:
            raise ConfigError(
                "[sources.wikipedia].streams_per_slice must be an integer >= 0 (0: whole "
                f"files), got {self.streams_per_slice!r}"
            )
        if not isinstance(self.min_chars, int) or self.min_chars < 0:
            raise ConfigError(
                f"[sources.wikipedia].min_chars must be an integer >= 0, got {self.min_chars!r}"
            )


def dump_language(path: Path) -> str | None:
    """``dewiki-20230301-pages-articles1.xml.bz2`` -> ``"de"``; None for other file names."""
    match = DUMP_NAME.match(path.name.split("@", 1)[0])
    return match.group(1) if match else None


class WikipediaSource:
    """Articles of the configured languages' dumps, markup removed."""

    name: ClassVar[str] = "wikipedia"

    def __init__(self, config: WikipediaConfig) -> None:
        self.config = config

    def list_inputs(self, root: Path) -> list[Path]:
        languages = set(self.config.languages)
        dumps = sorted(
            path
            for path in Path(root).rglob("*wiki-*")
            if path.is_file() and dump_language(path) in languages
        )
        if not self.config.streams_per_slice:
            return dumps
        inputs: list[Path] = []
        for dump in dumps:
            index = multistream.index_path(dump)
            if dump.name.endswith("-multistream.xml.bz2") and index.is_file():
                inputs += multistream.stream_slices(dump, self.config.streams_per_slice)
            else:
                inputs.append(dump)
        return inputs

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        language = dump_language(path) or "unknown"
        piece = multistream.MultistreamSlice(path).slice_range()
        pages = 0
        unexpected = _Unexpected()
        if path.stat().st_size == 0:
            report.bad("empty", str(path))
            return
        try:
            with contextlib.ExitStack() as stack:
                if piece is None:
                    stream = stack.enter_context(open_binary(path))
                else:
                    stream = _Chunks(multistream.slice_xml(*piece))
                for page in _iter_pages(stream, unexpected):
                    pages += 1
                    document = self._page_to_document(page, language, path, report)
                    if document is not None:
                        yield document
        except ET.ParseError as error:
            report.bad("xml", f"{path}: {error}")
        except _NotADump as error:
            report.bad("xml", f"{path}: {error}")
        except STREAM_ERRORS as error:
            reason = "truncated" if is_truncation(error) else "corrupt"
            if reason == "corrupt" and not pages and piece is None:
                reason = "not_bz2" if path.name.endswith(".bz2") else "unreadable"
            report.bad(reason, f"{path}: {type(error).__name__}: {error}")
        if unexpected.count:
            report.bad(
                "unexpected_element",
                f"{path}: {unexpected.count} top-level elements that are neither <page> nor "
                f"<siteinfo> (first: {unexpected.first[:200]!r}), skipped",
            )

    def _page_to_document(
        self, page: dict[str, str | None], language: str, path: Path, report: FilterReport
    ) -> Document | None:
        raw = page["text"] or ""
        if page["ns"] != "0":
            report.drop("wikipedia.namespace", raw)
            return None
        if page["redirect"] is not None:
            report.drop("wikipedia.redirect", raw)
            return None
        text = wikitext_to_text(raw)
        if len(text) < self.config.min_chars:
            report.drop("wikipedia.too_short", text)
            return None
        report.keep(text)
        meta = {
            "page_id": _as_int(page["id"]),
            "revision_id": _as_int(page["revision_id"]),
            "language": language,
            "title": page["title"],
            "file": path.name,
            "filters": list(_FILTERS),
        }
        return Document(text=text, source=self.name, id=f"{language}:{page['title']}", meta=meta)

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """Pages are unique by title within a dump; there is no cross-file dedup to do."""
        yield from docs


class _Chunks:
    """An iterator of byte chunks read as a stream (``read1``) by :func:`_iter_events`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def read1(self, size: int = -1) -> bytes:
        for chunk in self.chunks:
            if chunk:
                return chunk
        return b""

    read = read1


class _NotADump(Exception):
    """The XML parses but is not a MediaWiki export."""


def _as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _iter_events(stream, chunk_bytes: int = 1 << 16) -> Iterator[tuple[str, ET.Element]]:
    """Parser events, fed with ``read1`` so that data decoded before a fault is parsed first.

    ``iterparse`` calls ``read(n)``, which on a truncated multistream bz2 raises before
    returning the streams it already decoded; ``read1`` hands them over as they come.
    """
    parser = ET.XMLPullParser(events=("start", "end"))
    read = getattr(stream, "read1", stream.read)
    while chunk := read(chunk_bytes):
        parser.feed(chunk)
        yield from parser.read_events()
    parser.close()
    yield from parser.read_events()


MAX_DEPTH = 32  # a real export nests 5 deep (mediawiki/page/revision/contributor/username)


@dataclass
class _Unexpected:  # top-level elements neither <page> nor <siteinfo>: how many, the first
    count: int = 0
    first: str = ""


def _iter_pages(stream, unexpected: _Unexpected | None = None) -> Iterator[dict[str, str | None]]:
    """Fields of each ``<page>``, dropping every element we will not read once it ends.

    Only the elements :func:`_page_fields` reads are kept, each only its first occurrence (what
    ``find`` returns anyway): every other finished element is removed from its parent,
    top-level ones included, so neither junk between pages nor junk inside one piles up.
    Top-level elements other than ``<page>`` and ``<siteinfo>`` are counted in
    ``unexpected``; nesting deeper than :data:`MAX_DEPTH` is not a MediaWiki export.
    """
    events = _iter_events(stream)
    _, root = next(events, ("", None))
    match = None if root is None else _EXPORT_NS.match(root.tag)
    if root is None or not match or not root.tag.endswith("}mediawiki"):
        found = "no element" if root is None else repr(root.tag)
        raise _NotADump(f"root element is {found}, not a MediaWiki export")
    ns = match.group(0)
    page_tag, siteinfo_tag = f"{ns}page", f"{ns}siteinfo"
    # (depth of the parent, its tag) -> the children read from it
    kept = {
        (2, page_tag): {ns + tag for tag in ("title", "ns", "id", "redirect", "revision")},
        (3, f"{ns}revision"): {f"{ns}id", f"{ns}text"},
    }
    stack = [root]
    for event, element in events:
        if event == "start":
            stack.append(element)
            if len(stack) > MAX_DEPTH:
                raise _NotADump(f"elements nested more than {MAX_DEPTH} deep")
            continue
        stack.pop()
        depth = len(stack)
        if depth > 1:
            parent = stack[-1]
            wanted = kept.get((depth, parent.tag))
            if (
                wanted is None
                or element.tag not in wanted
                or parent.find(element.tag) is not element
            ):
                parent.remove(element)
        elif depth == 1:  # a top-level element has ended: use it, then let it go
            if element.tag == page_tag:
                yield _page_fields(element, ns)
            elif element.tag != siteinfo_tag and unexpected is not None:
                unexpected.count += 1
                unexpected.first = unexpected.first or element.tag
            root.remove(element)


def _page_fields(page: ET.Element, namespace: str) -> dict[str, str | None]:
    revision = page.find(f"{namespace}revision")
    return {
        "title": page.findtext(f"{namespace}title"),
        "ns": (page.findtext(f"{namespace}ns") or "").strip(),
        "id": page.findtext(f"{namespace}id"),
        "redirect": None if page.find(f"{namespace}redirect") is None else "",
        "revision_id": None if revision is None else revision.findtext(f"{namespace}id"),
        "text": None if revision is None else revision.findtext(f"{namespace}text"),
    }
