import pickle

import py7zr
import pytest

from llamaforge.data.samples.stackexchange import posts_xml, row, write_samples
from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.html_text import html_to_text
from llamaforge.data.sources.stackexchange import (
    DEFAULT_SITES,
    StackExchangeConfig,
    StackExchangeSource,
    site_selected,
)
from llamaforge.errors import ConfigError


def run(source, paths):
    report = FilterReport()
    docs = [doc for path in paths for doc in source.process(path, report)]
    return docs, report


def write_site(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Posts.xml").write_bytes(posts_xml(rows))
    return folder / "Posts.xml"


def test_html_to_text_keeps_code_and_structure():
    html = (
        "<p>Use <code>List&lt;T&gt;</code>   here.</p>\n"
        "<pre><code>if x:\n    y = 1 &amp; 2\n</code></pre>"
        "<ul><li>first</li><li>second <a href='#'>link</a></li></ul>"
        "<p>a<br>b</p><script>alert(1)</script>"
    )
    assert html_to_text(html) == (
        "Use List<T> here.\n\nif x:\n    y = 1 & 2\n\n- first\n- second link\n\na\nb"
    )


def test_question_then_answers_by_score(tmp_path):
    rows = [
        row(Id=1, PostTypeId=1, Score=4, Title="Why & how?", Body="<p>Body <b>one</b>.</p>"),
        row(Id=2, PostTypeId=2, ParentId=1, Score=1, Body="<p>low</p>"),
        row(Id=3, PostTypeId=1, Score=0, Title="Unanswered", Body="<p>Nobody knows.</p>"),
        row(Id=4, PostTypeId=2, ParentId=1, Score=9, Body="<p>high</p>"),
        row(Id=5, PostTypeId=2, ParentId=1, Score=1, Body="<p>tie, later</p>"),
        row(Id=6, PostTypeId=2, ParentId=42, Score=5, Body="<p>orphan</p>"),
        row(Id=7, PostTypeId=4, Body="<p>tag excerpt</p>"),
    ]
    path = write_site(tmp_path / "cooking.stackexchange.com", rows)
    docs, report = run(StackExchangeSource(StackExchangeConfig(sites=["cooking"])), [path])
    assert docs[0].text == "Q: Why & how?\n\nBody one.\n\nA: high\n\nA: low\n\nA: tie, later"
    assert docs[0].id == "https://cooking.stackexchange.com/questions/1"
    assert docs[0].meta["answer_ids"] == [4, 2, 5]
    assert docs[1].text == "Q: Unanswered\n\nNobody knows."
    assert dict(report.dropped_docs) == {
        "stackexchange.orphan_answer": 1,
        "stackexchange.post_type": 1,
    }
    strict = StackExchangeSource(StackExchangeConfig(sites=["cooking"], min_answers=1))
    docs, report = run(strict, [path])
    assert [doc.meta["question_id"] for doc in docs] == [1]
    assert report.dropped_docs["stackexchange.min_answers"] == 1


def test_samples_from_7z_and_folder_with_malformed_xml(tmp_path):
    write_samples(tmp_path, n_docs=20, seed=0)
    source = pickle.loads(pickle.dumps(StackExchangeSource(StackExchangeConfig())))
    inputs = source.list_inputs(tmp_path)
    assert [p.name for p in inputs] == ["Posts.xml", "ell.stackexchange.com.7z", "Posts.xml"]
    docs, report = run(source, inputs)
    sites = [doc.meta["site"] for doc in docs]
    assert sites.count("ell.stackexchange.com") == 10
    assert sites.count("diy.stackexchange.com") == 10
    assert sites.count("rpg.stackexchange.com") == 2  # parsed before the XML fault
    assert dict(report.bad_input) == {"xml": 1}
    assert report.dropped_docs["stackexchange.orphan_answer"] == 2
    for doc in docs:
        answers = doc.text.split("\n\nA: Answer with score ")[1:]
        scores = [int(answer.split(" ")[0]) for answer in answers]
        assert doc.text.startswith("Q: Question ")
        assert "print(i < 3)" in doc.text and "<code>" not in doc.text
        assert len(scores) == len(doc.meta["answer_ids"])
        assert scores == sorted(scores, reverse=True)
    assert sum(len(doc.meta["answer_ids"]) > 1 for doc in docs) >= 5


def test_site_selection_and_folder_preferred(tmp_path):
    rows = [row(Id=1, PostTypeId=1, Title="T", Body="<p>b</p>")]
    write_site(tmp_path / "cooking.stackexchange.com", rows)
    write_site(tmp_path / "math.stackexchange.com", rows)
    with py7zr.SevenZipFile(tmp_path / "math.stackexchange.com.7z", "w") as archive:
        archive.writestr(posts_xml(rows), "Posts.xml")
    with py7zr.SevenZipFile(tmp_path / "stackoverflow.com-Posts.7z", "w") as archive:
        archive.writestr(posts_xml(rows), "Posts.xml")
    (tmp_path / "stackoverflow.com-Users.7z").write_bytes(b"")
    default = StackExchangeSource(StackExchangeConfig()).list_inputs(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in default] == [
        "math.stackexchange.com/Posts.xml",
        "stackoverflow.com-Posts.7z",
    ]
    every = StackExchangeSource(StackExchangeConfig(sites=[])).list_inputs(tmp_path)
    assert len(every) == 3
    assert site_selected("mathoverflow.net", ["mathoverflow"])
    assert not site_selected("math.meta.stackexchange.com", ["math"])
    assert len(DEFAULT_SITES) == len(set(DEFAULT_SITES)) == 28


def test_bad_archives_are_counted(tmp_path):
    rows = [row(Id=1, PostTypeId=1, Title="T", Body="<p>b</p>")]
    good = tmp_path / "good.7z"
    with py7zr.SevenZipFile(good, "w") as archive:
        archive.writestr(posts_xml(rows), "Posts.xml")
    data = good.read_bytes()
    (tmp_path / "cut.7z").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.7z").write_bytes(b"")
    with py7zr.SevenZipFile(tmp_path / "users.7z", "w") as archive:
        archive.writestr(b"<users/>", "Users.xml")
    broken = tmp_path / "broken.7z"
    with py7zr.SevenZipFile(broken, "w") as archive:
        archive.writestr(posts_xml(rows).replace(b"</posts>", b"<oops>"), "Posts.xml")
    source = StackExchangeSource(StackExchangeConfig(sites=[]))
    docs, report = run(source, source.list_inputs(tmp_path))
    assert [doc.meta["site"] for doc in docs] == ["broken", "good"]
    assert dict(report.bad_input) == {"truncated": 1, "empty": 1, "missing_posts": 1, "xml": 1}


def test_config_validation():
    with pytest.raises(ConfigError, match=r"\[sources.stackexchange\].min_answers"):
        StackExchangeConfig(min_answers=-1)
    with pytest.raises(ConfigError, match="sites"):
        StackExchangeConfig(sites="cooking")
