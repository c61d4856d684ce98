"""Just enough LaTeX for the arXiv cleaning of RedPajama/LLaMA: comments and user macros.

* :func:`strip_comments` removes ``%`` to end of line (not ``\\%``, but ``\\\\%`` is a line
  break then a comment); a line that is only a comment disappears with its newline, as TeX
  reads it. ``%`` is literal, so nothing is cut, inside ``\\url{...}`` and the URL argument
  of ``\\href{...}`` (hyperref reads them verbatim: ``\\url{a.org/x%20y}``), in
  ``\\verb|...|`` (any delimiter, ``\\verb*`` too) and in the ``verbatim``, ``Verbatim``,
  ``lstlisting`` and ``minted`` environments (starred forms too).
* :func:`collect_macros` finds ``\\newcommand``/``\\renewcommand``/``\\providecommand``
  (``*`` forms, ``{\\name}`` or ``\\name``, ``[n]`` arguments and an optional ``[default]``
  first argument) and ``\\def``/``\\gdef``/``\\edef``/``\\xdef`` with undelimited ``#1#2..``
  parameters, and removes the definitions from the text. A later definition of a name
  replaces an earlier one (as ``\\renewcommand`` does), for the whole document. Definitions
  that cannot be parsed (delimited ``\\def`` parameters, unbalanced braces) are left as they
  are, and so are uses of them.
* :func:`expand_macros` inline-expands uses, TeX-style: arguments are ``{groups}`` or single
  tokens, and the expansion is scanned again for more macros. A zero-argument macro followed
  by ``{}`` (``\\ours{} is``) swallows the ``{}``; spaces after it are kept (unlike TeX, which
  would glue ``\\ours is`` into one word; authors rarely mean that). Sectioning and
  environment commands are never expanded, even if redefined, so the structure stays.

Expansion is bounded, so ``\\def\\a{\\a\\a}`` or ``\\newcommand{\\x}{\\x}`` cannot hang or
exhaust memory: at most ``max_depth`` nested expansions, ``max_expansions`` in total, and an
output at most ``max_growth`` times the input (+1 KiB). A macro that breaks a limit is left
unexpanded and expansion restarts without it; the names are returned so that the caller can
count them (the document itself is kept: one runaway macro should not cost a whole paper).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Scanned left to right, so a ``%`` is a comment only where no verbatim text or escape
# holds it: each alternative but the last keeps its match unchanged.
_COMMENT_SCAN = re.compile(
    r"\\(?:url|href)\s*\{[^{}\n]*\}"  # hyperref URLs: % is a literal character
    r"|\\verb\*?([^A-Za-z*\s])[^\n]*?\1"  # \verb|...| with any delimiter, on one line
    r"|\\begin\s*\{((?:verbatim|Verbatim|lstlisting|minted)\*?)\}.*?\\end\s*\{\2\}"
    r"|\\[\\%]"  # an escaped backslash or percent sign
    r"|(?P<line>^[ \t]*)?%[^\n]*(?P<newline>\n)?",  # a comment (a whole line: with its newline)
    re.MULTILINE | re.DOTALL,
)
_CONTROL_SEQUENCE = re.compile(r"\\([A-Za-z]+|.)", re.DOTALL)
_DEFINITION = re.compile(
    r"\\(?:(newcommand|renewcommand|providecommand)\*?|(def|gdef|edef|xdef))(?![A-Za-z])"
)
_PARAMETER = re.compile(r"#(#|[1-9])")
_NAME = re.compile(r"\\([A-Za-z]+|.)$", re.DOTALL)
PROTECTED = frozenset(
    {"section", "subsection", "subsubsection", "paragraph", "subparagraph", "chapter", "part"}
    | {"begin", "end", "item", "input", "include", "label", "ref", "cite"}
)
MAX_ATTEMPTS = 8  # restarts after runaway macros, before giving up on expansion entirely


def strip_comments(text: str) -> str:
    """``text`` without LaTeX comments (see the module docstring)."""
    if "%" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if not token.lstrip(" \t").startswith("%"):
            return token  # verbatim text or an escape
        if match.group("line") is not None:
            return ""  # a line that is only a comment goes with its newline
        return match.group("newline") or ""

    return _COMMENT_SCAN.sub(replace, text)


@dataclass(frozen=True)
class Macro:
    name: str
    n_args: int
    default: str | None  # the optional first argument's default (``\newcommand{\x}[2][d]{}``)
    body: str


def read_group(text: str, start: int, close: str = "}") -> tuple[str, int] | None:
    """Content of the group opening at ``text[start]`` and the index after it; None if open.

    For ``close="]"`` the group ends at the first ``]`` outside braces (LaTeX's rule for
    optional arguments). Escaped characters (``\\{``) never open or close anything.
    """
    depth = 0
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == close and depth == 0:
            return text[start + 1 : index], index + 1
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return None
            depth -= 1
        index += 1
    return None


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\n":
        index += 1
    return index


def _read_name(text: str, index: int) -> tuple[str, int] | None:
    """A macro name given as ``\\name`` or ``{\\name}``."""
    index = _skip_space(text, index)
    if text.startswith("{", index):
        group = read_group(text, index)
        if group is None:
            return None
        match = _NAME.match(group[0].strip())
        return (match.group(1), group[1]) if match else None
    match = _CONTROL_SEQUENCE.match(text, index)
    return (match.group(1), match.end()) if match else None


def _parse_newcommand(text: str, index: int) -> tuple[Macro, int] | None:
    named = _read_name(text, index)
    if named is None:
        return None
    name, index = named
    n_args, default = 0, None
    index = _skip_space(text, index)
    if text.startswith("[", index):
        group = read_group(text, index, close="]")
        if group is None or not group[0].strip().isdigit() or not 0 <= int(group[0]) <= 9:
            return None
        n_args, index = int(group[0]), _skip_space(text, group[1])
        if text.startswith("[", index):
            group = read_group(text, index, close="]")
            if group is None or n_args == 0:
                return None
            default, index = group[0], _skip_space(text, group[1])
    if not text.startswith("{", index):
        return None
    body = read_group(text, index)
    return (Macro(name, n_args, default, body[0]), body[1]) if body else None


def _parse_def(text: str, index: int) -> tuple[Macro, int] | None:
    match = _CONTROL_SEQUENCE.match(text, _skip_space(text, index))
    if match is None:
        return None
    brace = text.find("{", match.end())
    if brace < 0:
        return None
    parameters = text[match.end() : brace]
    n_args = len(parameters) // 2
    if parameters != "".join(f"#{i}" for i in range(1, n_args + 1)):
        return None  # delimited parameters (\def\x#1.{...}): not expanded
    body = read_group(text, brace)
    return (Macro(match.group(1), n_args, None, body[0]), body[1]) if body else None


def collect_macros(text: str) -> tuple[dict[str, Macro], str]:
    """User macro definitions in ``text``, and ``text`` with those definitions removed."""
    macros: dict[str, Macro] = {}
    pieces = []
    position = 0
    while (match := _DEFINITION.search(text, position)) is not None:
        command = match.group(1) or match.group(2)
        parse = _parse_newcommand if match.group(1) else _parse_def
        parsed = parse(text, match.end())
        if parsed is None:
            pieces.append(text[position : match.end()])
            position = match.end()
            continue
        macro, end = parsed
        if command != "providecommand" or macro.name not in macros:
            macros[macro.name] = macro
        pieces.append(text[position : match.start()])
        position = end
    pieces.append(text[position:])
    return macros, "".join(pieces)


def _read_arguments(text: str, index: int, macro: Macro) -> tuple[list[str], int] | None:
    args: list[str] = []
    if macro.default is not None:
        after = _skip_space(text, index)
        group = read_group(text, after, close="]") if text.startswith("[", after) else None
        if group is not None:
            args.append(group[0])
            index = group[1]
        else:
            args.append(macro.default)
    while len(args) < macro.n_args:
        index = _skip_space(text, index)
        if index >= len(text) or text[index] == "}":
            return None
        if text[index] == "{":
            group = read_group(text, index)
            if group is None:
                return None
            args.append(group[0])
            index = group[1]
        elif (token := _CONTROL_SEQUENCE.match(text, index)) is not None:
            args.append(token.group(0))
            index = token.end()
        else:
            args.append(text[index])
            index += 1
    if macro.n_args == 0 and text.startswith("{}", index):
        index += 2
    return args, index


def _substitute(body: str, args: list[str]) -> str:
    if "#" not in body:  # most macros take no argument: nothing to substitute
        return body

    def parameter(match: re.Match[str]) -> str:
        if match.group(1) == "#":
            return "#"
        number = int(match.group(1))
        return args[number - 1] if number <= len(args) else match.group(0)

    return _PARAMETER.sub(parameter, body)


@dataclass(frozen=True)
class ExpansionLimits:
    max_depth: int = 16
    max_expansions: int = 20_000
    max_growth: float = 4.0


class _Runaway(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Expander:
    def __init__(
        self, macros: dict[str, Macro], skip: set[str], limits: ExpansionLimits, size: int
    ) -> None:
        self.macros = macros
        self.skip = skip
        self.limits = limits
        self.max_chars = int(limits.max_growth * size) + 1024
        self.uses: Counter[str] = Counter()
        self.total_uses = 0  # uses.total(), kept as a count: total() is O(names) per call
        self.growth: Counter[str] = Counter()

    def expand(self, text: str, depth: int) -> str:
        pieces: list[str] = []
        size = position = scan = 0
        while (match := _CONTROL_SEQUENCE.search(text, scan)) is not None:
            name = match.group(1)
            macro = self.macros.get(name)
            parsed = (
                None
                if macro is None or name in self.skip
                else _read_arguments(text, match.end(), macro)
            )
            if parsed is None:
                scan = match.end()
                continue
            if depth >= self.limits.max_depth:
                raise _Runaway(name)
            self.uses[name] += 1
            self.total_uses += 1
            if self.total_uses > self.limits.max_expansions:
                raise _Runaway(self.uses.most_common(1)[0][0])
            args, end = parsed
            replacement = _substitute(macro.body, args)
            if "\\" in replacement:  # only a control sequence can expand further
                replacement = self.expand(replacement, depth + 1)
            self.growth[name] += len(replacement) - (end - match.start())
            pieces += (text[position : match.start()], replacement)
            size += match.start() - position + len(replacement)
            if size > self.max_chars:
                raise _Runaway(self.growth.most_common(1)[0][0])
            position = scan = end
        pieces.append(text[position:])
        return "".join(pieces)


def expand_macros(
    text: str, macros: dict[str, Macro], limits: ExpansionLimits | None = None
) -> tuple[str, list[str]]:
    """``text`` with user macros expanded, and the names left unexpanded as runaways."""
    limits = limits or ExpansionLimits()
    usable = {name: m for name, m in macros.items() if name not in PROTECTED}
    if not usable:
        return text, []
    runaways: set[str] = set()
    for _ in range(MAX_ATTEMPTS):
        try:
            return _Expander(usable, runaways, limits, len(text)).expand(text, 0), sorted(runaways)
        except _Runaway as runaway:
            runaways.add(runaway.name)
    return text, sorted(usable)  # too many runaways: expand nothing rather than guess
