"""Small StackExchange dumps in archive.org's layout: a ``<site>.7z`` and an extracted site.

* ``ell.stackexchange.com.7z``: ``Posts.xml`` (and a tiny ``Users.xml``) as in
  the real archives, read by streaming the 7z member;
* ``diy.stackexchange.com/Posts.xml``: an extracted site folder.

Both are default sites. Each ``Posts.xml`` has questions (HTML bodies with
paragraphs, lists, inline code and ``<pre><code>`` blocks) whose answers are
written out of score order and interleaved with other posts, as in real
dumps; one question without answers (kept: ``min_answers = 0``); one answer
whose question is missing (``stackexchange.orphan_answer``); one tag-wiki
post (``stackexchange.post_type``). With ``n_docs >= 20``,
``rpg.stackexchange.com/Posts.xml`` breaks off into malformed XML after two
questions: ``xml`` bad input, with those two questions still kept.

``doc_bytes`` (0 by default: threads of a few hundred bytes, which the tests are written
against) adds paragraphs and code to questions and answers until a whole thread is about
that long; :data:`TYPICAL_DOC_BYTES` is a real thread's average, for throughput figures.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from xml.sax.saxutils import escape

import py7zr

from llamaforge.data.samples import write_atomic
from llamaforge.data.samples.c4 import sentence

# Average question with its answers in RedPajama's StackExchange subset (~2-4 KB).
TYPICAL_DOC_BYTES = 3000
ENTITIES = {'"': "&quot;", "\n": "&#xA;"}


def row(**fields: object) -> str:
    attributes = " ".join(f'{k}="{escape(str(v), ENTITIES)}"' for k, v in fields.items())
    return f"  <row {attributes} />"


def question_body(rng: random.Random, index: int, extra_bytes: int = 0) -> str:
    return (
        f"<p>{sentence(rng)} How do I fix <code>step_{index}</code>?</p>\n"
        f"<pre><code>for i in range({index + 2}):\n    print(i &lt; 3)\n</code></pre>\n"
        f"<ul><li>{sentence(rng)}</li><li>I tried &quot;reset&quot;.</li></ul>\n"
    ) + _more_html(rng, extra_bytes)


def _more_html(rng: random.Random, extra_bytes: int) -> str:
    """About ``extra_bytes`` more of a post: paragraphs with inline code, now and then a block."""
    blocks: list[str] = []
    size = 0
    while size < extra_bytes:
        words = " ".join(sentence(rng) for _ in range(rng.randint(2, 4)))
        code = f"<code>item_{rng.randint(0, 999)}</code>"
        block = f'<p>{words} See {code} and <a href="#">this</a>.</p>\n'
        if rng.random() < 0.3:
            block += (
                f"<pre><code>def check_{len(blocks)}(value):\n"
                f"    return value &gt; {rng.randint(0, 99)} and value != &quot;x&quot;\n"
                "</code></pre>\n"
            )
        blocks.append(block)
        size += len(block)
    return "".join(blocks)


def posts_rows(
    rng: random.Random, n_questions: int, first_id: int, doc_bytes: int = 0
) -> list[str]:
    """Rows for ``n_questions`` questions; answers come later and out of score order.

    With ``doc_bytes``, the question gets ~40 % of it and its answers share the rest.
    """
    rows, later = [], []
    post_id = first_id
    for q in range(n_questions):
        qid = post_id
        title = f"Question {q}: {sentence(rng).rstrip('.!')}?"
        rows.append(row(Id=qid, PostTypeId=1, Score=rng.randint(0, 30), Title=title,
                        Body=question_body(rng, q, int(doc_bytes * 0.4))))  # fmt: skip
        post_id += 1
        n_answers = 0 if q == 1 else rng.randint(1, 3)
        for _ in range(n_answers):
            score = rng.randint(-2, 15)
            body = f"<p>Answer with score {score} to {qid}: {sentence(rng)}</p>"
            if doc_bytes:
                body += _more_html(rng, int(doc_bytes * 0.6 / max(n_answers, 1)))
            later.append(row(Id=post_id, PostTypeId=2, ParentId=qid, Score=score, Body=body))
            post_id += 1
        if q % 2 == 0 and later:  # interleave, like answers written days later
            rows.append(later.pop(0))
    rows.extend(later)
    rows.append(row(Id=post_id, PostTypeId=2, ParentId=999_999, Score=3, Body="<p>Orphan.</p>"))
    rows.append(row(Id=post_id + 1, PostTypeId=5, Score=0, Body="<p>Tag wiki text.</p>"))
    return rows


def posts_xml(rows: list[str]) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n"
            ).encode("utf-8")  # fmt: skip


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write the sample sites into ``directory`` (layout and ``doc_bytes`` in the docstring)."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    half = max(2, n_docs // 2)
    archive = directory / "ell.stackexchange.com.7z"
    temporary = archive.with_name(archive.name + ".tmp")
    with py7zr.SevenZipFile(temporary, "w") as out:
        out.writestr(posts_xml(posts_rows(rng, half, first_id=1, doc_bytes=doc_bytes)), "Posts.xml")
        out.writestr(b'<?xml version="1.0"?>\n<users>\n</users>\n', "Users.xml")
    os.replace(temporary, archive)
    folder = directory / "diy.stackexchange.com" / "Posts.xml"
    write_atomic(
        folder, posts_xml(posts_rows(rng, max(2, n_docs - half), first_id=1, doc_bytes=doc_bytes))
    )
    paths = [archive, folder]
    if n_docs >= 20:
        broken = directory / "rpg.stackexchange.com" / "Posts.xml"
        rows = posts_rows(rng, 2, first_id=1)[:3]  # question 0 (+ answer), question 1
        data = posts_xml(rows).replace(b"\n</posts>\n", b'\n  <row Id="77" Body="unclosed')
        write_atomic(broken, data)
        paths.append(broken)
    return paths


def write_large_posts(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Stream a ``Posts.xml`` of about ``target_bytes`` to ``path``; returns the questions.

    For memory measurements: written block by block (never held whole), with each
    block's answers coming after the next block's questions, so a reader that groups in
    memory must hold every open thread, as with a real dump.
    """
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    written, questions, post_id, delayed = 0, 0, 1, []
    with open(temporary, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        while written < target_bytes:
            rows, answers = [], []
            for _ in range(200):
                qid = post_id
                body = question_body(rng, questions, extra_bytes=600)
                rows.append(row(Id=qid, PostTypeId=1, Score=rng.randint(0, 30),
                                Title=f"Question {questions}?", Body=body))  # fmt: skip
                post_id, questions = post_id + 1, questions + 1
                for _ in range(rng.randint(1, 3)):
                    text = f"<p>{sentence(rng)} {sentence(rng)}</p>" + _more_html(rng, 400)
                    answers.append(row(Id=post_id, PostTypeId=2, ParentId=qid,
                                       Score=rng.randint(-2, 15), Body=text))  # fmt: skip
                    post_id += 1
            block = "\n".join(rows + delayed) + "\n"
            delayed = answers
            out.write(block)
            written += len(block)
        out.write("\n".join(delayed) + "\n</posts>\n")
    os.replace(temporary, path)
    return questions
