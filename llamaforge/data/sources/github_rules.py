"""GitHub file heuristics and licence-banner removal, free of I/O so they test in isolation.

Decisions where the paper is silent:

* **Line statistics** (RedPajama / Codex), with the formulas of RedPajama's
  ``get_filecontent_stats`` and on the text it computes them on (after the
  banner is removed): lines are ``str.splitlines()``; maximum line length is
  the longest line without its line break; mean line length is
  ``len(text) / number of lines`` (line breaks count, so ``"ab\ncd\n"`` has
  mean 3.0); the alphanumeric fraction is characters with ``str.isalnum()``
  over ``len(text)``. Text without lines has all three 0.
* **Header boilerplate**: at the top of a file (after a shebang and blank
  lines), consecutive comment blocks -- ``#``, ``//``, ``--`` line comments,
  ``/* ... */``, ``<!-- ... -->`` and ``\"\"\"``/``'''`` docstrings -- are removed
  while they match :data:`LICENSE_MARKERS`; the first block that does not
  match ends the header, so a module docstring that merely mentions a licence
  further down is never touched. A block that never closes (an unterminated
  ``/*``) is not a header and stays. A ``# -*- coding -*-`` line inside a
  licence comment block goes with it.
* **Extension whitelist**: :data:`DEFAULT_EXTENSIONS` are source code, build
  and markup files of the languages RedPajama and The Stack keep (C-family,
  Python, Java/JVM, JavaScript/TypeScript, Go, Rust, Ruby, PHP, shell, SQL,
  Haskell, Lua, Julia, R, Fortran, TeX, HTML/CSS, Markdown, reStructuredText,
  YAML/TOML/JSON configuration excluded as data). Matching is on the
  lower-cased suffix, or the whole name for extensionless files (Makefile).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that make a top-of-file comment a licence or copyright banner.
LICENSE_MARKERS = re.compile(
    r"copyright|\(c\)\s*(?:19|20)\d\d|\u00a9|spdx-license-identifier|licensed under|"
    r"all rights reserved|permission is hereby granted|redistribution and use in source|"
    r"gnu (?:lesser |affero )?general public license|apache license|mit license|"
    r"bsd license|without warranties or conditions",
    re.IGNORECASE,
)

DEFAULT_EXTENSIONS: tuple[str, ...] = (
    # C family and assembly
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".c++", ".h++", ".cu", ".cuh",
    ".m", ".mm", ".cs", ".asm", ".s",
    # JVM, .NET and mobile
    ".java", ".kt", ".kts", ".scala", ".groovy", ".clj", ".swift", ".vb", ".fs", ".dart",
    # scripting
    ".py", ".pyx", ".rb", ".pl", ".pm", ".php", ".lua", ".r", ".jl", ".tcl",
    ".sh", ".bash", ".zsh", ".ps1", ".bat", ".cmd",
    # web
    ".js", ".jsx", ".mjs", ".ts", ".tsx", ".vue", ".html", ".htm", ".css", ".scss", ".less",
    # systems and functional
    ".go", ".rs", ".hs", ".ml", ".mli", ".erl", ".ex", ".exs", ".elm", ".lisp", ".el", ".scm",
    ".f", ".f90", ".f95", ".f03", ".for", ".v", ".sv", ".vhd", ".sql", ".proto", ".cmake",
    # documentation and markup
    ".md", ".markdown", ".rst", ".tex", ".txt", ".xml",
    # extensionless build files (matched on the whole name)
    "makefile", "dockerfile", "cmakelists.txt", "rakefile", "gemfile",
)  # fmt: skip

_LINE_COMMENT = re.compile(
    r"^\s*(#(?![!]|include|define|if|ifdef|ifndef|endif|pragma|import)|//|--)"
)
_BLOCK_OPENERS = (("/*", "*/"), ("<!--", "-->"), ('"""', '"""'), ("'''", "'''"))
_MAX_HEADER_LINES = 400
# Runs of characters for which str.isalnum() is true: re's \w is exactly isalnum() plus "_".
_ALNUM_RUN = re.compile(r"[^\W_]+")
_ASCII_ALNUM = bytes(b for b in range(128) if chr(b).isalnum())


@dataclass(frozen=True)
class LineStats:
    max_line_length: int
    avg_line_length: float
    alnum_fraction: float


def line_stats(text: str) -> LineStats:
    lengths = list(map(len, text.splitlines()))
    if not lengths:
        return LineStats(0, 0.0, 0.0)
    # Counted in C: deleting the alphanumerics and measuring what is left is ~20x faster
    # than a per-character generator (bytes.translate for ASCII, the common case, else re).
    if text.isascii():
        alnum = len(text) - len(text.encode("ascii").translate(None, _ASCII_ALNUM))
    else:
        alnum = len(text) - len(_ALNUM_RUN.sub("", text))
    return LineStats(
        max_line_length=max(lengths),
        avg_line_length=len(text) / len(lengths),
        alnum_fraction=alnum / len(text),
    )


def extension_allowed(path: str, extensions: frozenset[str]) -> bool:
    """True if ``path``'s lower-cased suffix or whole file name is in ``extensions``."""
    name = path.rsplit("/", 1)[-1].lower()
    if name in extensions:
        return True
    dot = name.rfind(".")
    return dot > 0 and name[dot:] in extensions


def _comment_block_end(lines: list[str], start: int) -> int | None:
    """Index after the comment block starting at ``lines[start]``; None if none starts there."""
    first = lines[start]
    prefix = _LINE_COMMENT.match(first)
    if prefix:
        marker = prefix.group(1)
        end = start + 1
        while end < len(lines):
            match = _LINE_COMMENT.match(lines[end])
            if not match or match.group(1) != marker:
                break
            end += 1
        return end
    stripped = first.lstrip()
    for opener, closer in _BLOCK_OPENERS:
        if stripped.startswith(opener):
            rest = stripped[len(opener) :]
            if closer in rest:
                return start + 1
            for end in range(start + 1, min(len(lines), start + _MAX_HEADER_LINES)):
                if closer in lines[end]:
                    return end + 1
            return None  # unterminated: code, not a header
    return None


def strip_license_header(text: str) -> tuple[str, int]:
    """``text`` without licence/copyright comment blocks at its top; also the chars removed."""
    lines = text.splitlines(keepends=True)
    kept_prefix: list[str] = []
    index = 0
    if lines and lines[0].startswith("#!"):
        kept_prefix.append(lines[0])
        index = 1
    removed_any = False
    while index < len(lines):
        probe = index
        while probe < len(lines) and not lines[probe].strip():
            probe += 1
        if probe >= len(lines):
            break
        end = _comment_block_end(lines, probe)
        if end is None or not LICENSE_MARKERS.search("".join(lines[probe:end])):
            break
        index = end
        removed_any = True
    if not removed_any:
        return text, 0
    body = "".join(lines[index:]).lstrip("\r\n")
    result = "".join(kept_prefix) + body
    return result, len(text) - len(result)
