"""Small C4-style dumps: ``c4-sample.00000.json.gz`` like allenai/c4's ``c4-train.*.json.gz``.

Each record is ``{"text", "url", "timestamp"}`` with raw-page noise (menus,
"enable JavaScript" and cookie notices, short lines) around prose. Record
``i`` plays the role ``ROLES[i % len(ROLES)]``:

* ``good``: kept, with its noise lines removed;
* ``lorem_ipsum``, ``curly_bracket``, ``bad_words``, ``min_sentences``: dropped with
  ``c4.<role>``;
* ``duplicate``: the first good page again under another URL: ``c4.dedup``.

With ``n_docs >= 20`` a second file, ``c4-sample.00001.json.gz``, is a gzip cut
off mid-stream: ``truncated`` bad input.

``doc_bytes`` (0 by default: pages of ~0.5 KB, which the tests are written against)
makes every page but the ``min_sentences`` one about that long, with its noise;
:data:`TYPICAL_DOC_BYTES` is a real C4 page's average, for throughput figures.
"""

from __future__ import annotations

import random
from pathlib import Path

from llamaforge.data.samples import gzip_json_lines, write_atomic

# Average length of a C4 page (allenai/c4 en: ~2.2 KB of text per record).
TYPICAL_DOC_BYTES = 2200
_SENTENCE_BYTES = 58  # average length of :func:`sentence` plus its separator

ROLES = (
    "good", "good", "lorem_ipsum", "good", "curly_bracket",
    "bad_words", "good", "min_sentences", "duplicate", "good",
)  # fmt: skip

# fmt: off
SUBJECTS = ["The river", "Our team", "The old library", "A small bakery", "The city council",
            "My grandmother", "The museum", "Local farmers", "The new bridge", "Every visitor"]
VERBS = ["opened", "described", "repaired", "visited", "celebrated", "planned", "measured",
         "photographed", "explained", "recommended"]
OBJECTS = ["the harbour walls", "a quiet garden", "the winter market", "several old maps",
           "a careful budget", "the morning train", "fresh bread", "the school roof",
           "a long report", "the hiking trail"]
ENDINGS = ["last spring", "after the storm", "for the first time", "with great care",
           "before noon", "every Sunday", "in the valley", "near the station"]
# fmt: on
NOISE = [
    "Home | About | Contact",
    "Please enable JavaScript in your browser to see the comments.",
    "This website uses cookies to improve your experience.",
    "Share this!",
    "Posted in News",
]


def sentence(rng: random.Random) -> str:
    """One plain English sentence ending in terminal punctuation."""
    parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]
    return " ".join(parts) + rng.choice([".", ".", ".", "!"])


def prose(rng: random.Random, sentences: int) -> list[str]:
    """Lines of two or three sentences each."""
    lines, pending = [], []
    for _ in range(sentences):
        pending.append(sentence(rng))
        if len(pending) == rng.choice((2, 3)):
            lines.append(" ".join(pending))
            pending = []
    if pending:
        lines.append(" ".join(pending))
    return lines


def page(rng: random.Random, role: str, doc_bytes: int = 0) -> str:
    """A page playing ``role``; with ``doc_bytes`` its prose is about that long (not min_sentences).

    Without ``doc_bytes`` the random draws are exactly those the tests' expectations rely on.
    """
    count = 2 if role == "min_sentences" else rng.randint(6, 9)  # TFDS needs 3 sentences
    if doc_bytes and role != "min_sentences":
        count = max(count, round(doc_bytes * rng.uniform(0.5, 1.5) / _SENTENCE_BYTES))
    body = prose(rng, count)
    if role == "lorem_ipsum":
        body.insert(1, "Lorem ipsum dolor sit amet, consectetur adipiscing elit.")
    elif role == "curly_bracket":
        body.append("Add the rule body { margin: 0; } to the stylesheet.")
    elif role == "bad_words":
        body.append("Some visitors search for porn on this page every day.")
    lines = [NOISE[0], *body[:1], NOISE[1], *body[1:], NOISE[2], NOISE[3]]
    return "\n".join(lines)


def _records(rng: random.Random, n_docs: int, doc_bytes: int = 0) -> list[dict]:
    records: list[dict] = []
    first_good = None
    for index in range(n_docs):
        role = ROLES[index % len(ROLES)]
        if role == "duplicate" and first_good is not None:
            text = first_good
        else:
            text = page(rng, "good" if role == "duplicate" else role, doc_bytes)
        if role == "good" and first_good is None:
            first_good = text
        records.append(
            {
                "text": text,
                "timestamp": f"2019-04-{1 + index % 28:02d}T12:00:00Z",
                "url": f"https://example-{index}.org/{role}/{index}",
            }
        )
    return records


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write the sample dump(s) into ``directory`` (roles and ``doc_bytes`` in the docstring)."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    main = directory / "c4-sample.00000.json.gz"
    write_atomic(main, gzip_json_lines(_records(rng, n_docs, doc_bytes)))
    paths = [main]
    if n_docs >= 20:
        extra = [
            {
                "text": page(rng, "good", doc_bytes),
                "url": f"https://cut.example.org/{i}",
                "timestamp": "",
            }
            for i in range(6)
        ]
        data = gzip_json_lines(extra)
        cut = directory / "c4-sample.00001.json.gz"
        write_atomic(cut, data[: len(data) * 2 // 3])
        paths.append(cut)
    return paths
