import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import py7zr
import pytest

import llamaforge
from llamaforge.data.samples.stackexchange import (
    posts_xml,
    row,
    write_large_posts,
    write_samples,
)
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


# Reads one Posts.xml in a fresh interpreter and prints its peak RSS. VmHWM, not ru_maxrss:
# on Linux a child's ru_maxrss starts from its parent's peak (pytest's, with torch loaded).
# llamaforge.data's __init__ imports the torch-backed loader; the sources do not need it,
# so the package is entered without running it (3-4 s and ~200 MB less per child).
_MEMORY_CHILD = r"""
import json, resource, sys, types
import llamaforge
package = types.ModuleType("llamaforge.data")
package.__path__ = [llamaforge.__path__[0] + "/data"]
sys.modules["llamaforge.data"] = package
from pathlib import Path
from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.stackexchange import StackExchangeConfig, StackExchangeSource
def peak_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
source = StackExchangeSource(StackExchangeConfig(sites=[], tmp_dir=sys.argv[2]))
docs = sum(1 for _ in source.process(Path(sys.argv[1]), FilterReport()))
print(json.dumps({"docs": docs, "peak_mb": peak_mb()}))
"""


def _peak_rss(posts, tmp_dir):
    root = str(Path(llamaforge.__file__).parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(posts), str(tmp_dir)],
        capture_output=True, text=True, check=True, cwd=tmp_dir,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_site(tmp_path):
    small, large = tmp_path / "a.com" / "Posts.xml", tmp_path / "b.com" / "Posts.xml"
    n_small = write_large_posts(small, 1 << 20, seed=1)
    n_large = write_large_posts(large, 12 << 20, seed=2)
    work = tmp_path / "work"
    work.mkdir()
    first, second = _peak_rss(small, work), _peak_rss(large, work)
    assert (first["docs"], second["docs"]) == (n_small, n_large)
    # Holding the 11 MB more input's threads costs ~9 MB; the on-disk store stays flat.
    assert second["peak_mb"] - first["peak_mb"] < 4.5, (first, second)
    assert list(work.iterdir()) == []  # the store's temporary folder is gone


def test_store_groups_answers_far_from_their_questions(tmp_path):
    rows = [row(Id=q, PostTypeId=1, Score=0, Title=f"T{q}", Body=f"<p>Q{q}</p>") for q in (5, 1, 3)]
    rows += [row(Id=10 + i, PostTypeId=2, ParentId=p, Score=s, Body=f"<p>A{i}</p>")
             for i, (p, s) in enumerate([(3, 1), (1, 5), (3, 9), (7, 2), (3, 1), (5, 0)])]  # fmt: skip
    rows.append(row(Id=1, PostTypeId=1, Score=0, Title="dup", Body="<p>duplicate id</p>"))
    path = write_site(tmp_path / "x.stackexchange.com", rows)
    source = StackExchangeSource(StackExchangeConfig(sites=[], tmp_dir=str(tmp_path)))
    docs, report = run(source, [path])
    assert [d.meta["question_id"] for d in docs] == [1, 3, 5]
    assert docs[1].meta["answer_ids"] == [12, 10, 14]  # score 9, then the two 1s by id
    assert docs[1].text == "Q: T3\n\nQ3\n\nA: A2\n\nA: A0\n\nA: A4"
    assert docs[0].text.startswith("Q: T1\n\nQ1")  # the first copy of a duplicated id
    assert report.dropped_docs["stackexchange.orphan_answer"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.stackexchange.com"]
