"""CCNet's normalisations and two-pass line dedup, checked against hand-derived expectations.

Expected values follow the rules of cc_net's ``text_normalizer.py`` and
``dedup.py`` (read by hand, not computed by our code): the LM normalisation
maps exactly CCNet's 34-character punctuation table and keeps every other
character; the dedup key lowercases, zeroes digits and *deletes* that table's
characters and control characters, keeping accents.
"""

import hashlib

import numpy as np
import pytest

from llamaforge.data.ccnet.line_dedup import (
    LineHashCounter,
    count_duplicates,
    line_hash,
    remove_duplicate_lines,
)
from llamaforge.data.ccnet.normalize import normalize_for_dedup, normalize_line, strip_accents


def test_normalize_line_applies_every_ccnet_step():
    raw = "  Café – 2023 \u201cQuotes\u201d \u2026 Straße\x07 "
    assert normalize_line(raw) == 'cafe - 0000 "quotes" ... straße'
    assert normalize_line("It\u2019s \u00abfine\u00bb\uff0c ok\uff01") == 'it\'s "fine", ok!'
    assert normalize_line("\u0663\u0664 apples") == "00 apples"  # Arabic-Indic digits
    assert normalize_line("one\ntwo") == "onetwo"  # newlines are control characters
    assert normalize_line("   ") == ""


@pytest.mark.parametrize(
    "char",
    ["\u2018", "\u201a", "\u201b", "\u2032", "\u201f", "\u2039", "\u203a", "\u2033", "\u2012",
     "\u2015", "\u2212", "\u00a0"],
)  # fmt: skip
def test_lm_normalisation_keeps_the_characters_ccnet_keeps(char):
    assert normalize_line(f"a{char}b") == f"a{char}b"


def test_strip_accents_keeps_letters_without_combining_marks():
    assert strip_accents("Zoë Müller façade ß") == "Zoe Muller facade ß"


# (line a, line b, same dedup key in CCNet?)
VARIANTS = [
    ("Café au lait", "cafe au lait", False),  # accents are kept
    ("\u201cHello\u201d \u2014 world\u2026", "Hello  world", True),  # table chars deleted
    ("Call 555-1234 now", "call 999-0000 NOW", True),  # digits -> 0, case folded
    ("It\u2019s fine", "Its fine", True),  # right quote is in the table
    ("It's fine", "Its fine", False),  # ASCII apostrophe is not
    ("\u2018quoted", "quoted", False),  # left single quote is not in the table
    ("\uff28ello\uff01", "\uff48ello", True),  # full-width "!" deleted, full-width case folded
    ("\u0663\u0664 apples", "12 apples", True),  # any Unicode digit
    ("a\u00a0b", "a b", False),  # no-break space (160) is not a control character
    ("tab\there", "tabhere", True),  # controls deleted
    ("  padded line  ", "padded line", True),  # surrounding whitespace stripped
    ("résumé", "resume", False),
]


@pytest.mark.parametrize(("a", "b", "same"), VARIANTS)
def test_dedup_key_variants(a, b, same):
    assert (normalize_for_dedup(a) == normalize_for_dedup(b)) is same
    assert (count_duplicates([a, b]).size == 1) is same


def test_hash_is_the_first_8_bytes_of_sha1_little_endian():
    # sha1("") = da39a3ee 5e6b4b0d ...: its first 8 bytes read as a little-endian uint64.
    assert line_hash("") == 0x0D4B6B5EEEA339DA
    assert line_hash("abc") == int.from_bytes(hashlib.sha1(b"abc").digest()[:8], "little")


def test_lines_shared_by_two_documents_go_everywhere_and_inner_repeats_keep_the_first():
    docs = [
        "Unique opening line one.\nCopyright 2019 Example. All rights reserved.",
        "COPYRIGHT 2023 EXAMPLE. ALL RIGHTS RESERVED.\nAnother unique line.",
        "Menu\nA third page with nothing shared.\nmenu\nMENU",
        "copyright 1999 example. all rights reserved.",
    ]
    duplicates = count_duplicates(docs)
    assert duplicates.tolist() == [line_hash("copyright 0000 example. all rights reserved.")]
    assert remove_duplicate_lines(docs[0], duplicates) == ("Unique opening line one.", 1)
    assert remove_duplicate_lines(docs[1], duplicates) == ("Another unique line.", 1)
    # "Menu" repeats only inside one page: not a duplicate, its first copy is kept.
    assert remove_duplicate_lines(docs[2], duplicates) == (
        "Menu\nA third page with nothing shared.",
        2,
    )
    assert remove_duplicate_lines(docs[3], duplicates) == ("", 1)  # nothing left: dropped


def test_a_line_twice_in_one_page_and_once_in_another_is_removed_from_both():
    docs = ["Shared line.\nkeep a\nshared line.", "keep b\nSHARED LINE."]
    duplicates = count_duplicates(docs)
    assert remove_duplicate_lines(docs[0], duplicates) == ("keep a", 2)
    assert remove_duplicate_lines(docs[1], duplicates) == ("keep b", 1)


def test_counter_result_does_not_depend_on_chunking():
    docs = [f"line {i % 7} word{i % 5}\nshared line\nunique {chr(97 + i)}" for i in range(12)]
    small = LineHashCounter(chunk_lines=2)
    for doc in docs:
        small.add_document(doc)
    big = count_duplicates(docs)
    assert np.array_equal(small.duplicates(), big)
    assert big.dtype == np.uint64 and np.all(big[:-1] < big[1:])
    kept, _ = remove_duplicate_lines(docs[0], big)
    assert kept == "unique a"
