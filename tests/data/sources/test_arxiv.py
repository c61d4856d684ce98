import gzip
import io
import pickle
import tarfile

import pytest

from llamaforge.data.samples.arxiv import BIBLIOGRAPHY, PREAMBLE, write_samples
from llamaforge.data.sources.arxiv import ArxivConfig, ArxivSource, arxiv_id
from llamaforge.data.sources.base import FilterReport, config_from_table
from llamaforge.data.sources.latex import (
    ExpansionLimits,
    collect_macros,
    expand_macros,
    strip_comments,
)
from llamaforge.errors import ConfigError


def run(paths, **config):
    source = ArxivSource(ArxivConfig(**config))
    report = FilterReport()
    docs = {doc.id: doc for path in paths for doc in source.process(path, report)}
    return docs, report


def tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in members.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    directory = tmp_path_factory.mktemp("arxiv")
    write_samples(directory, n_docs=10, seed=0)
    truncated = tar_gz({"main.tex": PREAMBLE + "\\section{A}" + "text " * 5000})
    (directory / "2101.00099.tar.gz").write_bytes(truncated[: len(truncated) // 2])
    return run(ArxivSource(ArxivConfig()).list_inputs(directory))


def test_samples_kept_dropped_and_bad(samples):
    docs, report = samples
    assert sorted(docs) == [
        "2101.00001",
        "2101.00002",
        "2101.00003",
        "2101.00005",
        "2102.00001",
        "2102.00002",
        "2102.00003",
        "hep-th/9901001",
    ]
    assert dict(report.dropped_docs) == {"arxiv.no_section": 1, "arxiv.no_tex": 1}
    assert dict(report.bad_input) == {"macro_runaway": 1, "truncated": 1}
    assert "2101.00099" in report.bad_input_examples["truncated"]


def test_cleaning_removes_preamble_comments_bibliography_and_expands_macros(samples):
    docs, _ = samples
    for doc in docs.values():
        assert doc.text.startswith("\\section{")
        for gone in ("PREAMBLETEXT", "COMMENTTEXT", "BIBTEXT", "\\newcommand", "\\def", "\\end{"):
            assert gone not in doc.text
    text = docs["2101.00001"].text
    assert "We train SampleNet on $x \\in \\mathbb{R}^d$." in text
    # one-argument, optional-argument (default and given) and \def with two parameters
    assert "Let $\\mathbf{w}$ and $\\|w\\|_{2}$ and $\\|w\\|_{1}$ and $(a, b)$." in text
    assert "50\\% of runs.\n" in text  # an escaped percent is not a comment
    assert docs["2101.00001"].meta["macros_defined"] == 5


def test_tarball_main_file_and_inlined_inputs(samples):
    docs, _ = samples
    doc = docs["2101.00002"]
    assert doc.meta["main_file"] == "main.tex"
    assert doc.text.startswith("\\section{Introduction}")  # from sections/intro.tex
    assert "\\section{Method}" in doc.text  # from \include{method}
    assert "OLDTEXT" not in doc.text  # its \input was commented out
    assert docs["hep-th/9901001"].meta["main_file"] == "paper.tex"


def test_runaway_macros_kept_unexpanded_and_counted(samples):
    docs, report = samples
    doc = docs["2101.00005"]
    assert doc.meta["macros_unexpanded"] == ["loop", "self"]
    assert "\\loop and \\self here." in doc.text
    assert "SampleNet" in doc.text  # the other macros still expand
    assert report.bad_input_examples["macro_runaway"].endswith("\\loop \\self")


def test_strip_comments():
    text = "a\\%b % gone\n% whole line\n  %indented\nx\\\\% gone too\nend"
    assert strip_comments(text) == "a\\%b \nx\\\\\nend"


def test_collect_macros_rules():
    macros, rest = collect_macros(
        "\\newcommand{\\a}{1}\\renewcommand\\a{2}\\providecommand{\\a}{3}"
        "\\newcommand*{\\b}[3][x]{#1#2#3}\\def\\c#1.{delimited}\\def\\d{##}text"
    )
    assert macros["a"].body == "2"  # renewcommand wins, providecommand does not override
    assert (macros["b"].n_args, macros["b"].default) == (3, "x")
    assert "c" not in macros and "\\def\\c#1.{delimited}" in rest
    assert rest.endswith("text") and "\\newcommand" not in rest
    assert expand_macros("\\d", macros)[0] == "#"


def test_expansion_arguments_and_protected_commands():
    macros, _ = collect_macros(
        "\\newcommand{\\b}[3][x]{<#1|#2|#3>}\\def\\ours{Net}"
        "\\renewcommand{\\section}[1]{BROKEN}\\newcommand{\\e}[1]{[#1]}"
    )
    text, runaways = expand_macros(
        "\\b{y}{z} \\b[w]{y} z \\b\\alpha q \\ours{} is \\ours. \\section{S} \\e{\\ours} \\e",
        macros,
    )
    assert text == "<x|y|z> <w|y|z> <x|\\alpha|q> Net is Net. \\section{S} [Net] \\e"
    assert runaways == []


def test_recursive_and_exploding_macros_are_bounded():
    macros, body = collect_macros("\\def\\a{\\a\\a}\\newcommand{\\x}{\\x}" + "\\a \\x " * 200)
    text, runaways = expand_macros(body, macros)
    assert text == body and runaways == ["a", "x"]
    chain = "\\def\\p{aaaaaaaaaa}" + "".join(
        f"\\def\\{b}{{\\{a}\\{a}\\{a}\\{a}}}" for a, b in zip("pqrstu", "qrstuv", strict=True)
    )
    macros, body = collect_macros(chain + "Text \\v end.")
    text, runaways = expand_macros(body, macros, ExpansionLimits(max_growth=4.0))
    assert runaways  # 4**6 * 10 characters would be 40960
    assert len(text) <= 4 * len(body) + 1024
    text, runaways = expand_macros(body, macros, ExpansionLimits(max_growth=10_000))
    assert runaways == [] and text == "Text " + "a" * 40960 + " end."
    _, runaways = expand_macros(body, macros, ExpansionLimits(max_depth=3, max_growth=10_000))
    assert runaways  # six levels of nesting


def test_bibliography_variants_and_document_end(tmp_path):
    path = tmp_path / "2301.00001.tex"
    body = PREAMBLE.replace("%EXTRA%", "") + "\\section{A} kept\n\\bibliography{refs}\nAPPENDIX"
    path.write_text(body)
    docs, _ = run([path])
    assert docs["2301.00001"].text == "\\section{A} kept"
    path.write_text(PREAMBLE + "\\section*{A} starred\n\\printbibliography\nx" + BIBLIOGRAPHY)
    docs, _ = run([path])
    assert docs["2301.00001"].text == "\\section*{A} starred"


def test_input_cycles_and_depth_are_bounded(tmp_path):
    members = {
        "main.tex": PREAMBLE + "\\section{M}\\input{a}" + BIBLIOGRAPHY,
        "a.tex": "A\\input{b.tex}",
        "b.tex": "B\\input{a}\\input{missing}",
        "notes.txt": "ignored",
    }
    (tmp_path / "2301.00002.tgz").write_bytes(tar_gz(members))
    docs, report = run([tmp_path / "2301.00002.tgz"])
    assert docs["2301.00002"].text == "\\section{M}AB"
    docs, _ = run([tmp_path / "2301.00002.tgz"], max_input_depth=1)
    assert docs["2301.00002"].text == "\\section{M}A"
    assert not report.bad_input


def test_archive_without_main_file_and_gzipped_tex(tmp_path):
    (tmp_path / "2301.00003.tar").write_bytes(
        gzip.decompress(tar_gz({"a.tex": "\\section{A} no class", "b.tex": "x"}))
    )
    single = PREAMBLE + "\\section{Z} zipped" + BIBLIOGRAPHY
    (tmp_path / "2301.00004.gz").write_bytes(gzip.compress(single.encode()))
    docs, report = run(sorted(tmp_path.iterdir()))
    assert list(docs) == ["2301.00004"] and docs["2301.00004"].text == "\\section{Z} zipped"
    assert dict(report.dropped_docs) == {"arxiv.no_main_file": 1}


def test_bad_input_is_counted(tmp_path):
    files = {
        "2301.00010.tex": b"",
        "2301.00011.tex": b"\x00\x01\x02\x03" * 100,
        "2301.00012.tex": "\\section{A} caf\xe9".encode("latin-1"),
        "2301.00013.tex": b"\\section{A} " + b"x" * 5000,
        "2301.00014.gz": b"\x1f\x8b not really gzip",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    docs, report = run(sorted(tmp_path.iterdir()), max_source_bytes=4096)
    assert docs == {}
    assert dict(report.bad_input) == {
        "empty": 1,
        "binary": 1,
        "utf8": 1,
        "too_large": 1,
        "truncated": 1,
    }


def test_ids_config_and_pickling(tmp_path):
    assert arxiv_id(tmp_path / "2101.00001v2.tar.gz") == "2101.00001v2"
    assert arxiv_id(tmp_path / "hep-th9901001.gz") == "hep-th/9901001"
    assert arxiv_id(tmp_path / "math0301234v1.tex") == "math/0301234v1"
    with pytest.raises(ConfigError, match="max_growth"):
        ArxivConfig(max_growth=0.5)
    with pytest.raises(ConfigError, match="max_expansions"):
        ArxivConfig(max_expansions=0)
    with pytest.raises(ConfigError, match="max_depth"):
        config_from_table(ArxivConfig, {"max_depth": 3}, "sources.arxiv")
    source = pickle.loads(pickle.dumps(ArxivSource(ArxivConfig(max_input_depth=2))))
    assert source.config.max_input_depth == 2


def test_strip_comments_keeps_percent_in_urls_verb_and_verbatim():
    text = (
        "see \\url{https://a.org/x%20y} and \\href{https://b.org/%7Eme}{me} % gone\n"
        "\\verb|50%| \\verb*+a%b+ rate 5\\% % gone\n"
        '\\begin{verbatim}\n% printf("%d")\n\\end{verbatim}\n'
        "\\begin{lstlisting}\nx = 10 % 3\n\\end{lstlisting}\n"
        "% whole line\n"
        "after 100% done\n"
    )
    assert strip_comments(text) == (
        "see \\url{https://a.org/x%20y} and \\href{https://b.org/%7Eme}{me} \n"
        "\\verb|50%| \\verb*+a%b+ rate 5\\% \n"
        '\\begin{verbatim}\n% printf("%d")\n\\end{verbatim}\n'
        "\\begin{lstlisting}\nx = 10 % 3\n\\end{lstlisting}\n"
        "after 100\n"
    )


@pytest.mark.parametrize(
    ("first_header", "later"),
    [
        ("\\chapter{Introduction}", "\\section{Background}"),
        ("\\chapter*{Preface}", "\\chapter{One}"),
        ("\\part{Theory}", "\\chapter{One}"),
        ("\\subsection[short]{A long title}", "\\section{B}"),
    ],
)
def test_body_starts_at_the_first_section_like_header(tmp_path, first_header, later):
    body = f"{first_header}\nFirst chapter text.\n{later}\nMore text.\n"
    path = tmp_path / "2301.00099.tex"
    path.write_text(PREAMBLE.replace("%EXTRA%", "") + "\\maketitle\nAbstract here.\n" + body)
    docs, report = run([path])
    text = docs["2301.00099"].text
    assert text.startswith(first_header) and "First chapter text." in text
    assert "More text." in text and "Abstract here." not in text


def test_url_with_percent_survives_cleaning(tmp_path):
    path = tmp_path / "2301.00098.tex"
    body = "\\section{Data}\nFrom \\url{https://x.org/a%20b} at 50\\% rate.\n"
    path.write_text(PREAMBLE.replace("%EXTRA%", "") + body + BIBLIOGRAPHY)
    docs, _ = run([path])
    assert "\\url{https://x.org/a%20b} at 50\\% rate." in docs["2301.00098"].text


def test_monthly_bulk_tar_is_streamed_paper_by_paper(tmp_path):
    def paper(title):
        return (
            PREAMBLE.replace("%EXTRA%", "") + f"\\section{{{title}}} body of {title}" + BIBLIOGRAPHY
        )

    members = {
        "2301/2301.00001.gz": tar_gz({"main.tex": paper("Project"), "fig.png": b"\x89PNG"}),
        "2301/2301.00002.gz": gzip.compress(paper("Single").encode()),
        "2301/2301.00003.pdf": b"%PDF-1.4 no source for this one",
        "2301/2301.00004.gz": gzip.compress(paper("Broken").encode())[:40],  # cut member
        "2301/2301.00005.gz": gzip.compress(paper("Last").encode()),
    }
    bulk = tmp_path / "arXiv_src_2301_001.tar"
    with tarfile.open(bulk, "w") as archive:  # plain tar, as arXiv ships them
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    source = ArxivSource(ArxivConfig())
    assert source.list_inputs(tmp_path) == [bulk]
    docs, report = run([bulk])
    assert sorted(docs) == ["2301.00001", "2301.00002", "2301.00005"]
    assert docs["2301.00001"].text == "\\section{Project} body of Project"
    assert docs["2301.00002"].meta["bulk_tar"] == bulk.name
    assert dict(report.dropped_docs) == {"arxiv.pdf_only": 1}
    assert dict(report.bad_input) == {"truncated": 1}
    assert "2301.00004" in report.bad_input_examples["truncated"]
    # A bulk tar cut in the middle keeps the papers before the cut.
    cut = tmp_path / "cut" / "arXiv_src_2301_002.tar"
    cut.parent.mkdir()
    with tarfile.open(bulk) as archive:
        last = archive.getmembers()[-1].offset_data
    cut.write_bytes(bulk.read_bytes()[: last + 10])  # inside the last paper's data
    docs, report = run([cut])
    assert {"2301.00001", "2301.00002"} <= set(docs) and "2301.00005" not in docs
    assert report.bad_input["truncated"] >= 1
