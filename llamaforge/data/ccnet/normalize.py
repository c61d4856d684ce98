"""CCNet's two line normalisations: one for the n-gram LM, one for line dedup.

Two lines that differ only in case, digits or typographic punctuation
("Copyright © 2019 …" vs "copyright © 2021 ...") are the same boilerplate,
and a KenLM model trained on normalised Wikipedia must be queried with text
normalised the same way. CCNet (``cc_net/text_normalizer.py``) has two
functions for that, reproduced here step for step:

:func:`normalize_line` (CCNet's ``normalize``, what its LMs were trained on):

1. strip surrounding whitespace;
2. lowercase;
3. remove accents (Unicode NFD, drop combining marks ``Mn``: "café" ->
   "cafe"; the rest stays decomposed, as in CCNet);
4. every Unicode decimal digit -> ``0`` ("2023" -> "0000");
5. map the 34 characters of CCNet's punctuation table (:data:`UNICODE_PUNCT`)
   to ASCII (``“`` -> ``"``, ``…`` -> ``...``, ``—`` -> `` - ``); every
   other character, e.g. ``‘`` or a no-break space, is kept;
6. drop control characters (code points 0-31 and 127-159), newlines included.

:func:`normalize_for_dedup` (CCNet's ``normalize_for_dedup``, hashed by its
line dedup): strip, lowercase, digits -> ``0``, then *delete* the table's
characters and the control characters. Accents are kept, so "resume" and
"résumé" are different lines there, while "“Hello”" and "Hello" are one.
"""

from __future__ import annotations

import re
import unicodedata

# CCNet's punctuation table (cc_net text_normalizer.UNICODE_PUNCT), by code point.
# U+FF11 (full-width "1") maps to '"' there too; digits are zeroed first, so it never fires.
UNICODE_PUNCT: dict[str, str] = {
    "\u00ab": '"', "\u00b4": "'", "\u00bb": '"', "\u2013": "-", "\u2014": " - ",
    "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2026": "...",
    "\u2236": ":", "\u2501": "-", "\u25ba": "-", "\u3001": ",", "\u3002": ".",
    "\u3008": "<", "\u3009": ">", "\u300a": '"', "\u300b": '"', "\u300c": '"',
    "\u300d": '"', "\u3010": "[", "\u3011": "]", "\uff01": "!", "\uff05": "%",
    "\uff08": "(", "\uff09": ")", "\uff0c": ",", "\uff0e": ". ", "\uff11": '"',
    "\uff1a": ":", "\uff1b": ";", "\uff1f": "?", "\uff5e": "~",
}  # fmt: skip
_PUNCT_TABLE = str.maketrans(UNICODE_PUNCT)
# str.translate looks every character up in a dict: run it only on lines that need it.
_PUNCT_CHARS = re.compile("[" + "".join(UNICODE_PUNCT) + "]")
_DIGIT = re.compile(r"\d")
_CONTROL = "".join(map(chr, [*range(0, 32), *range(127, 160)]))
_NON_PRINTING = re.compile("[" + re.escape(_CONTROL) + "]")
_PUNCT_OR_NON_PRINTING = re.compile("[" + "".join(UNICODE_PUNCT) + re.escape(_CONTROL) + "]")
# The same steps for an ASCII line, as one bytes.translate: digits -> "0", controls deleted
# (ASCII has no accents and none of the table's punctuation). Most web lines are ASCII.
_ASCII_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_ASCII_NON_PRINTING = bytes([*range(0, 32), 127])


def strip_accents(text: str) -> str:
    """Drop combining marks after canonical decomposition ("é" -> "e", "ß" stays)."""
    decomposed = unicodedata.normalize("NFD", text)
    if decomposed.isascii():
        return decomposed
    # Classify each distinct character once, then delete each mark with str.replace (C);
    # a per-character category() test in Python was the hot spot of CommonCrawl line dedup.
    for char in set(decomposed):
        if not char.isascii() and unicodedata.category(char) == "Mn":
            decomposed = decomposed.replace(char, "")
    return decomposed


def normalize_line(line: str) -> str:
    """A line (or a whole document) as CCNet's LM sees it: CCNet's ``normalize``."""
    line = line.strip()
    if not line:
        return line
    if line.isascii():
        data = line.lower().encode("ascii")
        return data.translate(_ASCII_DIGITS_TO_ZERO, _ASCII_NON_PRINTING).decode("ascii")
    line = strip_accents(line.lower())
    line = _DIGIT.sub("0", line)
    if _PUNCT_CHARS.search(line):
        line = line.translate(_PUNCT_TABLE)
    return _NON_PRINTING.sub("", line)


def normalize_for_dedup(line: str) -> str:
    """A line as CCNet's line dedup hashes it: CCNet's ``normalize_for_dedup``."""
    line = line.strip()
    if not line:
        return line
    if line.isascii():
        data = line.lower().encode("ascii")
        return data.translate(_ASCII_DIGITS_TO_ZERO, _ASCII_NON_PRINTING).decode("ascii")
    return _PUNCT_OR_NON_PRINTING.sub("", _DIGIT.sub("0", line.lower()))
