import gzip
import pickle
import random

import pytest

from llamaforge.data.samples.books import book_body, gutenberg_file, write_samples
from llamaforge.data.sources.base import FilterReport, config_from_table
from llamaforge.data.sources.books import BooksConfig, BooksSource, strip_gutenberg
from llamaforge.data.sources.minhash_dedup import NearDuplicateIndex, shingles
from llamaforge.errors import ConfigError


def run(source, paths):
    report = FilterReport()
    docs = [doc for path in paths for doc in source.process(path, report)]
    return docs, report


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("books")
    write_samples(directory, n_docs=12, seed=0)
    bad = directory / "gutenberg"
    (bad / "pg3000.txt").write_bytes(b"\x00\x01\x02 binary" * 100)
    (bad / "pg3001.txt").write_bytes("Caf\xe9 au lait\n".encode("latin-1") * 3)
    (bad / "pg3002.txt").write_bytes(b"   \r\n\r\n")
    compressed = gzip.compress(book_body(random.Random(5)).encode())
    (bad / "pg3003.txt.gz").write_bytes(compressed[: len(compressed) // 2])
    (bad / "pg3004.txt").write_bytes(b"a" * 3000 + b"\nshort line\n")
    return directory


def test_process_keeps_books_and_counts_bad_input(sample_dir):
    source = BooksSource(BooksConfig(max_line_bytes=2000))
    docs, report = run(source, source.list_inputs(sample_dir))
    assert [doc.id for doc in docs] == [
        "Copy of 1000.epub",
        "Half of 1001.epub",
        "Sample Book 1001.epub",
        "Sample Book 1003.epub",
        "Sample Book 1005.epub",
        "Sample Book 1007.epub",
        "pg1000",
        "pg1002",
        "pg1004",
        "pg1006",
        "pg1008",
    ]
    assert dict(report.dropped_docs) == {"books.empty": 1}  # pg2000: header and footer only
    assert dict(report.bad_input) == {
        "binary": 1,
        "utf8": 1,
        "empty": 1,
        "truncated": 1,
        "line_too_long": 1,
    }
    assert report.bad_input_examples["utf8"].endswith("pg3001.txt:1")


def test_gutenberg_header_and_footer_are_stripped(sample_dir):
    source = BooksSource(BooksConfig())
    (doc,) = source.process(sample_dir / "gutenberg" / "pg1000.txt", FilterReport())
    assert doc.text.startswith("CHAPTER 1\n\n")
    assert "\r" not in doc.text
    for boilerplate in ("Project Gutenberg", "PROJECT GUTENBERG", "***", "Release date"):
        assert boilerplate not in doc.text
    assert doc.meta["gutenberg"] is True
    assert doc.meta["filters"] == ["books.gutenberg_boilerplate"]
    (books3,) = source.process(sample_dir / "books3" / "Sample Book 1001.epub.txt", FilterReport())
    assert books3.meta["gutenberg"] is False
    assert books3.text.startswith("CHAPTER 1\n\n")


def test_strip_gutenberg_older_and_wrapped_markers():
    old = "Header\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*\nBody.\nEnd of the Project Gutenberg EBook of X\nlicence"
    assert strip_gutenberg(old) == ("Body.\n", True)
    wrapped = "Hdr\n*** START OF THIS PROJECT GUTENBERG EBOOK A VERY\nLONG TITLE ***\nText.\n"
    assert strip_gutenberg(wrapped) == ("Text.\n", True)
    assert strip_gutenberg("Just a book.") == ("Just a book.", False)


def test_near_duplicates_dropped_first_in_order_kept(sample_dir):
    source = BooksSource(BooksConfig())
    docs, _ = run(source, source.list_inputs(sample_dir))
    report = FilterReport()
    kept = list(source.global_filter(docs, report))
    assert [doc.id for doc in docs if doc not in kept] == ["pg1000"]
    assert dict(report.dropped_docs) == {"dedup.near_duplicate": 1}
    (duplicate,) = source.near_duplicates
    assert (duplicate.key, duplicate.duplicate_of) == ("pg1000", "Copy of 1000.epub")
    assert duplicate.jaccard > 0.9
    assert all(doc.meta["filters"][-1] == "dedup.near_duplicate" for doc in kept)
    # The half copy (Jaccard ~0.3) stays at the paper's 0.9 but goes at a threshold of 0.2.
    strict = BooksSource(BooksConfig(dedup_threshold=0.2))
    strict_kept = list(strict.global_filter(run(strict, strict.list_inputs(sample_dir))[0], report))
    dropped = {d.key: d.duplicate_of for d in strict.near_duplicates}
    assert dropped == {"Sample Book 1001.epub": "Half of 1001.epub", "pg1000": "Copy of 1000.epub"}
    assert len(strict_kept) == len(kept) - 1


def test_threshold_is_applied_to_the_jaccard_estimate():
    rng = random.Random(1)
    base = book_body(rng, 30)
    words = base.split(" ")
    # Replace every 25th word: ~20 % of 5-word shingles change, true Jaccard ~0.66-0.7.
    edited = " ".join("zzz" if i % 25 == 0 else w for i, w in enumerate(words))
    a, b = shingles(base, 5), shingles(edited, 5)
    true_jaccard = len(a & b) / len(a | b)
    assert 0.6 < true_jaccard < 0.75
    estimate = (
        NearDuplicateIndex(0.5).signature(base).jaccard(NearDuplicateIndex(0.5).signature(edited))
    )
    assert abs(estimate - true_jaccard) < 0.1
    loose = NearDuplicateIndex(0.9)
    assert loose.check_and_add("a", base) is None and loose.check_and_add("b", edited) is None
    tight = NearDuplicateIndex(0.5)
    assert tight.check_and_add("a", base) is None
    assert tight.check_and_add("b", edited).duplicate_of == "a"


def test_shingles_ignore_case_punctuation_and_wrapping():
    assert shingles("The  cat,\nsat ON the mat.", 3) == shingles("the cat sat on the mat", 3)
    assert shingles("two words", 5) == {b"two words"}


def test_same_file_name_in_two_folders_gets_distinct_keys(tmp_path):
    body = book_body(random.Random(3), 10)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pg1.txt").write_bytes(gutenberg_file("T", 1, body))
    source = BooksSource(BooksConfig())
    docs, _ = run(source, source.list_inputs(tmp_path))
    kept = list(source.global_filter(docs, FilterReport()))
    assert len(kept) == 1 and source.near_duplicates[0].key == "pg1#2"


def test_config_validation_and_pickling():
    for bad in (0, 1, 1.5, "0.9"):
        with pytest.raises(ConfigError, match="dedup_threshold"):
            BooksConfig(dedup_threshold=bad)
    with pytest.raises(ConfigError, match="num_perm"):
        BooksConfig(num_perm=4)
    with pytest.raises(ConfigError, match="shingle_words"):
        config_from_table(BooksConfig, {"shingle_words": 0}, "sources.books")
    config = config_from_table(BooksConfig, {"dedup_threshold": 0.8}, "sources.books")
    assert pickle.loads(pickle.dumps(BooksSource(config))).config.dedup_threshold == 0.8
