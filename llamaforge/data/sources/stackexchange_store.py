"""An on-disk store that groups a site's answers under their questions in bounded memory.

``Posts.xml`` lists posts by id, and an answer can come any time after its question (years
of later posts in between), so grouping needs every question still open. Holding them in
dicts made memory grow with the site: tens of GB for stackoverflow.com, whose Posts.xml is
about 100 GB. Instead each post is written, HTML already stripped, to a SQLite database in a
temporary folder that this store creates (in ``tmp_dir``, or the system's temporary
directory) and removes when it is closed; nothing else is ever deleted.

Memory stays flat: rows are inserted in batches of :data:`BATCH_ROWS`, SQLite's page cache
is capped at :data:`CACHE_KIB`, and the grouping is one ``CREATE INDEX`` (SQLite's external
merge sort, which spills to temporary files) followed by a merge of two ordered cursors --
questions by id, answers by (question, score high to low, id) -- so one question and its
answers are in memory at a time. Disk use is about the site's text size, plus the index.

:class:`RowFeeder` is the other half of the bounded-memory path: it parses ``Posts.xml``
bytes as they arrive (from a file or straight out of py7zr, via :class:`FeederFactory`) and
hands each ``<row>``'s attributes on, so no part of the XML is held beyond one post.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

from py7zr.io import Py7zIO, WriterFactory

from llamaforge.data.sources.base import FilterReport

BATCH_ROWS = 2000
MAX_DEPTH = 16  # Posts.xml is <posts><row/>...</posts>: depth 2; deeper is hostile
CACHE_KIB = 1024

Answer = tuple[int, int, str]  # (score, post id, text)


class PostStore:
    """Questions and answers of one site on disk, read back grouped and sorted."""

    def __init__(self, tmp_dir: str | Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="llamaforge-stackexchange-", dir=tmp_dir))
        self.db = sqlite3.connect(self.folder / "posts.sqlite3")
        for pragma in (
            "journal_mode = OFF",  # a crash loses only this temporary database
            "synchronous = OFF",
            f"cache_size = -{CACHE_KIB}",
            "temp_store = FILE",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE questions (id INTEGER, title TEXT, body TEXT, score INTEGER)")
        self.db.execute(
            "CREATE TABLE answers (parent INTEGER, score INTEGER, id INTEGER, body TEXT)"
        )
        self._questions: list[tuple[int, str, str, int]] = []
        self._answers: list[tuple[int, int, int, str]] = []

    def add_question(self, post_id: int, title: str, body: str, score: int) -> None:
        self._questions.append((post_id, title, body, score))
        if len(self._questions) >= BATCH_ROWS:
            self._flush()

    def add_answer(self, parent: int, score: int, post_id: int, body: str) -> None:
        self._answers.append((parent, score, post_id, body))
        if len(self._answers) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        with self.db:
            self.db.executemany("INSERT INTO questions VALUES (?, ?, ?, ?)", self._questions)
            self.db.executemany("INSERT INTO answers VALUES (?, ?, ?, ?)", self._answers)
        self._questions.clear()
        self._answers.clear()

    def grouped(
        self, max_group_chars: int = 1 << 62
    ) -> Iterator[tuple[int, str, str, int, list[Answer], int]]:
        """``(id, title, body, score, answers, left_out)`` per question in id order, then orphans.

        Answers are sorted by score, high to low, ties by id (the older answer first).
        Answers whose question is not in the dump come as ``(-1, "", "", 0, answers, 0)``
        batches. A question id that occurs twice (a malformed dump) is read once: its
        first copy. Memory is bounded by ``max_group_chars``: once a question's answers
        reach it, its lower-scored answers are only counted (``left_out``), and orphan
        batches end at it too.
        """
        self._flush()
        self.db.execute("CREATE INDEX questions_by_id ON questions (id)")
        self.db.execute("CREATE INDEX answers_by_parent ON answers (parent, score DESC, id)")
        questions = self.db.execute("SELECT id, title, body, score FROM questions ORDER BY id")
        answers = self.db.execute(
            "SELECT parent, score, id, body FROM answers ORDER BY parent, score DESC, id"
        )
        pending = answers.fetchone()
        orphans: list[Answer] = []
        orphan_chars = 0
        previous = None
        for qid, title, body, score in itertools.chain(questions, [(None, "", "", 0)]):
            if qid == previous:
                continue
            previous = qid
            while pending is not None and (qid is None or pending[0] < qid):
                orphans.append((pending[1], pending[2], pending[3]))
                orphan_chars += len(pending[3])
                if len(orphans) >= BATCH_ROWS or orphan_chars >= max_group_chars:
                    yield -1, "", "", 0, orphans, 0
                    orphans, orphan_chars = [], 0
                pending = answers.fetchone()
            if qid is None:
                break
            group: list[Answer] = []
            chars, left_out = len(title) + len(body), 0
            while pending is not None and pending[0] == qid:
                chars += len(pending[3])
                if chars <= max_group_chars:
                    group.append((pending[1], pending[2], pending[3]))
                else:
                    left_out += 1
                pending = answers.fetchone()
            yield qid, title, body, score, group, left_out
        if orphans:
            yield -1, "", "", 0, orphans, 0

    def close(self) -> None:
        """Close the database and remove the folder this store made (and only that)."""
        self.db.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RowFeeder:
    """Feeds XML bytes to a pull parser and hands each finished ``<row>`` to ``on_row``.

    Memory is bounded on hostile input: every finished element is cleared (anything but a
    ``<row>`` under the root is counted as ``unexpected_element``), nesting deeper than
    :data:`MAX_DEPTH` stops the file (``too_deep``), and bytes reach the parser only as
    whole markup segments (from one ``<`` to the next): a segment over ``max_post_bytes``
    is skipped as ``too_large`` without ever being held whole, so a 50 MB ``Body`` costs
    at most the cap. ``<`` cannot occur inside XML attribute values, so dropping a whole
    self-closing ``<row .../>`` segment leaves the rest of the file well-formed.
    """

    def __init__(
        self,
        on_row: Callable[[dict[str, str]], None],
        report: FilterReport,
        where: str,
        max_post_bytes: int,
    ) -> None:
        self.on_row, self.report, self.where = on_row, report, where
        self.max_bytes = max_post_bytes
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.root: ET.Element | None = None
        self.depth = 0
        self.unexpected = 0
        self.error: tuple[str, str] | None = None  # (report reason, detail)
        self.bytes = 0
        self._pending: list[bytes] = []  # the unfinished segment, from its "<" on
        self._pending_len = 0
        self._skipping = False  # inside an oversized segment: drop bytes until a "<"

    def _drain(self) -> None:
        for event, element in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.root is None:
                    self.root = element
                if self.depth > MAX_DEPTH:
                    self.error = ("too_deep", f"over {MAX_DEPTH} nested elements")
                    return
                continue
            self.depth -= 1
            if self.depth == 1 and element.tag == "row":
                self.on_row(element.attrib)
            elif self.depth >= 1:  # counted in bulk: a file may hold millions
                self.unexpected += 1
                self.report.bad_input_examples.setdefault(
                    "unexpected_element", f"{self.where}:<{element.tag[:40]}>"
                )
            element.clear()
            if self.root is not None and element is not self.root:
                self.root.clear()

    def _parse(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
            self._drain()
        except ET.ParseError as error:
            self.error = ("xml", str(error.position[0]))
        except (LookupError, ValueError) as error:  # e.g. encoding="x-klingon"
            self.error = ("xml", f"{type(error).__name__}: {error}")

    def _too_large(self) -> None:
        self.report.bad("too_large", f"{self.where}: over {self.max_bytes} bytes")
        self._pending, self._pending_len = [], 0

    def feed(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.bytes += len(data)
        first = data.find(b"<")
        if self._skipping:
            if first < 0:
                return
            self._skipping, data, first = False, data[first:], 0
        if first < 0:
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len > self.max_bytes:
                self._too_large()
                self._skipping = True
            return
        if self._pending and self._pending_len + first > self.max_bytes:
            self._too_large()
            data = data[first:]
        last = data.rfind(b"<")
        self._parse(b"".join([*self._pending, data[:last]]))
        self._pending, self._pending_len = [data[last:]], len(data) - last

    def close(self) -> None:
        if self.error is None:
            self._parse(b"".join(self._pending))
            self._pending = []
        if self.error is None:
            try:
                self.parser.close()
                self._drain()
            except ET.ParseError as error:
                self.error = ("xml", str(error.position[0]))
        if self.unexpected:
            self.report.bad_input["unexpected_element"] += self.unexpected
            self.unexpected = 0


class _FeederIO(Py7zIO):
    """A py7zr output 'file' that parses what it is given instead of storing it."""

    def __init__(self, feeder: RowFeeder) -> None:
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


class FeederFactory(WriterFactory):
    def __init__(self, feeder: RowFeeder) -> None:
        self.feeder = feeder

    def create(self, filename: str) -> Py7zIO:
        return _FeederIO(self.feeder)
