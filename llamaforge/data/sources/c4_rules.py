r"""The building blocks of C4's cleaning (Raffel et al. 2020, §2.2), kept free of I/O.

:func:`llamaforge.data.sources.c4.c4_clean` composes them; they live apart so
that other sources (or a notebook) can reuse one rule, e.g. the bad-word
matcher, without the JSON-lines reader around them.

The rules follow the TFDS ``c4_utils.clean_page`` code that produced the
public dataset; where we differ it is said here:

* **Terminal punctuation** is TFDS's ``_END_MARKS``: ``.``, ``?``, ``!`` and
  the straight double quote ``"``; a line ending in ``...`` is removed. Curly
  closing quotes and ``»`` are *not* sentence ends ("Read more »" goes).
* **Citations**: TFDS's regex ``\[\d*\]|\[edit\]|\[citation needed\]``
  (case-sensitive) is deleted from the line, which is not stripped again, so
  "text. [1]" then ends in a space and is removed, as in TFDS.
* **Sentences** (counted for ``min_sentences``): TFDS uses NLTK's Punkt
  English model, which cannot be downloaded here. :func:`split_sentences` is
  a regex splitter that ends a sentence at ``.``/``!``/``?`` (plus closing
  quotes or brackets) followed by whitespace, except after a known
  abbreviation (:data:`ABBREVIATIONS`: titles, "e.g.", "U.S.", "p.m.", months
  ...) or a single-letter initial, which is what Punkt's English model learnt
  not to split. It is ~20x faster than Punkt; the tests measure page-level
  agreement against a literal re-statement of ``clean_page`` on Punkt.
* **Bad words** match whole words or phrases of the lower-cased page (TFDS:
  ``(?:\W|^)(words)(?:\W|$)``), after cleaning. The built-in list is a tiny
  placeholder so the rule is testable offline; point ``badwords_path`` at the
  LDNOOBW English list (one entry per line) to reproduce C4.
* **Three-sentence dedup** hashes each window of three consecutive sentences
  (lower-cased, whitespace collapsed), as the C4 paper describes. (TFDS's
  code instead dedups whole lines across the dataset.) A later page loses
  every sentence that lies in a window seen before; the first occurrence survives.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from llamaforge.errors import ConfigError

# TFDS _END_MARKS and _ELLIPSIS: a line is kept only if it ends with a mark, not "...".
TERMINAL_PUNCTUATION = (".", "?", "!", '"')
ELLIPSES = ("...",)
# Substrings of cookie and policy notices (TFDS _POLICY_SUBSTRINGS); such lines are removed.
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# TFDS's citation regex (Wikipedia-style markers), deleted from each line.
CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# A candidate sentence end: . ! ? (a run), optional closing quotes/brackets, whitespace.
# The ending is captured (and glued back by split_sentences) rather than matched by
# lookbehind: a pattern that starts with a character set lets re skip ahead in C.
# Linear time: a match can only start a run of . ! ? (the lookbehind; a match from inside
# a run would also match from its start, which re tries first) and the possessive
# quantifiers never give back characters (backtracking into the run or the closers can
# never reach whitespace), so ('.' * 999 + 'x ') * 1000 no longer takes seconds per 1 MB.
# Results are those of r"([.!?]+[closers]*)\s+".
_SENTENCE_END = re.compile(r"([.!?](?<![.!?]{2})[.!?]*+[\"'\u201d\u2019\u00bb)\]]*+)\s+")
# Words (lower-cased, without their final ".") after which a "." does not end a sentence.
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "rev",
        "gen",
        "col",
        "capt",
        "lt",
        "sgt",
        "gov",
        "sen",
        "rep",
        "hon",
        "messrs",
        "mt",
        "ft",
        "e.g",
        "i.e",
        "u.s",
        "u.k",
        "u.n",
        "a.m",
        "p.m",
        "etc",
        "vs",
        "al",
        "cf",
        "inc",
        "ltd",
        "co",
        "corp",
        "bros",
        "dept",
        "est",
        "approx",
        "no",
        "nos",
        "vol",
        "vols",
        "fig",
        "figs",
        "ed",
        "eds",
        "pp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "ave",
        "blvd",
        "rd",
        "univ",
        "assn",
        "ph.d",
        "d.c",
        "n.y",
        "l.a",
    ]
)
# Placeholder entries only; real runs use the LDNOOBW list (see module docstring).
DEFAULT_BADWORDS = ("xxx", "porn", "viagra", "camgirl", "nsfw")


def _is_abbreviation(text: str) -> bool:
    """Whether ``text`` (ending in ".") ends with an abbreviation or an initial."""
    word = text.rsplit(None, 1)[-1].lstrip("\"'(\u201c\u2018[").lower()[:-1]
    return len(word) == 1 and word.isalpha() or word in ABBREVIATIONS


def split_sentences(line: str) -> list[str]:
    """Sentences of one line (regex splitter; see the module docstring)."""
    parts = _SENTENCE_END.split(line)  # text, ending, text, ending, ..., text
    if len(parts) == 1:
        return [line.strip()] if line.strip() else []
    sentences: list[str] = []
    current = ""
    for i in range(0, len(parts) - 1, 2):
        current += parts[i] + parts[i + 1]
        if parts[i + 1] == "." and _is_abbreviation(current):
            current += " "
            continue
        if current.strip():
            sentences.append(current.strip())
        current = ""
    current += parts[-1]
    if current.strip():
        sentences.append(current.strip())
    return sentences


def ends_with_terminal_punctuation(line: str) -> bool:
    return line.endswith(TERMINAL_PUNCTUATION) and not line.endswith(ELLIPSES)


def has_policy_text(line_lower: str) -> bool:
    return any(phrase in line_lower for phrase in POLICY_SUBSTRINGS)


def read_word_list(path: str) -> tuple[str, ...]:
    """Entries of a bad-word file: one word or phrase per line, ``#`` comments allowed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"[sources.c4].badwords_path: cannot read {path} ({error}); "
            "give a UTF-8 file with one word per line, e.g. the LDNOOBW 'en' list"
        ) from error
    words = []
    for raw in text.splitlines():
        word = raw.split("#", 1)[0].strip().lower()
        if word:
            words.append(word)
    return tuple(words)


