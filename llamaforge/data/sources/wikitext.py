"""Wikitext to plain text: what the paper means by "removing hyperlinks, comments and other
formatting boilerplate" (§2.1, Wikipedia).

mwparserfromhell parses the markup; its ``strip_code`` alone keeps too much (reference bodies,
image captions, ``Category:`` names, table cells), so the parse tree is pruned first:

* removed whole: templates (infoboxes, citations, navboxes), comments, ``<ref>``-like tags,
  tables, galleries, math, and links to files/images, categories and other-language wikis;
* kept as text: the visible text of wiki links (``[[Paris|the capital]]`` -> ``the capital``)
  and external links, headings, bold/italic content.

Behaviour-switch magic words (``__NOTOC__``) are deleted and runs of blank lines collapsed to
one, so what remains reads like the article. File and category prefixes are matched in the
20 languages of the paper, since dumps use the localised namespace names.
"""

from __future__ import annotations

import re

import mwparserfromhell
from mwparserfromhell.nodes import Comment, ExternalLink, Heading, Tag, Template, Wikilink
from mwparserfromhell.wikicode import Wikicode

# Tags whose content is not running prose.
DROPPED_TAGS = frozenset(
    {"ref", "references", "table", "gallery", "math", "chem", "score", "timeline", "graph"}
    | {"imagemap", "syntaxhighlight", "source", "templatedata", "mapframe", "noinclude"}
)

# Localised "File:"/"Image:"/"Category:" namespace names of the 20 languages (lower case).
MEDIA_AND_CATEGORY_PREFIXES = frozenset(
    {"file", "image", "media", "category"}
    | {"datei", "bild", "kategorie"}  # de
    | {"fichier", "catégorie"}  # fr
    | {"archivo", "imagen", "categoría"}  # es
    | {"file", "immagine", "categoria"}  # it (also pt "categoria")
    | {"arquivo", "imagem", "ficheiro"}  # pt
    | {"bestand", "afbeelding", "categorie"}  # nl (also ro "categorie")
    | {"plik", "grafika", "kategoria"}  # pl
    | {"fișier", "imagine", "categorie"}  # ro
    | {"файл", "изображение", "категория"}  # ru, bg
    | {"категорија", "датотека", "слика"}  # sr
    | {"категорія", "зображення"}  # uk
    | {"soubor", "obrázek", "kategorie"}  # cs
    | {"fil", "billede", "kategori"}  # da, sv
    | {"datoteka", "slika", "kategorija"}  # hr, sl
    | {"fájl", "kép", "kategória"}  # hu
    | {"fitxer", "imatge", "categoria"}  # ca
)

# Interlanguage links ([[de:Paris]]) are navigation, not text.
_INTERWIKI = re.compile(r"^:?[a-z]{2,3}(?:-[a-z]+)?:")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\u00a0]+")


def _is_dropped_link(link: Wikilink) -> bool:
    title = str(link.title).strip()
    if title.startswith(":"):  # [[:Category:X]] is an inline link, shown as text
        return False
    prefix, colon, _ = title.partition(":")
    if colon and prefix.strip().lower() in MEDIA_AND_CATEGORY_PREFIXES:
        return True
    return bool(_INTERWIKI.match(title))


def _prune(code: Wikicode) -> None:
    """Remove non-prose nodes in place, descending into the nodes whose text is kept."""
    kept = []
    for node in code.nodes:
        if isinstance(node, Template | Comment):
            continue
        if isinstance(node, Tag):
            if str(node.tag).strip().lower() in DROPPED_TAGS:
                continue
            if node.contents is not None:
                _prune(node.contents)
        elif isinstance(node, Wikilink):
            if _is_dropped_link(node):
                continue
            if node.text is not None:
                _prune(node.text)
        elif isinstance(node, Heading) or isinstance(node, ExternalLink) and node.title is not None:
            _prune(node.title)
        kept.append(node)
    code.nodes[:] = kept


def wikitext_to_text(wikitext: str) -> str:
    """Plain article text from a page's wikitext (see the module docstring for what is kept)."""
    code = mwparserfromhell.parse(wikitext)
    _prune(code)
    text = code.strip_code(normalize=True, collapse=True)
    text = _MAGIC_WORD.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
