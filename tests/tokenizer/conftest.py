"""One small tokenizer per test session, trained on a corpus the tests generate themselves."""

from __future__ import annotations

import random

import pytest

from llamaforge.tokenizer import Tokenizer, train_tokenizer

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "his",
    "an",
    "were",
    "are",
    "which",
    "this",
    "be",
    "or",
    "has",
    "had",
    "first",
    "one",
    "their",
    "its",
    "new",
    "after",
    "who",
    "they",
    "have",
    "her",
    "she",
    "two",
    "been",
    "other",
    "when",
    "there",
    "all",
    "during",
    "into",
    "school",
    "time",
    "may",
    "years",
    "more",
    "most",
    "only",
    "over",
    "city",
    "some",
    "world",
    "would",
    "where",
    "later",
    "up",
    "such",
    "used",
    "many",
    "can",
    "state",
    "about",
    "national",
    "out",
    "known",
    "university",
    "united",
    "then",
    "made",
    "model",
    "token",
    "language",
    "training",
    "data",
    "llama",
    "paper",
    "transformer",
    "attention",
    "layer",
]
CODE = [
    "def {w}({v}):",
    "    return {v} + {n}",
    "    if {v} is None:",
    "        {v} = [{n}, {n}]",
    "class {W}:",
    "    # {w} {w} {w}",
    "for {v} in range({n}):",
]


def make_corpus(n_docs: int = 300, seed: int = 0) -> list[str]:
    """Prose with numbers plus Python-like code (~150 KB): deterministic, offline."""
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        if d % 3 == 2:
            lines = [
                rng.choice(CODE).format(
                    w=rng.choice(WORDS),
                    W=rng.choice(WORDS).title(),
                    v=rng.choice(WORDS)[:3],
                    n=rng.randint(0, 10 ** rng.randint(1, 6)),
                )
                for _ in range(rng.randint(5, 25))
            ]
        else:
            lines = []
            for _ in range(rng.randint(1, 6)):
                words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
                words[rng.randrange(len(words))] = str(rng.randint(0, 10**5))
                lines.append(" ".join(words).capitalize() + ".")
        docs.append("\n".join(lines))
    return docs


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Tokenizer:
    out = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    return train_tokenizer(out, texts=corpus, vocab_size=600, progress=False, num_threads=1)
