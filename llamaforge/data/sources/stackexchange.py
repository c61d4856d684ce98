"""StackExchange (paper Table 1, 2 %): archive.org dumps, one question and its answers per doc.

Inputs, per site: the archive.org ``<site>.7z`` (``stackoverflow.com-Posts.7z``
for Stack Overflow, which is split by table) or an extracted folder
``<site>/Posts.xml``. If a site has both, the extracted folder is used. The
7z member is decompressed by py7zr straight into an incremental XML parser
(no temporary file); a folder's ``Posts.xml`` is fed to the same parser in
chunks. Every finished element is cleared after use (see
:class:`~llamaforge.data.sources.stackexchange_store.RowFeeder`).

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
``stackexchange.empty`` (a question, or an answer, with no text),
``stackexchange.doc_too_large`` (answers beyond ``max_doc_bytes`` of text in one
document, default 16 MiB; the lowest-scored go). Malformed XML (or an unknown
encoding) is counted as bad input (``xml``); the posts parsed before the fault
still become documents (a question may then lack answers that came after the fault). Also bad input: ``schema`` (a row with a
missing, non-integer, non-positive ``Id`` or an integer beyond 64 bits),
``too_large`` (a row over ``max_post_bytes``, default 4 MiB), ``unexpected_element``
(anything but ``<row>`` under the root), ``too_deep``, ``encrypted`` and ``truncated``
archives.

``sites`` (default :data:`DEFAULT_SITES`): the paper kept "the 28 largest
websites" without listing them; this list is the 28 largest English sites by
compressed size in the archive.org dump of early 2023 (approximate; the
non-English Stack Overflows are left out). Entries are full domains or short
names (``cooking`` = cooking.stackexchange.com); ``sites = []`` takes every
site found, meta sites included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import py7zr
import py7zr.exceptions

from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.html_text import html_to_text
from llamaforge.data.sources.stackexchange_store import FeederFactory, PostStore, RowFeeder
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
READ_BYTES = 1 << 16
_INT64 = range(-(2**63), 2**63)  # what SQLite's INTEGER holds


@dataclass
class StackExchangeConfig:
    """``[sources.stackexchange]``: which sites, and whether unanswered questions count."""

    sites: list[str] = field(default_factory=lambda: list(DEFAULT_SITES))
    min_answers: int = 0
    tmp_dir: str = ""
    # A post's raw <row> over this is counted as too_large and skipped, bounding memory and
    # time; sites cap a body at 30,000 characters, so real posts are far below it.
    max_post_bytes: int = 4 << 20
    # One question with all its answers (answers past it, lowest-scored first, are dropped
    # as stackexchange.doc_too_large): the busiest real questions total a few MB.
    max_doc_bytes: int = 16 << 20

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
        for name in ("max_post_bytes", "max_doc_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"[sources.stackexchange].{name} must be an integer >= 1, got {value!r}"
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

    def __init__(
        self, where: str, report: FilterReport, store: PostStore, max_post_bytes: int
    ) -> None:
        self.where = where
        self.max_post_bytes = max_post_bytes
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
            post_id = score = parent = None
        # Ids are positive in every dump (and -1 is the store's orphan marker); SQLite
        # holds 64-bit integers only, so a larger Score would fail the whole batch.
        if post_id is None or post_id < 1 or score not in _INT64 or parent not in _INT64:
            self.report.bad("schema", f"{self.where}:row {attrib.get('Id', '?')[:40]}")
            return
        raw_body = attrib.get("Body", "")
        if len(raw_body) + len(attrib.get("Title", "")) > self.max_post_bytes:
            self.report.bad("too_large", f"{self.where}:row {post_id}")
            return
        body = html_to_text(raw_body)
        if kind == QUESTION:
            self.store.add_question(post_id, attrib.get("Title", "").strip(), body, score)
        else:
            self.store.add_answer(parent, score, post_id, body)

    def documents(self, site: str, config: StackExchangeConfig, input_name: str):
        for qid, title, body, score, answers, left_out in self.store.grouped(config.max_doc_bytes):
            for _ in range(left_out):
                self.report.drop("stackexchange.doc_too_large", "")
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
        feeder = RowFeeder(posts.add, report, where, self.config.max_post_bytes)
        try:
            with open(path, "rb") as stream:
                while feeder.error is None and (chunk := stream.read(READ_BYTES)):
                    feeder.feed(chunk)
        except OSError as error:
            report.bad("unreadable", f"{where} ({type(error).__name__})")
            return
        feeder.close()
        if feeder.error is not None:
            report.bad(feeder.error[0], f"{where}:{feeder.error[1]}")

    def _read_archive(self, path: Path, posts: _Posts, report: FilterReport) -> None:
        where = str(path)
        if path.stat().st_size == 0:
            report.bad("empty", where)
            return
        feeder = RowFeeder(posts.add, report, where, self.config.max_post_bytes)
        try:
            with py7zr.SevenZipFile(path, "r") as archive:
                if archive.needs_password():
                    report.bad("encrypted", where)
                    return
                members = [n for n in archive.getnames() if n.rsplit("/", 1)[-1] == "Posts.xml"]
                if not members:
                    report.bad("missing_posts", where)
                    return
                archive.extract(targets=members[:1], factory=FeederFactory(feeder))
        except py7zr.exceptions.PasswordRequired:
            report.bad("encrypted", where)
            return
        except (py7zr.exceptions.ArchiveError, *STREAM_ERRORS) as error:
            report.bad("truncated", f"{where} ({type(error).__name__})")
            return
        feeder.close()
        if feeder.error is not None:
            report.bad(feeder.error[0], f"{where}:Posts.xml:{feeder.error[1]}")

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        path = Path(path)
        site = site_of(path) or path.stem.lower()
        with PostStore(self.config.tmp_dir or None) as store:
            posts = _Posts(str(path), report, store, self.config.max_post_bytes)
            if path.name.endswith(".7z"):
                self._read_archive(path, posts, report)
            else:
                self._read_xml(path, posts, report)
            yield from posts.documents(site, self.config, path.name)

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        yield from docs
