import numpy as np

from llamaforge.data.ccnet.line_dedup import (
    LineHashCounter,
    count_duplicates,
    line_hash,
    remove_duplicate_lines,
)
from llamaforge.data.ccnet.normalize import normalize_line, strip_accents


def test_normalize_line_applies_every_ccnet_step():
    raw = "  Café – 2023 \u201cQuotes\u201d \u2026 Straße\x07 "
    assert normalize_line(raw) == 'cafe - 0000 "quotes" ... straße'


def test_normalize_folds_typographic_punctuation_and_unicode_digits():
    assert normalize_line("It\u2019s \u00abfine\u00bb\uff0c ok\uff01") == 'it\'s "fine", ok!'
    assert normalize_line("\u0663\u0664 apples") == "00 apples"  # Arabic-Indic digits
    assert normalize_line("   ") == ""


def test_strip_accents_keeps_letters_without_combining_marks():
    assert strip_accents("Zoë Müller façade ß") == "Zoe Muller facade ß"


def test_every_copy_of_a_repeated_line_is_removed_across_the_shard():
    docs = [
        "Unique opening line one.\nCopyright 2019 Example. All rights reserved.",
        "COPYRIGHT 2023 EXAMPLE. ALL RIGHTS RESERVED.\nAnother unique line.",
        "\n\nA third page with nothing shared.\n",
    ]
    duplicates = count_duplicates(docs)
    assert duplicates.tolist() == [line_hash("copyright 0000 example. all rights reserved.")]
    first, removed_first = remove_duplicate_lines(docs[0], duplicates)
    second, removed_second = remove_duplicate_lines(docs[1], duplicates)
    third, removed_third = remove_duplicate_lines(docs[2], duplicates)
    assert (first, removed_first) == ("Unique opening line one.", 1)
    assert (second, removed_second) == ("Another unique line.", 1)
    assert (third, removed_third) == ("A third page with nothing shared.", 0)


def test_line_repeated_inside_one_page_is_a_duplicate_too():
    duplicates = count_duplicates(["Menu\nreal text\nmenu"])
    assert remove_duplicate_lines("Menu\nreal text\nmenu", duplicates) == ("real text", 2)


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
