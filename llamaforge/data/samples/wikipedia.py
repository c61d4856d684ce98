"""Small MediaWiki XML dumps (``<lang>wiki-<date>-pages-articles*.xml.bz2``) with known content.

Articles carry the markup a real dump has (infobox templates, ``<ref>`` citations, tables,
file and category links, comments), next to pages each filter must drop: redirects,
talk/user pages (namespace != 0) and stubs shorter than the default ``min_chars``. With
``n_docs >= 20`` a third dump is a multistream bz2 cut off inside its second stream: the
pages of the first stream are readable, then the file counts as ``truncated``.

``doc_bytes`` (0 by default: articles of ~1.2 KB of wikitext, which the tests are written
against) adds sections with the same markup density (links, citations, templates, lists) until
an article is about that long; :data:`TYPICAL_DOC_BYTES` is a real article's average.
"""

from __future__ import annotations

import bz2
import random
from pathlib import Path
from xml.sax.saxutils import escape

from llamaforge.data.samples import write_atomic

EXPORT_NS = "http://www.mediawiki.org/xml/export-0.10/"
# fmt: off
WORDS = [
    "river", "city", "history", "people", "century", "music", "language", "school", "church",
    "museum", "region", "population", "mountain", "village", "government", "university",
    "railway", "station", "island", "theory", "culture", "painter", "novel", "season",
    "football", "valley", "northern", "ancient", "bridge", "harbour",
]
# fmt: on
# Average wikitext of a main-namespace article (enwiki: ~3-5 KB); we take 4 KB.
TYPICAL_DOC_BYTES = 4000
_BASE_ARTICLE_BYTES = 1200  # what article_wikitext writes without extra sections


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 14))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _extra_section(rng: random.Random, index: int) -> str:
    """One more section, marked up like a real article's body (links, refs, a list)."""
    a, b = rng.choice(WORDS), rng.choice(WORDS)
    return (
        f"== {a.capitalize()} and {b} ==\n"
        f"The [[{a.capitalize()}]] of the [[{b.capitalize()} (region)|{b}]] {_paragraph(rng, 2)}"
        f"<ref>{{{{cite book|last=Author{index}|title=The {a} of {b}|year=19{index % 90 + 10}"
        f"|page={rng.randint(1, 400)}}}}}</ref> '''{a}''' and ''{b}'' {_paragraph(rng, 2)}\n\n"
        f'=== In the {a} ===\n{_paragraph(rng, 3)}<ref name="n{index}" />\n'
        f"* [[{a.capitalize()}]] {_sentence(rng)}\n* {{{{lang|de|{b}}}}} {_sentence(rng)}\n\n"
    )


def article_wikitext(rng: random.Random, title: str, doc_bytes: int = 0) -> str:
    """An article body with every kind of markup the cleaner must remove or unwrap."""
    extra: list[str] = []
    if doc_bytes:
        target, size = doc_bytes * rng.uniform(0.5, 1.5) - _BASE_ARTICLE_BYTES, 0.0
        while size < target:
            extra.append(_extra_section(rng, len(extra)))
            size += len(extra[-1])
    return (
        f"{{{{Infobox settlement|name={title}|population=1234}}}}\n"
        f"'''{title}''' is a [[Town|small town]] in the [[Alps]].<ref>{{{{cite web|"
        f"url=http://example.org|title=Source}}}}</ref> {_paragraph(rng, 3)}\n"
        "<!-- editors: do not remove this comment -->\n"
        "[[File:View.jpg|thumb|A view of the SECRETCAPTION valley]]\n\n"
        f"== History ==\n{_paragraph(rng, 4)}<ref name=a>Smith 2001</ref>\n\n\n\n"
        '{| class="wikitable"\n! Year !! Value\n|-\n| 1900 || TABLECELL\n|}\n'
        f"== Culture ==\n{_paragraph(rng, 3)} See [http://example.org the website].\n\n"
        + "".join(extra)
        + "[[Category:Towns]]\n"
    )


def page_xml(title: str, ns: int, page_id: int, text: str, redirect: str | None = None) -> str:
    redirect_xml = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return (
        f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n"
        f"    <id>{page_id}</id>\n{redirect_xml}    <revision>\n"
        f"      <id>{page_id * 10 + 1}</id>\n      <timestamp>2023-04-01T00:00:00Z</timestamp>\n"
        f'      <text bytes="{len(text)}" xml:space="preserve">{escape(text)}</text>\n'
        "    </revision>\n  </page>\n"
    )


def dump_header(lang: str) -> str:
    return (
        f'<mediawiki xmlns="{EXPORT_NS}" version="0.10" xml:lang="{lang}">\n'
        f"  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>{lang}wiki</dbname>\n"
        '    <namespaces>\n      <namespace key="0" case="first-letter" />\n'
        '      <namespace key="1" case="first-letter">Talk</namespace>\n'
        "    </namespaces>\n  </siteinfo>\n"
    )


FOOTER = "</mediawiki>\n"


def sample_pages(rng: random.Random, count: int, first_id: int, doc_bytes: int = 0) -> list[str]:
    """``count`` pages cycling through: article, article, redirect, talk, stub, article."""
    pages = []
    for index in range(count):
        page_id = first_id + index
        kind = index % 6
        title = f"Sample town {page_id}"
        if kind == 2:
            pages.append(page_xml(title, 0, page_id, "#REDIRECT [[Town]]", redirect="Town"))
        elif kind == 3:
            talk = _paragraph(rng, max(5, doc_bytes // 100))
            pages.append(page_xml(f"Talk:{title}", 1, page_id, talk))
        elif kind == 4:
            stub = f"{{{{Infobox person}}}}'''{title}''' is a town.{{{{stub}}}}"
            pages.append(page_xml(title, 0, page_id, stub))
        else:
            pages.append(page_xml(title, 0, page_id, article_wikitext(rng, title, doc_bytes)))
    return pages


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write an English and a German dump (and a truncated French one for ``n_docs >= 20``)."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_bad = 6 if n_docs >= 20 else 0
    n_de = (n_docs - n_bad) // 3
    n_en = n_docs - n_bad - n_de
    written = []
    for lang, count, first_id in (("en", n_en, 1), ("de", n_de, 10_001)):
        xml = dump_header(lang) + "".join(sample_pages(rng, count, first_id, doc_bytes)) + FOOTER
        path = directory / f"{lang}wiki-20230401-pages-articles1.xml.bz2"
        write_atomic(path, bz2.compress(xml.encode("utf-8")))
        written.append(path)
    if n_bad:
        # Multistream, as Wikimedia publishes it: header + pages in one bz2 stream, more pages
        # in the next; the second stream is cut short, so only the first one is readable.
        pages = sample_pages(rng, n_bad, 20_001, doc_bytes)
        first = bz2.compress((dump_header("fr") + "".join(pages[:2])).encode("utf-8"))
        second = bz2.compress(("".join(pages[2:]) + FOOTER).encode("utf-8"))
        path = directory / "frwiki-20230401-pages-articles-multistream.xml.bz2"
        write_atomic(path, first + second[: len(second) // 2])
        written.append(path)
    return written
