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
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

BATCH_ROWS = 2000
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

    def grouped(self) -> Iterator[tuple[int, str, str, int, list[Answer]]]:
        """``(id, title, body, score, answers)`` per question in id order, then orphans.

        Answers are sorted by score, high to low, ties by id (the older answer first). A
        Answers whose question is not in the dump come as ``(-1, "", "", 0, answers)``
        batches. A question id that occurs twice (a malformed dump) is read once: its
        first copy.
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
        previous = None
        for qid, title, body, score in questions:
            if qid == previous:
                continue
            previous = qid
            while pending is not None and pending[0] < qid:
                orphans.append((pending[1], pending[2], pending[3]))
                if len(orphans) >= BATCH_ROWS:
                    yield -1, "", "", 0, orphans
                    orphans = []
                pending = answers.fetchone()
            group: list[Answer] = []
            while pending is not None and pending[0] == qid:
                group.append((pending[1], pending[2], pending[3]))
                pending = answers.fetchone()
            yield qid, title, body, score, group
        while pending is not None:
            orphans.append((pending[1], pending[2], pending[3]))
            pending = answers.fetchone()
        if orphans:
            yield -1, "", "", 0, orphans

    def close(self) -> None:
        """Close the database and remove the folder this store made (and only that)."""
        self.db.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
