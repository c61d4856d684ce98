"""Sample CommonCrawl shards (WET and WARC) plus the tiny models their CCNet filters need.

Pages are synthetic but the files are real: gzip-per-record WET/WARC archives
written with fastwarc. Each page kind is there for one outcome:

=================  ==============================================  ===================
kind               content                                         expected
=================  ==============================================  ===================
``good``           encyclopedic English + shared boilerplate lines  kept (boilerplate
                                                                    lines removed)
``german/french``  encyclopedic German / French                    ``lang``
``salad``          English words in random order                   ``ccnet.perplexity``
``shop``           fluent English shop/spam copy                   ``ccnet.wikiref``
``boilerplate``    only lines other pages repeat                   ``dedup.line``
=================  ==============================================  ===================

The WARC shard holds HTML pages (kept after main-content extraction), and for
``n_docs >= 10`` a Latin-1 page (kept), a 404, an image and a page of invalid
UTF-8; ``n_docs >= 20`` adds a WET shard truncated after two good pages.

``doc_bytes`` (0 by default: pages of ~1 KB, which the tests are written against)
gives every page but the boilerplate-only ones about that much text;
:data:`TYPICAL_DOC_BYTES` is a real WET page's average, for throughput figures.

Models go to ``models/``: a fastText language id (en/de/fr), a trigram ARPA
LM trained on encyclopedic *and* shop English (so shop copy passes the LM and
only the reference classifier removes it), and the wiki-vs-cc classifier.
The perplexity cutoffs are fixed (:data:`SAMPLE_CUTOFFS`, so a static TOML can
name them); the writer checks that they separate good pages from word salad.
:func:`sample_config` returns the ``[sources.commoncrawl]`` table for them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import random
from pathlib import Path
from typing import Any

from fastwarc.warc import WarcRecord, WarcRecordType

from llamaforge.data.ccnet.arpa import train_arpa
from llamaforge.data.ccnet.langid import train_language_id
from llamaforge.data.ccnet.perplexity import PerplexityScorer, prepare_line
from llamaforge.data.ccnet.wikiref import train_wikiref_classifier
from llamaforge.data.samples import write_atomic

# Good sample pages score ~2-3.5 under the sample LM, shop copy ~2, word salad ~500:
# the head/middle cut falls among good pages, the tail starts far below salad.
SAMPLE_CUTOFFS = (2.5, 40.0)
# Average text of a WET conversion record (CommonCrawl 2023: ~3-6 KB); we take 4 KB.
TYPICAL_DOC_BYTES = 4000
_PARAGRAPH_BYTES = 260  # average paragraph of _paragraphs
_HTTP_RECORD = {"Content-Type": "application/http; msgtype=response"}
WET_KINDS = ("good", "german", "good", "salad", "good", "shop", "good", "french", "boilerplate")
BOILERPLATE = (
    "Copyright {year} Example Media. All rights reserved.",
    "Home | News | About us | Contact",
    "This site uses cookies to improve your experience.",
)
_EN = {
    "thing": [
        "river",
        "city",
        "museum",
        "bridge",
        "university",
        "cathedral",
        "railway",
        "harbour",
        "library",
        "castle",
    ],
    "verb": ["founded", "built", "rebuilt", "opened", "extended", "restored"],
    "adj": ["old", "famous", "large", "medieval", "narrow", "quiet", "northern", "ancient"],
    "noun": ["tower", "garden", "market", "church", "square", "station", "wall", "collection"],
    "person": ["José Martínez", "Anna Müller", "Zoë Clarke", "Henri Dupont", "Mary Smith"],
    "event": ["fire", "flood", "war", "storm", "earthquake"],
}
_SHOP = [
    "Buy the best {adj} {noun} online today at the lowest price.",
    "Free shipping on every order over {n} dollars, click here to shop now.",
    "Limited offer: save {n} percent on our {adj} {noun} deals this week only.",
    "Sign up for our newsletter and get a discount code for your next order.",
    "Add to cart now, our {noun} sale ends soon and stock is limited.",
]
_DE = [
    "Die {t} wurde im Jahr {y} gegründet und ist bekannt für ihre alte Brücke.",
    "Die Stadt liegt am Fluss und hat etwa {n} Einwohner.",
    "Nach dem Krieg wurde die Kirche wieder aufgebaut und ist heute ein Museum.",
    "Der Bahnhof ist mit der Hauptstadt durch eine schnelle Verbindung verbunden.",
]
_FR = [
    "La {t} a été fondée en {y} et elle est connue pour son vieux pont.",
    "La ville se trouve sur la rivière et compte environ {n} habitants.",
    "Après la guerre, l'église a été reconstruite et elle est aujourd'hui un musée.",
    "La gare est reliée à la capitale par une ligne rapide.",
]


def _wiki_sentence(rng: random.Random) -> str:
    w = {k: rng.choice(v) for k, v in _EN.items()}
    w["noun2"] = rng.choice(_EN["noun"])
    templates = [
        "The {thing} was {verb} in {year} by {person}.",
        "It is known for its {adj} {noun} and its {adj} {noun2}.",
        "In {year} the {noun} was {verb} after a {event}.",
        "The {thing} has a population of {n} people and a {adj} {noun}.",
        "Today the {adj} {noun} is one of the most visited places in the region.",
    ]
    return rng.choice(templates).format(year=rng.randint(1100, 1990), n=rng.randint(2, 90000), **w)


def _fill(rng: random.Random, templates: list[str]) -> str:
    return rng.choice(templates).format(
        adj=rng.choice(_EN["adj"]),
        noun=rng.choice(_EN["noun"]),
        n=rng.randint(5, 90),
        t=rng.choice(["Stadt", "Kirche", "ville", "Burg"]),
        y=rng.randint(1100, 1990),
    )


def _paragraphs(rng: random.Random, sentence, n_par: int = 3) -> list[str]:
    return [" ".join(sentence(rng) for _ in range(rng.randint(3, 5))) for _ in range(n_par)]


def _page(kind: str, rng: random.Random, doc_bytes: int = 0) -> list[str]:
    """The body paragraphs of one page of ``kind`` (boilerplate added by the caller)."""
    n_par = max(3, round(doc_bytes / _PARAGRAPH_BYTES))
    if kind in ("good", "boilerplate"):
        return _paragraphs(rng, _wiki_sentence, n_par)
    if kind == "shop":
        return _paragraphs(rng, lambda r: _fill(r, _SHOP), n_par)
    if kind == "german":
        return _paragraphs(rng, lambda r: _fill(r, _DE), n_par)
    if kind == "french":
        return _paragraphs(rng, lambda r: _fill(r, _FR), n_par)
    words = " ".join(_paragraphs(rng, _wiki_sentence, n_par)).split()  # salad
    rng.shuffle(words)
    return [" ".join(words[i : i + 30]) for i in range(0, len(words), 30)]


def _boilerplate(rng: random.Random) -> list[str]:
    year = rng.randint(2000, 2023)
    lines = [line.format(year=year) for line in BOILERPLATE]
    if rng.random() < 0.5:  # variants that only normalisation makes equal
        lines[0] = lines[0].upper()
        lines[2] = lines[2].replace("experience", "expérience").replace("uses", "uses")
    return lines


def _record(
    kind: WarcRecordType, rng: random.Random, headers: dict[str, str], body: bytes
) -> bytes:
    record = WarcRecord()
    uuid = hashlib.sha1(rng.randbytes(16)).hexdigest()
    urn = f"uuid:{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}"
    record.init_headers(kind, record_urn=urn.encode(), content_length=len(body))
    record.headers["WARC-Date"] = "2023-02-01T00:00:00Z"
    for key, value in headers.items():
        record.headers[key] = value
    record.set_bytes_content(body)
    out = io.BytesIO()
    record.write(out)
    return gzip.compress(out.getvalue(), mtime=0)  # one gzip member per record, like CC


def _http(body: bytes, content_type: str, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\r\n"
    return head.encode() + body


def _html(title: str, paragraphs: list[str], footer: list[str]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    nav = "<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
    foot = "".join(f"<p>{line}</p>" for line in footer)
    return (
        f"<html><head><title>{title}</title></head><body>{nav}"
        f"<article><h1>{title}</h1>{body}</article><footer>{foot}</footer></body></html>"
    )


def _write_wet(path: Path, rng: random.Random, pages: list[tuple[str, list[str]]]) -> bytes:
    data = bytearray(_record(WarcRecordType.warcinfo, rng, {}, b"software: llamaforge samples\r\n"))
    for url, lines in pages:
        headers = {"WARC-Target-URI": url, "Content-Type": "text/plain"}
        data += _record(WarcRecordType.conversion, rng, headers, "\n".join(lines).encode())
    write_atomic(path, bytes(data))
    return bytes(data)


def _train_models(models: Path, rng: random.Random) -> None:
    wiki = ["\n".join(_paragraphs(rng, _wiki_sentence)) for _ in range(120)]
    shop = ["\n".join(_page("shop", rng)) for _ in range(120)]
    lid_examples = [("en", s) for doc in wiki[:40] + shop[:40] for s in doc.split("\n")]
    lid_examples += [("de", _fill(rng, _DE)) for _ in range(120)]
    lid_examples += [("fr", _fill(rng, _FR)) for _ in range(120)]
    rng.shuffle(lid_examples)
    train_language_id(lid_examples, models / "lid.bin")
    lm_text = [prepare_line(line) for doc in wiki + shop for line in doc.split("\n")]
    train_arpa(lm_text, 3, models / "lm.arpa")
    train_wikiref_classifier(wiki, shop, models / "wikiref.bin", dim=16, bucket=20000)


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write sample shards and models into ``directory``; returns the shard paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    models = directory / "models"
    _train_models(models, random.Random(seed + 1))
    n_html = max(1, n_docs // 5)
    n_wet = max(1, n_docs - n_html)
    kinds = [WET_KINDS[i % len(WET_KINDS)] for i in range(n_wet)]
    wet_pages, bodies = [], {"good": [], "salad": []}
    for i, kind in enumerate(kinds):
        body = _page(kind, rng, doc_bytes)
        if kind in bodies:
            bodies[kind].append("\n".join(body))
        lines = _boilerplate(rng) if kind == "boilerplate" else body + _boilerplate(rng)
        wet_pages.append((f"https://{kind}.example.org/page/{i}", lines))
    wet = directory / "CC-MAIN-2023-06-sample-00000.warc.wet.gz"
    _write_wet(wet, rng, wet_pages)

    records = bytearray()
    for i in range(n_html):
        paragraphs = _page("good", rng, doc_bytes)
        bodies["good"].append("\n".join(paragraphs))
        html = _html(f"Page {i}", paragraphs, _boilerplate(rng)).encode()
        headers = {"WARC-Target-URI": f"https://html.example.org/{i}", **_HTTP_RECORD}
        records += _record(WarcRecordType.response, rng, headers, _http(html, "text/html"))
    if n_docs >= 10:
        latin = _html(
            "Café", _page("good", rng, doc_bytes) + ["Le café du coin est très connu."], []
        )
        specials = [
            ("latin1", _http(latin.encode("latin-1"), "text/html; charset=iso-8859-1")),
            ("missing", _http(b"<html>gone</html>", "text/html", "404 Not Found")),
            ("image", _http(b"\x89PNG\r\n\x1a\n" + rng.randbytes(64), "image/png")),
            ("bad-utf8", _http(b"<html><p>caf\xe9 \xff\xfe broken</p></html>", "text/html")),
        ]
        for name, payload in specials:
            headers = {"WARC-Target-URI": f"https://{name}.example.org/", **_HTTP_RECORD}
            records += _record(WarcRecordType.response, rng, headers, payload)
    warc = directory / "CC-MAIN-2023-06-sample-00001.warc.gz"
    write_atomic(warc, bytes(records))
    paths = [wet, warc]

    if n_docs >= 20:
        broken = directory / "CC-MAIN-2023-06-sample-00002.warc.wet.gz"
        pages = [
            (f"https://truncated.example.org/{i}", _page("good", rng, doc_bytes)) for i in range(3)
        ]
        data = _write_wet(broken, rng, pages)
        write_atomic(broken, data[: len(data) - 40])  # the last record breaks off mid-member
        paths.append(broken)

    _check_cutoffs(PerplexityScorer(models / "lm.arpa"), bodies)
    return sorted(paths)


def _check_cutoffs(scorer: PerplexityScorer, bodies: dict[str, list[str]]) -> None:
    """The fixed sample cutoffs must put every good page in head/middle and salad in the tail."""
    worst_good = max(scorer.perplexity(text, lines=True) for text in bodies["good"])
    best_salad = min(
        (scorer.perplexity(text, lines=True) for text in bodies["salad"]), default=math.inf
    )
    if not worst_good < SAMPLE_CUTOFFS[1] < best_salad:
        raise RuntimeError(
            f"sample LM: good pages up to {worst_good:.1f}, salad from {best_salad:.1f}; "
            f"cutoffs {SAMPLE_CUTOFFS} do not separate them"
        )


def sample_config(directory: Path) -> dict[str, Any]:
    """The ``[sources.commoncrawl]`` table for samples in ``directory`` (absolute model paths)."""
    models = Path(directory) / "models"
    return {
        "lid_model": str(models / "lid.bin"),
        "lm_model": str(models / "lm.arpa"),
        "wikiref_model": str(models / "wikiref.bin"),
        "perplexity_cutoffs": list(SAMPLE_CUTOFFS),
        "perplexity_lines": True,  # the sample LM is trained on lines
    }
