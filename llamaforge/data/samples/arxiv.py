"""Small arXiv source files, in the shapes arXiv serves them, with known cleaning outcomes.

Every paper has a preamble with user macros (``\\newcommand`` with and without arguments,
an optional argument, ``\\def``), a title and abstract (text marked ``PREAMBLETEXT``, which
cleaning must remove), comments (``COMMENTTEXT``), sections using the macros, and a
bibliography (``BIBTEXT``). Shapes:

* ``<id>.tex``: a bare file; ``<id>.gz``: the same, gzipped (arXiv's single-file form);
* ``<id>.tar.gz``: ``main.tex`` plus ``sections/intro.tex`` (``\\input``), ``method.tex``
  (``\\include``), a ``.png`` and a ``.bib`` that must be ignored;
* ``hep-th<7 digits>.gz``: a gzipped tarball under an old-style id;
* ``<id>.tex`` without any ``\\section`` (dropped: ``arxiv.no_section``);
* ``<id>.tex`` defining ``\\def\\loop{\\loop\\loop}`` and ``\\newcommand{\\self}{\\self}``
  (kept, those macros unexpanded, counted as ``macro_runaway``);
* ``<id>.tar.gz`` with only a PDF (dropped: ``arxiv.no_tex``);
* with ``n_docs >= 20``, ``<id>.tar.gz`` cut in half (bad input: ``truncated``).

``doc_bytes`` (0 by default: papers of ~2 KB, which the tests are written against) gives the
ordinary papers more and longer sections (equations, citations, macro uses, comments) until
each is about that long; :data:`TYPICAL_DOC_BYTES` is a real paper's LaTeX source.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path

from llamaforge.data.samples import write_atomic

# fmt: off
WORDS = [
    "model", "training", "loss", "gradient", "network", "layer", "attention", "data", "token",
    "sequence", "optimizer", "benchmark", "accuracy", "parameter", "scaling", "result",
    "method", "baseline", "experiment", "evaluation", "embedding", "theorem", "bound",
]
# fmt: on
# Average LaTeX source of a paper in RedPajama's arXiv subset (~50 KB).
TYPICAL_DOC_BYTES = 50_000

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage{amsmath,amssymb}
% COMMENTTEXT a preamble comment
\newcommand{\R}{\mathbb{R}}
\newcommand\vect[1]{\mathbf{#1}}
\newcommand{\norm}[2][2]{\|#2\|_{#1}}
\def\ours{SampleNet}
\def\pair#1#2{(#1, #2)}
%EXTRA%
\title{PREAMBLETEXT A study of sample papers}
\author{A. Author}
\begin{document}
\maketitle
\begin{abstract}
PREAMBLETEXT We study things.
\end{abstract}
"""
BIBLIOGRAPHY = r"""
\begin{thebibliography}{9}
\bibitem{a} BIBTEXT A. Author. A paper. 2020.
\end{thebibliography}
\end{document}
"""


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 14))]
    return " ".join(words).capitalize() + "."


def section(rng: random.Random, title: str) -> str:
    """A section that uses every kind of preamble macro and has comments to strip."""
    return (
        f"\\section{{{title}}}\n{_sentence(rng)} We train \\ours{{}} on $x \\in \\R^d$.\n"
        f"% COMMENTTEXT a full-line comment\n"
        f"Let $\\vect{{w}}$ and $\\norm{{w}}$ and $\\norm[1]{{w}}$ and $\\pair{{a}}{{b}}$. "
        f"{_sentence(rng)} 50\\% of runs. % COMMENTTEXT trailing\n\n{_sentence(rng)}\n"
    )


