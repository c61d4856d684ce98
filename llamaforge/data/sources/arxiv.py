"""arXiv (paper §2.1, 2.5 % of the mixture): LaTeX sources, cleaned as RedPajama did for LLaMA.

Inputs, one paper per file, as arXiv serves them: a ``.tex`` file, a tarball (``.tar``,
``.tar.gz``, ``.tgz``) or ``<id>.gz``, which is either a gzipped tarball or a single gzipped
``.tex`` (told apart by content, not name). Members are read in memory, never extracted, so a
hostile archive cannot write anywhere. In a tarball the main file is the ``.tex`` member with
``\\documentclass`` (or LaTeX 2.09's ``\\documentstyle``) and ``\\begin{document}``; if several
have both, the shallowest path wins, then the first name in sorted order. Non-``.tex`` members
are ignored. ``\\input``/``\\include`` of members are inlined, ``max_input_depth`` levels deep
(cycles and missing files inline nothing).

Cleaning follows the paper ("we removed everything before the first section, as well as the
bibliography. We also removed the comments from the .tex files, and inline-expanded
definitions and macros written by users"), in this order:

1. comments are removed from every file (so a commented-out ``\\section`` or ``\\input`` does
   not count) by :func:`~llamaforge.data.sources.latex.strip_comments`, which leaves ``\\%``
   and a ``%`` inside ``\\url{}``, ``\\verb`` or a verbatim environment alone. (RedPajama's
   ``[^\\\\]%.+$`` cuts ``\\url{a%20b}``, eats the character before each ``%`` and removes
   only comment lines that start in column 0; we deliberately differ, to keep the text
   TeX would typeset.) Macro definitions are collected from the whole paper, preamble
   included;
2. everything before the first section-like header goes -- ``\\part``, ``\\chapter``,
   ``\\section``, ``\\subsection`` or ``\\subsubsection`` (starred or not, with its
   ``{title}``), the commands of RedPajama's ``arxiv_cleaner`` -- so a thesis keeps its first
   chapter; preamble, title, authors and abstract go. A paper without any is dropped as
   ``arxiv.no_section``. (RedPajama's regex, ``^(.*)(\\chapter...|\\section...)`` with a
   greedy ``.*``, in fact keeps from the *last* such header of each file; we keep from the
   first, as its docstring and the paper say. Its ``\\paragraph`` alternatives lack a ``|``
   and never match alone, so ``\\paragraph`` does not start a body here either.);
3. the bibliography goes with everything after it: from the first ``\\begin{thebibliography}``,
   ``\\bibliography{...}``, ``\\printbibliography`` or ``\\end{document}``;
4. user macros are expanded (:mod:`llamaforge.data.sources.latex`), bounded by
   ``max_expansion_depth``, ``max_expansions`` and ``max_growth``. A macro that breaks a
   bound is left unexpanded, the paper is kept, its names are in
   ``meta["macros_unexpanded"]`` and the paper is counted once as bad input
   ``macro_runaway``.

arXiv's bulk source archives (``arXiv_src_YYMM_NNN.tar``, as RedPajama downloaded them
from the requester-pays S3 bucket) are read directly: streamed member by member
(``tarfile`` mode ``r|``, never extracted; RedPajama extracted each tar to disk), each
``<yymm>/<id>.gz`` being one paper as above and ``.pdf`` members (papers without source)
dropped as ``arxiv.pdf_only``; one broken member is counted and skipped.

Drops: ``arxiv.no_tex`` (an archive without ``.tex``), ``arxiv.no_main_file``,
``arxiv.no_section``, ``arxiv.empty``. Bad input: ``empty``, ``binary``, ``utf8`` (the main
file; included files that are not UTF-8 are skipped), ``truncated``, ``too_large`` (more
than ``max_source_bytes`` decompressed: archive bombs), ``nested_archive``. Every layer is
undone by us with a bound -- the file's own compression, then at most one more inside it (a
``.tar.gz`` gzipped again; gzip, bzip2 or xz, what ``tarfile``'s ``r:*`` used to undo
unbounded) -- each reading at most ``max_source_bytes + 1`` bytes, and the ``.tex`` members
read from a tar add up to at most ``max_source_bytes`` too (a sparse member expands from a
few header bytes); a third layer is ``nested_archive``. Ids are arXiv ids from the file
name; old-style ``hep-th9901001`` becomes ``hep-th/9901001``.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llamaforge.data.sources.arxiv_files import (
    compression,
    decompress,
    read_source,
    tar_members,
)
from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.latex import (
    ExpansionLimits,
    collect_macros,
    expand_macros,
    strip_comments,
)
from llamaforge.data.sources.textio import STREAM_ERRORS, BadInput, decode_utf8, looks_binary
from llamaforge.errors import ConfigError

SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz", ".tex")
_DOCUMENTCLASS = re.compile(r"\\document(?:class|style)(?![A-Za-z])")
_BEGIN_DOCUMENT = re.compile(r"\\begin\s*\{document\}")
_INPUT = re.compile(r"\\(?:input|include|subfile)(?![A-Za-z])\s*(?:\{([^}]*)\}|([^\s{}\\%]+))")
# RedPajama's arxiv_cleaner section-like headers: \part, \chapter, \section, \subsection,
# \subsubsection, starred or not, optional [short title], then the {title}.
_SECTION = re.compile(
    r"\\(?:part|chapter|section|subsection|subsubsection)(?![A-Za-z])\*?\s*(?:\[[^\]]*\]\s*)?\{"
)
_BIBLIOGRAPHY = re.compile(
    r"\\begin\s*\{thebibliography\}|\\bibliography\s*\{|\\printbibliography(?![A-Za-z])"
    r"|\\end\s*\{document\}"
)
BULK_NAME = re.compile(r"^arXiv_src_\d{4}_\d{3}\.tar$")
_OLD_STYLE_ID = re.compile(r"^([a-z][a-z-]*(?:\.[A-Z]{2})?)(\d{7}(?:v\d+)?)$")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_FILTERS = ["arxiv.comments", "arxiv.preamble", "arxiv.bibliography", "arxiv.macros"]


@dataclass
class ArxivConfig:
    """``[sources.arxiv]``: bounds on archives, ``\\input`` nesting and macro expansion."""

    max_expansion_depth: int = 16
    max_expansions: int = 20_000
    max_growth: float = 4.0
    max_input_depth: int = 8
    max_source_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name in ("max_expansion_depth", "max_expansions", "max_input_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"[sources.arxiv].{name} must be a positive integer, got {value!r}"
                )
        if not isinstance(self.max_source_bytes, int) or self.max_source_bytes < 1024:
            raise ConfigError(
                "[sources.arxiv].max_source_bytes must be an integer >= 1024, "
                f"got {self.max_source_bytes!r}"
            )
        if not isinstance(self.max_growth, int | float) or self.max_growth < 1:
            raise ConfigError(
                "[sources.arxiv].max_growth is the largest expanded/original size ratio; it must "
                f"be >= 1, got {self.max_growth!r}"
            )

    @property
    def limits(self) -> ExpansionLimits:
        return ExpansionLimits(self.max_expansion_depth, self.max_expansions, self.max_growth)


def arxiv_id(path: Path) -> str:
    """``2101.00001v2.tar.gz`` -> ``2101.00001v2``; ``hep-th9901001.gz`` -> ``hep-th/9901001``."""
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    match = _OLD_STYLE_ID.match(name)
    return f"{match.group(1)}/{match.group(2)}" if match else name


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ArxivSource:
    """One document per paper: its LaTeX from the first section to the bibliography."""

    name: ClassVar[str] = "arxiv"

    def __init__(self, config: ArxivConfig) -> None:
        self.config = config

    def list_inputs(self, root: Path) -> list[Path]:
        return sorted(
            p for p in Path(root).rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES)
        )

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        path = Path(path)
        if BULK_NAME.match(path.name):
            yield from self._process_bulk(path, report)
            return
        try:
            data = read_source(path, str(path), self.config.max_source_bytes)
        except BadInput as error:
            report.bad(error.reason, error.where)
            return
        document = self._paper(data, path.name, str(path), report)
        if document is not None:
            yield document

    def _process_bulk(self, path: Path, report: FilterReport) -> Iterator[Document]:
        """A monthly bulk tar, streamed (``r|``): each ``<yymm>/<id>.gz`` member is one paper.

        Members are read one at a time and never extracted; a ``.pdf`` member (a paper
        without source) is dropped as ``arxiv.pdf_only``, any other non-``.gz`` member is
        skipped, a member that cannot be read is counted as bad input and skipped, and a
        tar that breaks off keeps the papers before the break (``truncated``).
        """
        where = str(path)
        limit = self.config.max_source_bytes
        try:
            with tarfile.open(path, mode="r|") as bulk:
                for member in bulk:
                    name = member.name.rsplit("/", 1)[-1]
                    if not member.isfile():
                        continue
                    if name.lower().endswith(".pdf"):
                        report.drop("arxiv.pdf_only")
                        continue
                    if not name.lower().endswith(".gz"):
                        continue
                    member_where = f"{where}:{member.name}"
                    if member.size > limit:
                        report.bad("too_large", f"{member_where}: {member.size} bytes")
                        continue
                    packed = bulk.extractfile(member).read(limit + 1)  # type: ignore[union-attr]
                    if len(packed) > limit:  # a sparse member: bigger than its header said
                        report.bad("too_large", f"{member_where}: over {limit} bytes")
                        continue
                    try:
                        data = decompress(packed, member_where, limit)
                    except BadInput as error:
                        report.bad(error.reason, error.where)
                        continue
                    document = self._paper(data, name, member_where, report)
                    if document is not None:
                        document.meta["bulk_tar"] = path.name
                        yield document
        except (tarfile.TarError, *STREAM_ERRORS) as error:
            report.bad("truncated", f"{where}: {type(error).__name__}")

    def _paper(self, data: bytes, name: str, where: str, report: FilterReport) -> Document | None:
        """One paper's decompressed source (a tar or a .tex) -> its document, or None."""
        try:
            members, archived = self._members(data, name, where)
            main = _main_file(members, single=not archived)
            source = self._inline(members, main, depth=0, stack=(main,))
        except BadInput as error:
            report.bad(error.reason, error.where)
            return None
        except _Dropped as dropped:
            report.drop(dropped.reason)
            return None
        macros, source = collect_macros(source)
        section = _SECTION.search(source)
        if section is None:
            report.drop("arxiv.no_section", source)
            return None
        body = source[section.start() :]
        bibliography = _BIBLIOGRAPHY.search(body)
        if bibliography is not None:
            body = body[: bibliography.start()]
        body, runaways = expand_macros(body, macros, self.config.limits)
        text = _BLANK_RUNS.sub("\n\n", _TRAILING_SPACE.sub("\n", body)).strip()
        if not text:
            report.drop("arxiv.empty", source)
            return None
        if runaways:
            report.bad("macro_runaway", f"{where}: " + " ".join("\\" + n for n in runaways))
        report.keep(text)
        meta = {
            "file": where,
            "main_file": main,
            "macros_defined": len(macros),
            "macros_unexpanded": runaways,
            "filters": list(_FILTERS),
        }
        return Document(text=text, source=self.name, id=arxiv_id(Path(name)), meta=meta)

    def _members(self, data: bytes, name: str, where: str) -> tuple[dict[str, str | None], bool]:
        """Comment-free text of each ``.tex`` file (None: not UTF-8), and whether archived."""
        if not data.strip():
            raise BadInput("empty", where)
        if compression(data) is not None:  # a second layer (a .tar.gz gzipped again)
            data = decompress(data, where, self.config.max_source_bytes)
            if compression(data) is not None:
                raise BadInput("nested_archive", f"{where}: compressed more than twice")
        if _is_archive(Path(name)) or data[257:262] == b"ustar":
            members = tar_members(data, where, self.config.max_source_bytes)
            if not members:
                raise _Dropped("arxiv.no_tex")
            return members, True
        if looks_binary(data[:8192]):
            raise BadInput("binary", where)
        text = decode_utf8(data)
        if text is None:
            raise BadInput("utf8", where)
        return {name: strip_comments(text)}, False

    def _inline(
        self, members: dict[str, str | None], name: str, depth: int, stack: tuple[str, ...]
    ) -> str:
        """``members[name]`` with ``\\input``/``\\include`` of other members inlined."""
        folder = posixpath.dirname(name)

        def include(match: re.Match[str]) -> str:
            target = _resolve((match.group(1) or match.group(2)).strip(), folder, members)
            if target is None or target in stack or depth + 1 > self.config.max_input_depth:
                return ""
            return self._inline(members, target, depth + 1, (*stack, target))

        return _INPUT.sub(include, members[name] or "")

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """arXiv ids are unique: no source-wide dedup."""
        yield from docs


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith((".tar", ".tar.gz", ".tgz"))


def _main_file(members: dict[str, str | None], single: bool) -> str:
    if single:
        (name,) = members
        if members[name] is None:
            raise BadInput("utf8", name)
        return name
    candidates = [
        name
        for name, text in members.items()
        if text is not None and _DOCUMENTCLASS.search(text) and _BEGIN_DOCUMENT.search(text)
    ]
    if not candidates:
        if any(text is None for text in members.values()):
            raise BadInput("utf8", "no UTF-8 main file among " + ", ".join(sorted(members)))
        raise _Dropped("arxiv.no_main_file")
    return min(candidates, key=lambda name: (name.count("/"), name))


def _resolve(target: str, folder: str, members: dict[str, str | None]) -> str | None:
    """The member an ``\\input`` names: relative to the archive root or the including file."""
    for base in ("", folder):
        path = posixpath.normpath(posixpath.join(base, target)).removeprefix("./")
        for candidate in (path, path + ".tex"):
            if members.get(candidate) is not None:
                return candidate
    return None
