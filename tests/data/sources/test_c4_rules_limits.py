"""c4_rules on hostile text: the sentence splitter is linear, odd code points do not raise."""

import random
import re
import time

from llamaforge.data.sources import c4_rules

# The splitter's original (backtracking) pattern: results must stay exactly its results.
REFERENCE = re.compile(r"([.!?]+[\"'\u201d\u2019\u00bb)\]]*)\s+")


def test_sentence_end_matches_the_reference_pattern():
    rng = random.Random(0)
    alphabet = ".!?ab \"')]\u201d\u00bb\n\t"
    for _ in range(50_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert c4_rules._SENTENCE_END.split(text) == REFERENCE.split(text), text
    normal = 'He said "stop." Then Mr. Smith left!  Was it (really) over?) Yes... ok.'
    assert c4_rules.split_sentences(normal) == [
        'He said "stop."',
        "Then Mr. Smith left!",
        "Was it (really) over?)",
        "Yes...",
        "ok.",
    ]


def test_long_runs_of_dots_split_in_linear_time():
    line = ("." * 999 + "x ") * 1000  # 1 MB: 12 s with the reference pattern
    start = time.perf_counter()
    sentences = c4_rules.split_sentences(line)
    assert time.perf_counter() - start < 2.0  # ~0.03 s
    assert sentences == [line.strip()]  # no run of dots is followed by whitespace


def test_span_key_of_a_lone_surrogate_does_not_raise():
    key = c4_rules._span_key(["One sentence.", "And a \ud800 second.", "Third one."])
    assert key != c4_rules._span_key(["One sentence.", "And a  second.", "Third one."])
