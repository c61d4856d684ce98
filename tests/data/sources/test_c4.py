import gzip
import json
import pickle

import pytest

from llamaforge.data.samples.c4 import write_samples
from llamaforge.data.sources.base import FilterReport, config_from_table
from llamaforge.data.sources.c4 import C4Config, C4Source, c4_clean
from llamaforge.data.sources.c4_rules import split_sentences
from llamaforge.errors import ConfigError

PROSE = [
    "The harbour opened at dawn. Boats left for the islands.",
    "Fishermen sold their catch at the market. Prices were fair today!",
    "Children watched the ships from the pier.",
]


def page(*extra: str) -> str:
    return "\n".join([*PROSE, *extra])


def run(source, paths):
    report = FilterReport()
    docs = [doc for path in paths for doc in source.process(path, report)]
    return docs, report


def write_jsonl_gz(path, texts):
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"text": text, "url": f"https://x.org/{i}", "timestamp": "t"}))
            out.write("\n")
    return path


def test_line_rules_remove_lines_and_keep_prose():
    text = page(
        "Home | About | Contact",  # no terminal punctuation
        "Read more...",  # ellipsis is not an ending
        "Click here.",  # two words < min_words_per_line
        "Please enable JavaScript to view the comments.",
        "This site uses cookies to give you the best experience.",
        "He said it was \u201cthe best day of the year.\u201d",  # TFDS: a curly quote is no end
        'He said it was "the best day of the year."',  # a straight one is
        "The bridge was painted [1] last year.",  # citation marker deleted (spaces stay)
    )
    cleaned, reason = c4_clean(text)
    assert reason == ""
    assert cleaned.splitlines() == [
        *PROSE,
        'He said it was "the best day of the year."',
        "The bridge was painted  last year.",
    ]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Lorem ipsum dolor sit amet, consectetur adipiscing.", "c4.lorem_ipsum"),
        ("Call the function with { debug: true } set.", "c4.curly_bracket"),
        ("This shop sells cheap viagra online.", "c4.bad_words"),
    ],
)
def test_page_rules_drop_with_reason(extra, reason):
    assert c4_clean(page(extra)) == (None, reason)


def test_curly_bracket_only_counts_on_surviving_lines():
    # TFDS order: a code line without terminal punctuation is removed before the "{" check.
    cleaned, reason = c4_clean(page("function init() { run() }"))
    assert reason == "" and "{" not in cleaned


def test_min_sentences_and_min_words_per_line_thresholds():
    # TFDS defaults: lines of >= 5 words, pages of >= 3 sentences.
    three = ["One two three four five. Six seven eight nine ten.", "Eleven twelve thirteen x y."]
    assert c4_clean("\n".join(three))[1] == ""
    assert c4_clean(three[0])[1] == "c4.min_sentences"
    assert c4_clean("\n".join([three[0], "Four words only here."]))[1] == "c4.min_sentences"
    config = C4Config(min_words_per_line=4, min_sentences=1)
    assert c4_clean("Three words here.", config) == (None, "c4.min_sentences")
    assert c4_clean("Now four words here.", config) == ("Now four words here.", "")
    assert c4_clean(page(), C4Config(min_words=40))[1] == "c4.min_words"


def test_bad_words_match_whole_words_from_a_file(tmp_path):
    words = tmp_path / "en.txt"
    words.write_text("# LDNOOBW-style list\nrotten egg\nrot\n", encoding="utf-8")
    config = C4Config(badwords_path=str(words))
    assert c4_clean(page("They found a Rotten Egg in the box."), config)[1] == "c4.bad_words"
    assert c4_clean(page("Carrots grow slowly in rotation."), config)[1] == ""
    assert c4_clean(page("This shop sells cheap viagra online."), config)[1] == ""
    assert c4_clean(page("A rotten egg smell."), C4Config(use_badwords=False))[1] == ""


