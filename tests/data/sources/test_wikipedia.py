import bz2
import io
import pickle
import random
import tracemalloc

import pytest

from llamaforge.data.samples.wikipedia import (
    FOOTER,
    article_wikitext,
    dump_header,
    page_xml,
    write_samples,
)
from llamaforge.data.sources.base import FilterReport, config_from_table
from llamaforge.data.sources.wikipedia import (
    MAX_DEPTH,
    PAPER_LANGUAGES,
    WikipediaConfig,
    WikipediaSource,
    _iter_pages,
    dump_language,
)
from llamaforge.data.sources.wikitext import wikitext_to_text
from llamaforge.errors import ConfigError


def run(source, paths):
    report = FilterReport()
    docs = [doc for path in paths for doc in source.process(path, report)]
    return docs, report


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wiki")
    write_samples(directory, n_docs=20, seed=0)
    source = WikipediaSource(WikipediaConfig())
    return run(source, source.list_inputs(directory))


def test_samples_keep_articles_and_drop_each_kind_with_its_reason(sample_run):
    docs, report = sample_run
    assert [doc.id for doc in docs] == [
        "de:Sample town 10001",
        "de:Sample town 10002",
        "en:Sample town 1",
        "en:Sample town 2",
        "en:Sample town 6",
        "en:Sample town 7",
        "en:Sample town 8",
        # the truncated multistream dump: its first stream's two pages survive
        "fr:Sample town 20001",
        "fr:Sample town 20002",
    ]
    assert dict(report.dropped_docs) == {
        "wikipedia.namespace": 3,
        "wikipedia.redirect": 3,
        "wikipedia.too_short": 1,
    }
    assert dict(report.bad_input) == {"truncated": 1}
    assert "frwiki" in report.bad_input_examples["truncated"]
    assert report.kept_docs == len(docs)


def test_markup_is_removed_and_link_text_kept(sample_run):
    docs, _ = sample_run
    text = docs[0].text
    assert text.startswith("Sample town 10001 is a small town in the Alps.")
    for removed in ("SECRETCAPTION", "TABLECELL", "Smith 2001", "cite web", "Infobox", "Towns"):
        assert removed not in text
    for markup in ("[[", "]]", "{{", "'''", "<ref", "<!--", "==", "{|"):
        assert markup not in text
    assert "See the website." in text
    assert "\nHistory\n" in text
    assert "\n\n\n" not in text


def test_meta_records_page_revision_and_language(sample_run):
    docs, _ = sample_run
    doc = docs[2]
    assert doc.source == "wikipedia"
    assert doc.meta["page_id"] == 1
    assert doc.meta["revision_id"] == 11
    assert doc.meta["language"] == "en"
    assert doc.meta["file"] == "enwiki-20230401-pages-articles1.xml.bz2"
    assert "wikipedia.min_chars" in doc.meta["filters"]


def test_wikitext_cleaner_on_each_construct():
    text = wikitext_to_text(
        "A [[Paris|capital]] and [[Lyon]] city.{{Citation needed|date=2020}}"
        "<ref>{{cite book|title=Hidden}}</ref><!-- note -->\n"
        "[[Image:X.png|thumb|caption words]][[Kategorie:Orte]][[fr:Paris]]"
        "[[:Category:Towns|towns list]] __NOTOC__ &amp; '''bold''' <b>tag</b>\n\n\n\n\nEnd."
    )
    assert text == "A capital and Lyon city.\ntowns list & bold tag\n\nEnd."


def test_language_from_file_name_and_configured_languages(tmp_path):
    assert dump_language(tmp_path / "svwiki-latest-pages-articles.xml") == "sv"
    assert dump_language(tmp_path / "enwiki-20230401-pages-articles-multistream3.xml.bz2") == "en"
    assert dump_language(tmp_path / "enwiki-20230401-stub-meta-history.xml.gz") is None
    for name in ("enwiki", "dewiki", "jawiki"):
        (tmp_path / f"{name}-20230401-pages-articles.xml.bz2").write_bytes(b"")
    default = WikipediaSource(WikipediaConfig())
    assert [p.name[:2] for p in default.list_inputs(tmp_path)] == ["de", "en"]  # ja not in paper
    only_en = WikipediaSource(WikipediaConfig(languages=["en"]))
    assert [p.name[:2] for p in only_en.list_inputs(tmp_path)] == ["en"]
    assert len(PAPER_LANGUAGES) == 20


