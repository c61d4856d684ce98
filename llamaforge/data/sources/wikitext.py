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

Speed: mwparserfromhell tokenizes in C but builds its node tree in Python, and building the
nodes that pruning throws away (citation templates, ``<ref>`` bodies, file captions) was most
of the cost. :func:`drop_pruned_tokens` removes exactly those nodes' tokens between the two
steps, in the contexts :func:`_prune` would remove them from, so the tree that is built is
the pruned tree and the text is unchanged; a kept link or bold/italic run around plain text
becomes one text token (its ``strip_code`` is that text). On article-like wikitext this runs
at about the speed of mwparserfromhell's C tokenizer alone (~6 MB/s per core here, against
~1 MB/s for ``mwparserfromhell.parse``), which is the ceiling while that library is used.
"""

from __future__ import annotations

import re

from mwparserfromhell.definitions import is_visible
from mwparserfromhell.nodes import Comment, ExternalLink, Heading, Tag, Template, Wikilink
from mwparserfromhell.parser import tokens as T
from mwparserfromhell.parser.builder import Builder
from mwparserfromhell.wikicode import Wikicode

try:
    from mwparserfromhell.parser._tokenizer import CTokenizer as _Tokenizer
except ImportError:  # pragma: no cover - pure-Python fallback of mwparserfromhell
    from mwparserfromhell.parser.tokenizer import Tokenizer as _Tokenizer

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
    return _is_dropped_title(str(link.title))


def _is_dropped_title(title: str) -> bool:
    title = title.strip()
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


# Token classes are final (no subclasses), so sets of types are exact and faster than isinstance.
_OPENERS = frozenset({
    T.TemplateOpen, T.ArgumentOpen, T.WikilinkOpen, T.ExternalLinkOpen, T.HeadingStart,
    T.CommentStart, T.TagOpenOpen, T.HTMLEntityStart,
})  # fmt: skip
_CLOSERS = frozenset({
    T.TemplateClose, T.ArgumentClose, T.WikilinkClose, T.ExternalLinkClose, T.HeadingEnd,
    T.CommentEnd, T.TagCloseSelfclose, T.TagCloseClose, T.HTMLEntityEnd,
})  # fmt: skip
_SEPARATORS = frozenset({T.TagCloseOpen, T.WikilinkSeparator, T.ExternalLinkSeparator})
_NAME_ENDS = frozenset({T.TagAttrStart, T.TagCloseOpen, T.TagCloseSelfclose})
_TITLE_ENDS = frozenset({T.WikilinkSeparator, T.WikilinkClose})


def _node_end(tokens: list, start: int) -> int | None:
    """Index after the node that opens at ``tokens[start]``; None if it never closes."""
    depth = 0
    for index in range(start, len(tokens)):
        kind = type(tokens[index])
        if kind in _OPENERS:
            depth += 1
        elif kind in _CLOSERS:
            depth -= 1
            if depth == 0:
                return index + 1
    return None  # not expected from the tokenizer; then the node is left to _prune


def _plain_text(tokens: list, start: int, ends: frozenset) -> str | None:
    """The text of ``tokens[start:]`` up to a token of type ``ends``; None if not plain text."""
    parts = []
    for index in range(start, len(tokens)):
        token = tokens[index]
        if type(token) in ends:
            return "".join(parts)
        if type(token) is not T.Text:
            return None
        parts.append(token.text)
    return None


def _is_pruned(tokens: list, index: int) -> bool | None:
    """Whether the node opening at ``tokens[index]`` yields no text once pruned.

    True for what :func:`_prune` removes, and for attribute-less self-closing tags
    (``<br/>``, list bullets): their ``strip_code`` is empty, so building them is wasted.
    None when only the built node can tell (a tag name or link title that is not plain text).
    """
    kind = type(tokens[index])
    if kind is T.TemplateOpen or kind is T.CommentStart:
        return True
    if kind is T.TagOpenOpen:
        name = _plain_text(tokens, index + 1, _NAME_ENDS)
        if name is None:
            return None
        if name.strip().lower() in DROPPED_TAGS:
            return True
        after_name = index + 1
        while type(tokens[after_name]) is T.Text:
            after_name += 1
        return type(tokens[after_name]) is T.TagCloseSelfclose
    if kind is T.WikilinkOpen:
        title = _plain_text(tokens, index + 1, _TITLE_ENDS)
        return None if title is None else _is_dropped_title(title)
    return False


_LINK_SHAPES = (
    (T.WikilinkOpen, T.Text, T.WikilinkClose),  # [[title]]: its text is the title
    (T.WikilinkOpen, T.Text, T.WikilinkSeparator, T.Text, T.WikilinkClose),  # [[t|text]]
)
_TAG_SHAPE = (
    T.TagOpenOpen,
    T.Text,
    T.TagCloseOpen,
    T.Text,
    T.TagOpenClose,
    T.Text,
    T.TagCloseClose,
)


def _as_plain_text(tokens: list, index: int) -> tuple[str, int] | None:
    """``(text, end)`` when the node at ``index`` is a kept link or tag around plain text only.

    Such a node's ``strip_code`` is exactly that text (bold ``'''x'''``, ``[[Paris]]``,
    ``[[Paris|the capital]]``) when it has no newline, so one Text token gives the same
    text as the whole node at a fraction of the building cost.
    """
    is_tag = type(tokens[index]) is T.TagOpenOpen
    for shape in (_TAG_SHAPE,) if is_tag else _LINK_SHAPES:
        end = index + len(shape)
        if tuple(map(type, tokens[index:end])) != shape:
            continue
        text = tokens[index + 3].text if is_tag else tokens[end - 2].text
        if "\n" in text or (is_tag and not is_visible(tokens[index + 1].text)):
            return None
        return text, end
    return None


def drop_pruned_tokens(tokens: list) -> tuple[list, bool]:
    """``tokens`` without the nodes :func:`_prune` would remove from the tree built from them
    (and without attribute-less self-closing tags, whose text is empty anyway).

    Walks the token stream keeping a stack of open nodes, and for each the part being read:
    _prune looks inside a kept tag's contents, a wiki link's text, a heading and an external
    link's title (when those nodes are themselves in such a part, or at the top), never
    inside names, attributes, link titles, URLs or template parameters. Nodes that are only
    decided on their built form (a link title holding a template) are kept for _prune, and
    the second value says whether there were any (if not, _prune has nothing left to do).
    """
    kept: list = []
    undecided = False
    # One entry per open node: [prunable part of the node is being read, node's own context]
    stack: list[list[bool]] = []
    index, count = 0, len(tokens)
    while index < count:
        token = tokens[index]
        kind = type(token)
        if kind is T.Text:
            pass
        elif kind in _OPENERS:
            prunable = not stack or stack[-1][0]
            if prunable:
                pruned = _is_pruned(tokens, index)
                end = _node_end(tokens, index) if pruned else None
                if end is not None:
                    index = end
                    continue
                undecided = undecided or pruned is not False
                flat = (
                    _as_plain_text(tokens, index)
                    if pruned is False and (kind is T.WikilinkOpen or kind is T.TagOpenOpen)
                    else None
                )
                if flat is not None:
                    kept.append(T.Text(text=flat[0]))
                    index = flat[1]
                    continue
            # Headings are pruned as a whole; the others from a separator on.
            stack.append([prunable and kind is T.HeadingStart, prunable])
        elif kind in _CLOSERS:
            if stack:
                stack.pop()
        elif kind in _SEPARATORS:
            if stack:
                stack[-1][0] = stack[-1][1]
        elif kind is T.TagOpenClose and stack:
            stack[-1][0] = False
        kept.append(token)
        index += 1
    return kept, undecided


def parse_pruned(wikitext: str) -> Wikicode:
    """mwparserfromhell's parse tree of ``wikitext`` with the non-prose nodes removed."""
    tokens, undecided = drop_pruned_tokens(_Tokenizer().tokenize(wikitext, 0, False))
    code = Builder().build(tokens)
    if undecided:  # nodes the token pass could not judge (e.g. templated link titles)
        _prune(code)
    return code


def wikitext_to_text(wikitext: str) -> str:
    """Plain article text from a page's wikitext (see the module docstring for what is kept)."""
    code = parse_pruned(wikitext)
    text = code.strip_code(normalize=True, collapse=True)
    text = _MAGIC_WORD.sub("", text)
    # _SPACES never matches a newline: one substitution over the text equals one per line.
    lines = [line.strip() for line in _SPACES.sub(" ", text).split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
