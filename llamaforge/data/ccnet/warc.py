"""CommonCrawl archives -> (URL, record id, text): WET conversion records and WARC HTML responses.

CCNet starts from WET files (CommonCrawl's own HTML-to-text conversion);
users who have WARC files get the text from the HTML themselves, here with
resiliparse's ``extract_plain_text(main_content=True)``, which drops menus,
footers and other page chrome much like the WET conversion plus CCNet's
line dedup would.

Decisions where the spec is silent:

* Both record types are read from any input file, so a shard may mix them;
  ``warcinfo``, ``request`` and ``metadata`` records are skipped silently.
* Compression is undone by :func:`~llamaforge.data.sources.textio.open_binary`
  (Python's gzip), not by fastwarc's own reader, because fastwarc stops
  silently at a truncated gzip member while Python raises. The stream is read
  with ``read1`` so that nothing decompressed before the fault is lost: every
  complete record before it is still yielded, and the record cut in half is
  counted as ``truncated`` instead of being yielded half-empty.
* An HTML page is decoded with its HTTP charset when that is a known codec and
  decodes cleanly, else as strict UTF-8; text that is neither is counted as
  bad input ``utf8``. WET text is UTF-8 by construction, so invalid bytes
  there are ``utf8`` too. Payloads with NUL or mostly control bytes are
  ``binary``.
* Non-200 responses and non-HTML payloads are not documents: they are
  counted as drops ``cc.http_status`` / ``cc.not_html``, not as bad input.
* ``main_content=True`` costs time quadratic in how deeply ``<div>``/``<article>``
  elements nest (20,000 nested divs: 21 s a pass; no other tag does this). A page whose
  sum, over those elements, of their div/article depth exceeds :data:`MAX_NESTING_WORK`
  (about 0.2 s of extraction) is counted as bad input ``too_nested``. Real pages are far
  below it, and a page with at most :data:`_CHEAP_OPENINGS` such tags cannot reach it, so
  only pages with thousands of divs pay for the exact count (one parse and a tree walk).
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastwarc.warc import ArchiveIterator, WarcRecordType
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree, NodeType

from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.textio import (
    STREAM_ERRORS,
    decode_utf8,
    is_truncation,
    looks_binary,
    open_binary,
)

HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_NESTING_WORK = 5_000_000
_NESTING_TAGS = frozenset(("div", "article"))
_NESTING_OPEN = re.compile(r"<(?:div|article)[\s/>]", re.IGNORECASE)
# n such elements have a depth sum of at most n (n + 1) / 2.
_CHEAP_OPENINGS = int((2 * MAX_NESTING_WORK) ** 0.5) - 1


@dataclass
class WebPage:
    """The text of one web page and where it came from."""

    url: str
    record_id: str
    text: str
    warc_file: str


class _StopAtFault(io.RawIOBase):
    """A stream that ends (instead of raising) where its decompressor hits a fault.

    fastwarc reads ahead in large blocks; letting the exception through would
    lose the complete records already in that block.
    """

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self._read = getattr(inner, "read1", inner.read)
        self.fault: BaseException | None = None
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # fastwarc asks where the stream is (a no-op seek); real seeking is not needed.
        target = offset if whence == io.SEEK_SET else self._position + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target != self._position:
            raise io.UnsupportedOperation("seek")
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self.fault is not None:
            return b""
        want = size if size is not None and size >= 0 else 1 << 20
        out = bytearray()
        while len(out) < want:
            try:
                chunk = self._read(want - len(out))
            except STREAM_ERRORS as error:
                self.fault = error
                break
            if not chunk:
                break
            out += chunk
        self._position += len(out)
        return bytes(out)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decode_html(body: bytes, charset: str | None) -> str | None:
    if charset:
        try:
            return body.decode(codecs.lookup(charset).name)
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_utf8(body)


def iter_pages(
    path: Path,
    report: FilterReport,
    main_content: bool = True,
    max_record_bytes: int = 16 << 20,
) -> Iterator[WebPage]:
    """Every page of one WET/WARC file; bad records and files are counted in ``report``."""
    warc_file = path.name
    try:
        raw = open_binary(path)
    except OSError as error:
        report.bad(f"unreadable ({type(error).__name__})", str(path))
        return
    with raw:
        stream = _StopAtFault(raw)
        records = ArchiveIterator(
            stream,
            record_types=WarcRecordType.response | WarcRecordType.conversion,
            parse_http=True,
            stream_detect=False,
        )
        seen_any = False
        index = 0
        try:
            for index, record in enumerate(records):  # noqa: B007 - index used after the loop
                seen_any = True
                where = f"{path}:record {index}"
                if record.content_length > max_record_bytes:
                    report.bad("record_too_large", where)
                    continue
                expected = record.content_length  # after the HTTP header, for responses
                payload = record.reader.read()
                if len(payload) < expected:  # the record the archive broke off in
                    report.bad("truncated", where)
                    return
                page = _page_text(record, payload, where, report, main_content)
                if page is not None:
                    url = record.headers.get("WARC-Target-URI") or ""
                    yield WebPage(url, record.record_id or "", page, warc_file)
        except (OSError, ValueError) as error:  # fastwarc: not a WARC / malformed header
            report.bad("warc", f"{path}:record {index} ({error})")
            return
        if stream.fault is not None:  # broke off between records, or not gzip at all
            reason = "truncated" if is_truncation(stream.fault) else "corrupt"
            report.bad(reason, f"{path}:record {index + seen_any} ({stream.fault})")
        elif not seen_any:
            report.bad("empty", str(path))


def _page_text(
    record, payload: bytes, where: str, report: FilterReport, main_content: bool
) -> str | None:
    """The text of one record, or None after counting why there is none."""
    if record.record_type == WarcRecordType.response:
        status = record.http_headers.status_code if record.is_http else None
        if status != 200:
            report.drop("cc.http_status")
            return None
        if (record.http_content_type or "").lower() not in HTML_TYPES:
            report.drop("cc.not_html")
            return None
    if looks_binary(payload[:4096]):
        report.bad("binary", where)
        return None
    if record.record_type == WarcRecordType.conversion:
        text = decode_utf8(payload)
        if text is None:
            report.bad("utf8", where)
        return text
    html = _decode_html(payload, record.http_charset)
    if html is None:
        report.bad("utf8", where)
        return None
    if main_content and nesting_work(html) > MAX_NESTING_WORK:
        report.bad("too_nested", where)
        return None
    return extract_plain_text(html, main_content=main_content)


def nesting_work(html: str, limit: int = MAX_NESTING_WORK) -> int:
    """Sum over ``<div>``/``<article>`` elements of their div/article depth (stops past ``limit``).

    Counted on the parsed tree (as the extractor sees it: implicitly closed tags closed),
    and only when the page has enough opening tags to possibly exceed ``limit``.
    """
    if len(_NESTING_OPEN.findall(html)) <= _CHEAP_OPENINGS:
        return 0
    total = 0
    stack = [(HTMLTree.parse(html).document, 0)]
    while stack and total <= limit:
        node, depth = stack.pop()
        child = node.first_child
        while child is not None:
            if child.type == NodeType.ELEMENT:
                inner = depth + (child.tag in _NESTING_TAGS)
                total += inner if inner > depth else 0
                stack.append((child, inner))
            child = child.next_sibling
    return total