def _plain_dump(tmp_path, body, name="enwiki-20230401-pages-articles.xml", namespace=None):
    header = dump_header("en")
    if namespace:
        header = header.replace("export-0.10/", namespace)
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_malformed_xml_keeps_pages_before_the_fault(tmp_path):
    good = page_xml("Good", 0, 1, article_wikitext(random.Random(0), "Good"))
    path = _plain_dump(tmp_path, good + "  <page><title>Broken</titel></page>\n" + FOOTER)
    docs, report = run(WikipediaSource(WikipediaConfig()), [path])
    assert [doc.id for doc in docs] == ["en:Good"]
    assert dict(report.bad_input) == {"xml": 1}


def test_other_export_schema_versions_are_accepted(tmp_path):
    good = page_xml("Good", 0, 1, article_wikitext(random.Random(0), "Good"))
    path = _plain_dump(tmp_path, good + FOOTER, namespace="export-0.11/")
    docs, report = run(WikipediaSource(WikipediaConfig()), [path])
    assert [doc.id for doc in docs] == ["en:Good"]
    assert not report.bad_input


def test_not_a_dump_empty_and_garbage_files_are_bad_input(tmp_path):
    other = tmp_path / "enwiki-20230401-pages-articles1.xml"
    other.write_text("<html><body>not a dump</body></html>")
    empty = tmp_path / "enwiki-20230401-pages-articles2.xml.bz2"
    empty.write_bytes(b"")
    garbage = tmp_path / "enwiki-20230401-pages-articles3.xml.bz2"
    garbage.write_bytes(b"\x00\x01garbage that is not bz2" * 10)
    docs, report = run(WikipediaSource(WikipediaConfig()), [other, empty, garbage])
    assert docs == []
    assert dict(report.bad_input) == {"xml": 1, "empty": 1, "not_bz2": 1}


def test_min_chars_threshold(tmp_path):
    page = page_xml("Short", 0, 1, "{{Infobox}}'''Short''' is a village in the valley.")
    path = tmp_path / "enwiki-20230401-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress((dump_header("en") + page + FOOTER).encode()))
    kept, _ = run(WikipediaSource(WikipediaConfig(min_chars=33)), [path])
    assert [doc.text for doc in kept] == ["Short is a village in the valley."]
    dropped, report = run(WikipediaSource(WikipediaConfig(min_chars=34)), [path])
    assert dropped == [] and report.dropped_docs["wikipedia.too_short"] == 1


def test_config_validation_and_pickling():
    with pytest.raises(ConfigError, match="min_chars"):
        WikipediaConfig(min_chars=-1)
    with pytest.raises(ConfigError, match="languages"):
        WikipediaConfig(languages=[])
    with pytest.raises(ConfigError, match="languages"):
        WikipediaConfig(languages=["EN wiki"])
    with pytest.raises(ConfigError, match="min_char"):
        config_from_table(WikipediaConfig, {"min_char": 5}, "sources.wikipedia")
    config = config_from_table(WikipediaConfig, {"languages": ["de"]}, "sources.wikipedia")
    source = pickle.loads(pickle.dumps(WikipediaSource(config)))
    assert source.config.languages == ["de"]


_NS = "http://www.mediawiki.org/xml/export-0.10/"


def _page(page_id, title):
    body = f"'''{title}''' is an article. " + "It has plenty of prose to keep. " * 10
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>{page_id}</id>\n"
        f"    <revision><id>{page_id + 1000}</id><text>{body}</text></revision>\n  </page>\n"
    )


def write_multistream(folder, streams):
    """A dump as Wikimedia writes it: header stream, one stream per page group, footer."""
    header = f'<mediawiki xmlns="{_NS}" xml:lang="en">\n  <siteinfo><sitename>W</sitename>'
    parts = [bz2.compress((header + "</siteinfo>\n").encode())]
    index_lines, offset = [], len(parts[0])
    for pages in streams:
        data = bz2.compress("".join(_page(i, t) for i, t in pages).encode())
        index_lines += [f"{offset}:{i}:{t}" for i, t in pages]
        parts.append(data)
        offset += len(data)
    parts.append(bz2.compress(b"</mediawiki>\n"))
    dump = folder / "enwiki-20230301-pages-articles-multistream.xml.bz2"
    dump.write_bytes(b"".join(parts))
    index = folder / "enwiki-20230301-pages-articles-multistream-index.txt.bz2"
    index.write_bytes(bz2.compress(("\n".join(index_lines) + "\n").encode()))
    return dump, [len(p) for p in parts]