@functools.lru_cache(maxsize=8)
def badword_pattern(path: str) -> re.Pattern[str] | None:
    """One compiled whole-word alternation for the list at ``path`` ("" = built-in list).

    Cached per path so each worker process reads and compiles the list once.
    """
    words = DEFAULT_BADWORDS if not path else read_word_list(path)
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _normalise(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def _span_key(sentences: list[str]) -> bytes:
    """Key of a span: its sentences lower-cased, whitespace collapsed, hashed."""
    return _key(" ".join(" ".join(sentences).lower().split()))


def _key(normalised: str) -> bytes:
    # surrogatepass: a lone surrogate (JSON "\ud800" decodes to one) must not raise here and
    # fail the whole file; its bytes are invalid UTF-8, so no real sentence shares them.
    return hashlib.blake2b(normalised.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class SentenceSpanDedup:
    """Remembers three-sentence spans; removes from a page the spans seen on earlier pages.

    Memory is 8 bytes of digest (plus set overhead, ~60 bytes) per distinct span
    seen, which is why the default scope is one input file.
    """

    def __init__(self, span: int = 3) -> None:
        self.span = span
        self.seen: set[bytes] = set()

    def _windows(self, sentences: list[str]) -> list[bytes]:
        # Each sentence is normalised once, not once per window it is in; the keys equal
        # _span_key's (blank sentences contribute nothing to either).
        normalised = list(map(_normalise, sentences))
        count = len(sentences) - self.span + 1
        return [
            _key(" ".join(filter(None, normalised[i : i + self.span])))
            for i in range(max(count, 0))
        ]

    def remove_seen(self, lines: list[list[str]]) -> tuple[list[list[str]], int, list[bytes]]:
        """``lines`` (each a list of sentences) without sentences inside already-seen spans.

        Returns the surviving sentences of each line (aligned with ``lines``,
        empty where a whole line went), how many sentences were removed, and the
        page's span keys, which the caller passes to :meth:`remember` only if
        the page is kept (a dropped page must not block a later copy).
        """
        keys = self._windows([s for sentences in lines for s in sentences])
        seen = self.seen
        hits = [start for start, key in enumerate(keys) if key in seen]
        if not hits:  # the usual case: nothing to remove, skip rebuilding the lines
            return [list(sentences) for sentences in lines], 0, keys
        flat = [(li, s) for li, sentences in enumerate(lines) for s in sentences]
        removed = [False] * len(flat)
        for start in hits:
            for offset in range(self.span):
                removed[start + offset] = True
        kept_lines: list[list[str]] = [[] for _ in lines]
        for (line_index, sentence), gone in zip(flat, removed, strict=True):
            if not gone:
                kept_lines[line_index].append(sentence)
        return kept_lines, sum(removed), keys

    def remember(self, keys: Iterable[bytes]) -> None:
        self.seen.update(keys)