def test_sentence_splitter():
    assert split_sentences('He left. "Why?" she asked! Then silence') == [
        "He left.",
        '"Why?"',
        "she asked!",
        "Then silence",
    ]


def test_samples_kept_and_dropped_by_reason(tmp_path):
    paths = write_samples(tmp_path, n_docs=20, seed=0)
    source = pickle.loads(pickle.dumps(C4Source(C4Config())))
    assert source.list_inputs(tmp_path) == sorted(paths)
    docs, report = run(source, source.list_inputs(tmp_path))
    # Pages of the cut-off file that precede the cut are kept too.
    before_cut = [doc for doc in docs if doc.id.startswith("https://cut.example.org/")]
    assert before_cut and len(before_cut) < 6
    docs = [doc for doc in docs if doc not in before_cut]
    assert report.kept_docs == len(docs) + len(before_cut) and len(docs) == 10
    assert dict(report.dropped_docs) == {
        "c4.lorem_ipsum": 2,
        "c4.curly_bracket": 2,
        "c4.bad_words": 2,
        "c4.min_sentences": 2,
        "c4.dedup": 2,
    }
    assert dict(report.bad_input) == {"truncated": 1}
    assert all("/good/" in doc.id for doc in docs)
    first = docs[0]
    assert first.source == "c4" and first.meta["url"] == first.id
    assert first.meta["c4_lines_removed"] == {
        "javascript": 1,
        "min_words_per_line": 1,
        "policy": 1,
        "terminal_punct": 1,
    }
    assert "JavaScript" not in first.text and "Home |" not in first.text


def test_three_sentence_dedup_removes_repeated_span_only(tmp_path):
    new = [
        "A new cafe opened nearby. It serves soup daily.",
        "Its owner is from Lyon. Lunch is busy.",
    ]
    second = "\n".join([PROSE[0] + " " + PROSE[1], *new])
    path = write_jsonl_gz(tmp_path / "a.jsonl.gz", [page(), second])
    docs, report = run(C4Source(C4Config(min_sentences=3)), [path])
    assert len(docs) == 2 and not report.dropped_docs
    assert docs[1].text.splitlines() == new
    assert docs[1].meta["c4_lines_removed"]["dedup_sentences"] == 4


def test_dedup_scope_file_versus_source(tmp_path):
    write_jsonl_gz(tmp_path / "a.jsonl.gz", [page()])
    write_jsonl_gz(tmp_path / "b.jsonl.gz", [page()])
    for scope, expected in (("file", 2), ("source", 1), ("none", 2)):
        source = C4Source(C4Config(min_sentences=3, dedup_scope=scope))
        docs, _ = run(source, source.list_inputs(tmp_path))
        final_report = FilterReport()
        final = list(source.global_filter(docs, final_report))
        assert len(final) == expected, scope
        assert final_report.dropped_docs["c4.dedup"] == 2 - expected


def test_bad_records_are_counted_not_fatal(tmp_path):
    good = json.dumps({"text": page(), "url": "https://ok.org"}).encode()
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\n".join([b"{not json", b'{"text": "caf\xe9"}', b'{"url": "no text"}', b"x" * 5000, good])
        + b"\n"
    )
    (tmp_path / "empty.jsonl").write_bytes(b"")
    source = C4Source(C4Config(min_sentences=3, max_record_bytes=2000))
    docs, report = run(source, source.list_inputs(tmp_path))
    assert [doc.id for doc in docs] == ["https://ok.org"]
    assert dict(report.bad_input) == {
        "json": 1,
        "utf8": 1,
        "schema": 1,
        "empty": 1,
        "line_too_long": 1,
    }


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError, match=r"\[sources.c4\].dedup_scope"):
        C4Config(dedup_scope="global")
    with pytest.raises(ConfigError, match="min_sentences"):
        config_from_table(C4Config, {"min_sentences": -1}, "sources.c4")
    with pytest.raises(ConfigError, match="badwords_path"):
        C4Config(badwords_path=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_table(C4Config, {"min_sentence": 3}, "sources.c4")
