"""Small book collections: Project Gutenberg ``.txt`` files and Books3-style plain text.

Layout: ``gutenberg/pg<N>.txt`` (the real licence header and footer around the book, CRLF line
ends as Gutenberg ships them) and ``books3/<Title>.epub.txt`` (no boilerplate). Among them:

* ``books3/Copy of <N>.epub.txt``: the Gutenberg book ``<N>`` with a handful of words changed
  (estimated Jaccard of its 5-word shingles ~0.97): one of the pair is a near-duplicate, and
  since ``books3/`` sorts before ``gutenberg/``, the Gutenberg file is the one dropped;
* ``books3/Half of <N>.epub.txt``: half of another book plus new text (Jaccard ~0.3): kept at
  the paper's 0.9 threshold;
* ``gutenberg/pg<N>.txt`` with only the header and footer: dropped as ``books.empty``;
* with ``n_docs >= 20``, ``gutenberg/pg<N>.txt`` that is really a binary file: bad input.

``doc_bytes`` (0 by default: books of ~13 KB, which the tests are written against) makes every
book about that long (the half copy keeps its ~0.3 overlap); :data:`TYPICAL_DOC_BYTES` is a
real book's length, for throughput figures.
"""

from __future__ import annotations

import random
from pathlib import Path

from llamaforge.data.samples import write_atomic

# fmt: off
WORDS = [
    "the", "ship", "captain", "sea", "storm", "night", "morning", "letter", "house", "garden",
    "father", "mother", "daughter", "road", "village", "king", "queen", "castle", "forest",
    "river", "horse", "friend", "secret", "door", "window", "fire", "winter", "summer",
    "silent", "ancient", "golden", "dark", "bright", "walked", "spoke", "remembered", "waited",
]
# fmt: on
# Average plain-text book in Books3 / Project Gutenberg (~500 KB).
TYPICAL_DOC_BYTES = 500_000
_PARAGRAPH_BYTES = 330  # average paragraph of book_body

GUTENBERG_HEADER = (
    "The Project Gutenberg eBook of {title}\n\n"
    "This ebook is for the use of anyone anywhere in the United States and\n"
    "most other parts of the world at no cost and with almost no restrictions\n"
    "whatsoever. You may copy it, give it away or re-use it under the terms\n"
    "of the Project Gutenberg License included with this ebook or online\n"
    "at www.gutenberg.org.\n\n"
    "Title: {title}\n\nRelease date: January 1, 2001 [eBook #{number}]\n\n"
    "Language: English\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***\n\n\n"
)
GUTENBERG_FOOTER = (
    "\n\n*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***\n\n"
    "Updated editions will replace the previous one--the old editions will\n"
    "be renamed.\n\nSection 1. General Terms of Use and Redistributing Project\n"
    "Gutenberg(TM) electronic works\n"
)


def book_body(rng: random.Random, paragraphs: int = 40) -> str:
    """Chapters of random sentences, hard-wrapped like a Gutenberg text."""
    out = []
    for index in range(paragraphs):
        if index % 10 == 0:
            out.append(f"CHAPTER {index // 10 + 1}")
        words = [rng.choice(WORDS) for _ in range(rng.randint(40, 70))]
        lines = [" ".join(words[i : i + 11]) for i in range(0, len(words), 11)]
        out.append("\n".join(lines).capitalize() + ".")
    return "\n\n".join(out)


def gutenberg_file(title: str, number: int, body: str) -> bytes:
    fields = {"title": title, "number": number, "upper": title.upper()}
    text = GUTENBERG_HEADER.format(**fields) + body + GUTENBERG_FOOTER.format(**fields)
    return text.replace("\n", "\r\n").encode("utf-8")


def near_copy(rng: random.Random, body: str, changes: int = 4) -> str:
    """``body`` with ``changes`` words replaced: an edition differing in a few typos."""
    words = body.split(" ")
    for _ in range(changes):
        words[rng.randrange(len(words))] = "misprint"
    return " ".join(words)


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write ``n_docs`` book files (layout, roles and ``doc_bytes`` in the module docstring)."""
    rng = random.Random(seed)
    directory = Path(directory)
    (directory / "gutenberg").mkdir(parents=True, exist_ok=True)
    (directory / "books3").mkdir(parents=True, exist_ok=True)
    specials = 3 + (n_docs >= 20)  # the near copy, the half copy, the empty book, the binary
    n_plain = max(n_docs - specials, 2)
    paragraphs = max(40, round(doc_bytes / _PARAGRAPH_BYTES))
    written: list[Path] = []
    bodies: list[str] = []
    for index in range(n_plain):
        body = book_body(rng, paragraphs)
        bodies.append(body)
        number = 1000 + index
        if index % 2 == 0:
            path = directory / "gutenberg" / f"pg{number}.txt"
            write_atomic(path, gutenberg_file(f"Sample Book {number}", number, body))
        else:
            path = directory / "books3" / f"Sample Book {number}.epub.txt"
            write_atomic(path, (body + "\n").encode("utf-8"))
        written.append(path)
    extras = {
        "books3/Copy of 1000.epub.txt": near_copy(rng, bodies[0]).encode("utf-8"),
        "books3/Half of 1001.epub.txt": (
            bodies[1][: len(bodies[1]) // 2] + "\n\n" + book_body(rng, paragraphs // 2)
        ).encode("utf-8"),
        "gutenberg/pg2000.txt": gutenberg_file("Lost Book", 2000, ""),
    }
    if n_docs >= 20:
        extras["gutenberg/pg2001.txt"] = bytes(rng.randrange(256) for _ in range(4096)) + b"\0"
    for relative, data in extras.items():
        path = directory / relative
        write_atomic(path, data)
        written.append(path)
    return sorted(written)