def test_multistream_slices_read_only_their_streams(tmp_path):
    streams = [[(1, "Alpha"), (2, "Beta: two")], [(3, "Gamma")], [(4, "Delta"), (5, "Eps")]]
    dump, sizes = write_multistream(tmp_path, streams)
    whole = WikipediaSource(WikipediaConfig(languages=["en"]))
    assert whole.list_inputs(tmp_path) == [dump]
    all_titles = [d.meta["title"] for d in run(whole, [dump])[0]]
    assert all_titles == ["Alpha", "Beta: two", "Gamma", "Delta", "Eps"]

    sliced = pickle.loads(pickle.dumps(WikipediaSource(WikipediaConfig(streams_per_slice=2))))
    slices = sliced.list_inputs(tmp_path)
    assert [s.name.split("@")[1] for s in slices] == [
        f"{sizes[0]}-{sum(sizes[:3])}",
        f"{sum(sizes[:3])}-{sum(sizes)}",
    ]
    assert slices[1].stat().st_size == sizes[3] + sizes[4]
    titles = [[d.meta["title"] for d in run(sliced, [piece])[0]] for piece in slices]
    assert titles == [["Alpha", "Beta: two", "Gamma"], ["Delta", "Eps"]]
    # Only the slice's own bytes (and the header stream) are read: wreck the last
    # page stream and the first slice still reads cleanly, the second reports it.
    data = bytearray(dump.read_bytes())
    start = sum(sizes[:3])
    data[start + 10 : start + 60] = b"\x00" * 50
    dump.write_bytes(bytes(data))
    docs, report = run(sliced, [slices[0]])
    assert [d.meta["title"] for d in docs] == ["Alpha", "Beta: two", "Gamma"]
    assert not report.bad_input
    docs, report = run(sliced, [slices[1]])
    assert docs == [] and dict(report.bad_input) == {"corrupt": 1}


class _SmallReads(io.BytesIO):
    """Hands the parser 4 KiB at a time, so a parse batch is small next to the junk."""

    def read1(self, size=-1):
        return super().read1(min(size, 4096))


def test_junk_between_and_inside_pages_is_dropped_in_bounded_memory(tmp_path):
    """A 3 KB .bz2 can hold millions of elements: each one must be let go once it ends."""
    good = page_xml("Good", 0, 1, article_wikitext(random.Random(0), "Good"))
    junk = "<x/>" * 100_000
    # junk between pages, and inside a page and its revision (plus a second <title>)
    stuffed = good.replace("<ns>", f"{junk}<title>Second</title><ns>", 1)
    stuffed = stuffed.replace("<timestamp>", f"<y>{junk}</y><timestamp>", 1)
    body = junk + good.replace("Good", "Other") + "<logitem/>" + stuffed + FOOTER
    path = _plain_dump(tmp_path, body)
    docs, report = run(WikipediaSource(WikipediaConfig()), [path])
    assert [doc.id for doc in docs] == ["en:Other", "en:Good"]
    assert docs[1].meta["revision_id"] == 11  # the revision survived its junk
    assert dict(report.bad_input) == {"unexpected_element": 1}
    assert "100001 top-level elements" in report.bad_input_examples["unexpected_element"]
    data = path.read_bytes()
    tracemalloc.start()
    try:
        pages = list(_iter_pages(_SmallReads(data)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [page["title"] for page in pages] == ["Other", "Good"]
    assert peak < 2 << 20  # holding the 300,000 junk elements took 16 MB


def test_elements_nested_too_deep_are_bad_xml(tmp_path):
    good = page_xml("Good", 0, 1, article_wikitext(random.Random(0), "Good"))
    deep = "<x>" * (MAX_DEPTH + 5) + "</x>" * (MAX_DEPTH + 5)
    docs, report = run(WikipediaSource(WikipediaConfig()), [_plain_dump(tmp_path, good + deep)])
    assert [doc.id for doc in docs] == ["en:Good"]
    assert dict(report.bad_input) == {"xml": 1}
    assert f"nested more than {MAX_DEPTH} deep" in report.bad_input_examples["xml"]
