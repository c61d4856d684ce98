"""StackExchange (paper Table 1, 2 %): archive.org dumps, one question and its answers per doc.

Inputs, per site: the archive.org ``<site>.7z`` (``stackoverflow.com-Posts.7z``
for Stack Overflow, which is split by table) or an extracted folder
``<site>/Posts.xml``. If a site has both, the extracted folder is used. The
7z member is decompressed by py7zr straight into an incremental XML parser
(no temporary file); a folder's ``Posts.xml`` is read with ``iterparse``. Both
clear every ``<row>`` after use.

Memory is bounded, whatever the site's size: answers can appear anywhere
after their question in ``Posts.xml``, so posts (HTML-stripped) go to an
on-disk SQLite store (:mod:`stackexchange_store`) in a temporary folder under
``tmp_dir`` (default: the system's temporary directory, ``$TMPDIR``) that is
removed when the site is done; the grouping is SQLite's external sort. Disk
needed is about the site's text size plus an index (stackoverflow.com: plan
for ~100 GB free). Peak RSS against input size: ``benchmarks/stackexchange_memory.py``.

Document format (RedPajama-like prefixes, chosen so a model sees who speaks)::

    Q: <title>

    <question body>

    A: <highest-scored answer>

    A: <next answer> ...

Answers are sorted by score, high to low (ties: older answer first), as RedPajama's
``post_processing.py`` does (a stable sort of answers in dump order). Questions come in id
order (the dump's order). HTML is
stripped by :mod:`html_text` (code blocks kept verbatim). Drop reasons:
``stackexchange.min_answers`` (fewer than ``min_answers`` answers; 0 by
default: the paper does not drop unanswered questions),
``stackexchange.orphan_answer`` (an answer whose question is not in the
dump), ``stackexchange.post_type`` (tag wikis and other non-Q/A posts),
``stackexchange.empty`` (a question, or an answer, with no text). Malformed XML is counted as bad input (``xml``);
the posts parsed before the fault still become documents (a question may then
lack answers that came after the fault).

``sites`` (default :data:`DEFAULT_SITES`): the paper kept "the 28 largest
websites" without listing them; this list is the 28 largest English sites by
compressed size in the archive.org dump of early 2023 (approximate; the
non-English Stack Overflows are left out). Entries are full domains or short
names (``cooking`` = cooking.stackexchange.com); ``sites = []`` takes every
site found, meta sites included.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import py7zr
import py7zr.exceptions
from py7zr.io import Py7zIO, WriterFactory

from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.html_text import html_to_text
from llamaforge.data.sources.stackexchange_store import PostStore
from llamaforge.data.sources.textio import STREAM_ERRORS
from llamaforge.errors import ConfigError

DEFAULT_SITES: tuple[str, ...] = (
    "stackoverflow.com", "math.stackexchange.com", "superuser.com", "askubuntu.com",
    "serverfault.com", "unix.stackexchange.com", "tex.stackexchange.com", "mathoverflow.net",
    "electronics.stackexchange.com", "physics.stackexchange.com", "stats.stackexchange.com",
    "english.stackexchange.com", "gis.stackexchange.com", "apple.stackexchange.com",
    "codereview.stackexchange.com", "softwareengineering.stackexchange.com",
    "salesforce.stackexchange.com", "ell.stackexchange.com", "magento.stackexchange.com",
    "gaming.stackexchange.com", "wordpress.stackexchange.com", "scifi.stackexchange.com",
    "dba.stackexchange.com", "mathematica.stackexchange.com", "sharepoint.stackexchange.com",
    "diy.stackexchange.com", "rpg.stackexchange.com", "cs.stackexchange.com",
)  # fmt: skip
QUESTION, ANSWER = "1", "2"


@dataclass
class StackExchangeConfig:
    """``[sources.stackexchange]``: which sites, and whether unanswered questions count."""

    sites: list[str] = field(default_factory=lambda: list(DEFAULT_SITES))
    min_answers: int = 0
    tmp_dir: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.sites, list | tuple) or not all(
            isinstance(s, str) and s for s in self.sites
        ):
            raise ConfigError("[sources.stackexchange].sites must be a list of site names")
        # A site name may reach here resolved as a path (a folder of that name beside the
        # config); the last component is the site either way.
        self.sites = [Path(s).name.lower() for s in self.sites]
        if not isinstance(self.tmp_dir, str):
            raise ConfigError("[sources.stackexchange].tmp_dir must be a folder path (a string)")
        if not isinstance(self.min_answers, int) or self.min_answers < 0:
            raise ConfigError(
                f"[sources.stackexchange].min_answers must be an integer >= 0, "
                f"got {self.min_answers!r}"
            )


def site_of(path: Path) -> str | None:
    """The site a dump file belongs to (``x.7z``, ``stackoverflow.com-Posts.7z``, ``x/Posts.xml``)."""
    if path.name == "Posts.xml":
        return path.parent.name.lower()
    if path.name.endswith(".7z"):
        stem = path.name[: -len(".7z")]
        if "-" in stem:  # stackoverflow.com-Posts.7z; the other tables are not needed
            stem, table = stem.rsplit("-", 1)
            if table != "Posts":
                return None
        return stem.lower()
    return None


def site_selected(site: str, wanted: Iterable[str]) -> bool:
    wanted = list(wanted)
    if not wanted:
        return True
    short = {f"{w}.stackexchange.com" for w in wanted} | {f"{w}.com" for w in wanted}
    return site in wanted or site in short or site in {f"{w}.net" for w in wanted}


class _Posts:
    """Questions and answers of one site, HTML-stripped, in an on-disk :class:`PostStore`."""

    def __init__(self, where: str, report: FilterReport, store: PostStore) -> None:
        self.where = where
        self.report = report
        self.store = store

    def add(self, attrib: dict[str, str]) -> None:
        kind = attrib.get("PostTypeId")
        if kind not in (QUESTION, ANSWER):
            self.report.drop("stackexchange.post_type", attrib.get("Body", ""))
            return
        try:
            post_id = int(attrib["Id"])
            score = int(attrib.get("Score", "0"))
            parent = int(attrib["ParentId"]) if kind == ANSWER else 0
        except (KeyError, ValueError):
            self.report.bad("schema", f"{self.where}:row {attrib.get('Id', '?')}")
            return
        body = html_to_text(attrib.get("Body", ""))
        if kind == QUESTION:
            self.store.add_question(post_id, attrib.get("Title", "").strip(), body, score)
        else:
            self.store.add_answer(parent, score, post_id, body)

    def documents(self, site: str, config: StackExchangeConfig, input_name: str):
        for qid, title, body, score, answers in self.store.grouped():
            if qid < 0:
                for _, _, text in answers:
                    self.report.drop("stackexchange.orphan_answer", text)
                continue
            for _ in range(sum(1 for a in answers if not a[2])):
                self.report.drop("stackexchange.empty", "")
            answers = [a for a in answers if a[2]]
            question = "\n\n".join(part for part in (title, body) if part)
            if not question:
                self.report.drop("stackexchange.empty", "")
                continue
            if len(answers) < config.min_answers:
                self.report.drop("stackexchange.min_answers", question)
                continue
            text = "\n\n".join([f"Q: {question}", *(f"A: {a[2]}" for a in answers)])
            self.report.keep(text)
            meta = {
                "input": input_name,
                "site": site,
                "question_id": qid,
                "score": score,
                "answer_ids": [a[1] for a in answers],
                "filters": [
                    "stackexchange.site",
                    "stackexchange.html",
                    "stackexchange.min_answers",
                ],
            }
            yield Document(text, "stackexchange", f"https://{site}/questions/{qid}", meta)


class _RowFeeder:
    """Feeds XML bytes to a pull parser and hands each finished ``<row>`` to ``_Posts``."""

    def __init__(self, posts: _Posts) -> None:
        self.posts = posts
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.root: ET.Element | None = None
        self.error: ET.ParseError | None = None
        self.bytes = 0

    def _drain(self) -> None:
        for event, element in self.parser.read_events():
            if self.root is None:
                self.root = element
            elif event == "end" and element.tag == "row":
                self.posts.add(element.attrib)
                element.clear()
                self.root.clear()

    def feed(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.bytes += len(data)
        try:
            self.parser.feed(data)
            self._drain()
        except ET.ParseError as error:
            self.error = error

    def close(self) -> None:
        if self.error is None:
            try:
                self.parser.close()
                self._drain()
            except ET.ParseError as error:
                self.error = error


class _FeederIO(Py7zIO):
    """A py7zr output 'file' that parses what it is given instead of storing it."""

    def __init__(self, feeder: _RowFeeder) -> None:
        self.feeder = feeder

    def write(self, s: bytes | bytearray) -> int:
        self.feeder.feed(bytes(s))
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return self.feeder.bytes


class _FeederFactory(WriterFactory):
    def __init__(self, feeder: _RowFeeder) -> None:
        self.feeder = feeder

    def create(self, filename: str) -> Py7zIO:
        return _FeederIO(self.feeder)


class StackExchangeSource:
    """Per-site dumps -> one document per question with its answers by score."""

    name: ClassVar[str] = "stackexchange"

    def __init__(self, config: StackExchangeConfig) -> None:
        self.config = config

    def list_inputs(self, root: Path) -> list[Path]:
        root = Path(root)
        if root.is_file():
            return [root]
        chosen: dict[str, Path] = {}
        for path in sorted(root.rglob("*")):
            site = site_of(path) if path.is_file() else None
            if site is None or not site_selected(site, self.config.sites):
                continue
            if site not in chosen or path.name == "Posts.xml":
                chosen[site] = path
        return sorted(chosen.values())

    def _read_xml(self, path: Path, posts: _Posts, report: FilterReport) -> None:
        where = str(path)
        if path.stat().st_size == 0:
            report.bad("empty", where)
            return
        root = None
        try:
            for event, element in ET.iterparse(path, events=("start", "end")):
                if root is None:
                    root = element
                elif event == "end" and element.tag == "row":
                    posts.add(element.attrib)
                    element.clear()
                    root.clear()
        except ET.ParseError as error:
            report.bad("xml", f"{where}:{error.position[0]}")
        except OSError as error:
            report.bad("unreadable", f"{where} ({type(error).__name__})")

    def _read_archive(self, path: Path, posts: _Posts, report: FilterReport) -> None:
        where = str(path)
        if path.stat().st_size == 0:
            report.bad("empty", where)
            return
        feeder = _RowFeeder(posts)
        try:
            with py7zr.SevenZipFile(path, "r") as archive:
                members = [n for n in archive.getnames() if n.rsplit("/", 1)[-1] == "Posts.xml"]
                if not members:
                    report.bad("missing_posts", where)
                    return
                archive.extract(targets=members[:1], factory=_FeederFactory(feeder))
        except (py7zr.exceptions.ArchiveError, *STREAM_ERRORS) as error:
            report.bad("truncated", f"{where} ({type(error).__name__})")
            return
        feeder.close()
        if feeder.error is not None:
            report.bad("xml", f"{where}:Posts.xml:{feeder.error.position[0]}")

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        path = Path(path)
        site = site_of(path) or path.stem.lower()
        with PostStore(self.config.tmp_dir or None) as store:
            posts = _Posts(str(path), report, store)
            if path.name.endswith(".7z"):
                self._read_archive(path, posts, report)
            else:
                self._read_xml(path, posts, report)
            yield from posts.documents(site, self.config, path.name)

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        yield from docs
