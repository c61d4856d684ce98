"""Post HTML (StackExchange ``Body`` attributes) to plain text that keeps code intact.

The paper only says HTML tags were removed. A tag stripper that also
collapses whitespace would flatten code blocks, which carry much of the value
of StackExchange, so this small ``html.parser`` subclass keeps ``<pre>``
content verbatim and turns block structure into line breaks:

* paragraphs, headings, block quotes and ``<pre>`` blocks are separated by a
  blank line; list items start with ``- `` on their own line; ``<br>`` is a
  line break; whitespace elsewhere collapses to single spaces;
* inline ``<code>`` text is kept as written, without backticks; links keep
  their text only; ``<img>`` keeps nothing; ``<script>``/``<style>`` are dropped;
* entities are decoded (``convert_charrefs``), so ``&lt;T&gt;`` becomes ``<T>``.

``html.parser`` rescans to the end of the input for every markup item it cannot finish
(an unclosed tag or quote), which is quadratic: ``"x<a b='" * 15000`` took 20 s. Real
posts have at most a few such items, so after :data:`MAX_UNFINISHED` of them the parse is
abandoned and the body goes through :func:`_plain_strip`, a linear regex stripper (tags
removed, entities decoded, whitespace collapsed). Output on other HTML is unchanged.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    ("p", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr",
     "hr", "dl", "dt", "dd", "section", "article")
)  # fmt: skip
_SKIP_TAGS = frozenset(("script", "style"))
_SPACES = re.compile(r"\s+")
_TAG = re.compile(r"<[^<>]*>")
MAX_UNFINISHED = 16


class _Unfinished(Exception):
    """Too many markup items without an end: the parse would be quadratic."""


class _PostTextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []  # (kind, text): kind "p", "li" or "pre"
        self._lines: list[str] = []
        self._current: list[str] = []
        self._kind = "p"
        self._pre_depth = 0
        self._pre: list[str] = []
        self._skip_depth = 0
        self._unfinished = 0

    def _counted(self, end: int) -> int:
        if end < 0:
            self._unfinished += 1
            if self._unfinished > MAX_UNFINISHED:
                raise _Unfinished
        return end

    def parse_starttag(self, i: int) -> int:
        return self._counted(super().parse_starttag(i))

    def parse_endtag(self, i: int) -> int:
        return self._counted(super().parse_endtag(i))

    def parse_comment(self, i: int, report: bool = True) -> int:
        return self._counted(super().parse_comment(i, report))

    def parse_pi(self, i: int) -> int:
        return self._counted(super().parse_pi(i))

    def parse_html_declaration(self, i: int) -> int:
        return self._counted(super().parse_html_declaration(i))

    def _flush(self, next_kind: str = "p") -> None:
        self._lines.append("".join(self._current))
        lines = [_SPACES.sub(" ", line).strip() for line in self._lines]
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append((self._kind, text))
        self._lines, self._current, self._kind = [], [], next_kind

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag == "pre":
            if self._pre_depth == 0:
                self._flush()
            self._pre_depth += 1
        elif self._pre_depth:
            return
        elif tag == "li":
            self._flush("li")
        elif tag == "br":
            self._lines.append("".join(self._current))
            self._current = []
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
            if self._pre_depth == 0:
                code = "".join(self._pre).strip("\n")
                if code.strip():
                    self.blocks.append(("pre", code))
                self._pre = []
        elif not self._pre_depth and (tag in _BLOCK_TAGS or tag == "li"):
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            self._pre.append(data)
        else:
            self._current.append(data)

    def text(self) -> str:
        if self._pre_depth:  # unclosed <pre>: keep what it held
            self._pre_depth = 0
            self.handle_endtag("pre")
        self._flush()
        parts: list[str] = []
        previous = ""
        for kind, text in self.blocks:
            if parts:
                parts.append("\n" if kind == "li" and previous == "li" else "\n\n")
            parts.append(f"- {text}" if kind == "li" else text)
            previous = kind
        return "".join(parts)


def html_to_text(html: str) -> str:
    """Plain text of a post body: tags removed, code blocks verbatim (see module docstring)."""
    parser = _PostTextParser()
    try:
        parser.feed(html)
        parser.close()
    except _Unfinished:
        return _plain_strip(html)
    return parser.text()


def _plain_strip(html: str) -> str:
    """Linear fallback for broken HTML: tags removed, entities decoded, spaces collapsed."""
    return _SPACES.sub(" ", unescape(_TAG.sub(" ", html))).strip()