def _long_paragraph(rng: random.Random, index: int) -> str:
    """A paragraph like a paper's body: prose, an equation, citations, references, a comment."""
    return (
        f"{_sentence(rng)} As shown in~\\cite{{ref{index}}}, \\ours{{}} reaches "
        f"${rng.randint(10, 99)}.{rng.randint(0, 9)}\\%$ on $\\vect{{x}}_{{{index}}}$. "
        f"{_sentence(rng)} {_sentence(rng)}\n"
        f"\\begin{{equation}}\\label{{eq:{index}}}\n"
        f"  \\norm{{\\vect{{w}}_{{{index}}}}} \\le \\frac{{1}}{{{rng.randint(2, 9)}}} "
        f"\\sum_{{i}} \\pair{{x_i}}{{y_i}}, \\quad x \\in \\R^{{d}}\n"
        f"\\end{{equation}}\n"
        f"{_sentence(rng)} Equation~\\eqref{{eq:{index}}} {_sentence(rng)} % COMMENTTEXT note\n\n"
    )


def paper(
    rng: random.Random, sections: int = 2, extra_preamble: str = "", doc_bytes: int = 0
) -> str:
    """A paper of ``sections`` sections, or of about ``doc_bytes`` when that is given."""
    if doc_bytes:
        target, size, parts = doc_bytes * rng.uniform(0.5, 1.5), 0, []
        while size < target:
            title = f"Part {len(parts) + 1}"
            paragraphs = [_long_paragraph(rng, 10 * len(parts) + i) for i in range(4)]
            parts.append(section(rng, title) + "".join(paragraphs))
            size += len(parts[-1])
        return PREAMBLE.replace("%EXTRA%", extra_preamble) + "".join(parts) + BIBLIOGRAPHY
    body = "".join(section(rng, f"Part {i + 1}") for i in range(sections))
    return PREAMBLE.replace("%EXTRA%", extra_preamble) + body + BIBLIOGRAPHY


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000  # fixed: the same seed writes the same bytes
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def multi_file_paper(rng: random.Random) -> dict[str, bytes]:
    main = PREAMBLE.replace("%EXTRA%", "") + (
        "\\input{sections/intro}\n% \\input{sections/old}\n\\include{method}\n" + BIBLIOGRAPHY
    )
    return {
        "main.tex": main.encode(),
        "sections/intro.tex": section(rng, "Introduction").encode(),
        "sections/old.tex": b"\\section{Old} OLDTEXT must not be inlined.\n",
        "method.tex": section(rng, "Method").encode(),
        "figures/plot.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "refs.bib": b"@article{a, title={BIBTEXT}}\n",
    }


def write_samples(
    directory: Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write ``n_docs`` papers: the special shapes above, then ordinary ones in rotation."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    no_section = PREAMBLE.replace("%EXTRA%", "") + "Only text, never a section.\n" + BIBLIOGRAPHY
    runaway = r"\def\loop{\loop\loop}\newcommand{\self}{\self}"
    files: dict[str, bytes] = {
        "2101.00001.tex": paper(rng).encode(),
        "2101.00002.tar.gz": _tar_gz(multi_file_paper(rng)),
        "2101.00003.gz": gzip.compress(paper(rng).encode(), mtime=0),
        "hep-th9901001.gz": _tar_gz({"paper.tex": paper(rng).encode()}),
        "2101.00004.tex": no_section.encode(),
        "2101.00005.tex": paper(rng, 1, runaway)
        .replace("Part 1}", "Part 1} \\loop and \\self here.")
        .encode(),
        "2101.00006.tar.gz": _tar_gz({"paper.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"}),
    }
    if n_docs >= 20:
        whole = _tar_gz(multi_file_paper(rng))
        files["2101.00007.tar.gz"] = whole[: len(whole) // 2]
    shapes = ("tex", "gz", "tar.gz")
    for index in range(max(n_docs - len(files), 0)):
        shape = shapes[index % 3]
        data = paper(rng, 3, doc_bytes=doc_bytes).encode()
        if shape == "gz":
            data = gzip.compress(data, mtime=0)
        elif shape == "tar.gz":
            data = _tar_gz({"ms.tex": data})
        files[f"2102.{index + 1:05d}.{shape}"] = data
    written = []
    for name, data in files.items():
        path = directory / name
        write_atomic(path, data)
        written.append(path)
    return sorted(written)
