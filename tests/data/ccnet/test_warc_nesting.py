"""Deeply nested HTML is counted as too_nested before main-content extraction, not run."""

import unittest.mock

from llamaforge.data.ccnet import warc
from llamaforge.data.ccnet.warc import MAX_NESTING_WORK, iter_pages, nesting_work
from llamaforge.data.sources.base import FilterReport
from tests.data.ccnet.test_warc import response

NORMAL = (
    b"<html><body><div id='nav'><a href='/'>Home</a></div><article><div class='c'>"
    b"<p>A real paragraph with enough words to be kept as the main content here.</p>"
    b"</div></article></body></html>"
)


def test_nesting_work_counts_div_depths_on_the_parsed_tree():
    assert nesting_work("<div>x</div>" * 5000) == 5000  # many, but flat
    assert nesting_work("<div>" * 3000) == 0  # too few openings to matter: not parsed
    deep = "<div>" * 4000
    assert nesting_work(deep, limit=10**9) == 4000 * 4001 // 2
    # unclosed divs in table cells are closed by the parser: depth 1 each
    assert nesting_work("<table>" + "<tr><td><div>x" * 4000 + "</table>") == 4000


def test_deep_page_is_counted_and_never_extracted(tmp_path):
    deep = b"<html><body>" + b"<div>x " * 20_000 + b"</body></html>"  # 21 s to extract
    path = tmp_path / "a.warc.gz"
    path.write_bytes(response("https://a/deep", deep) + response("https://a/ok", NORMAL))
    report = FilterReport()
    with unittest.mock.patch.object(
        warc, "extract_plain_text", wraps=warc.extract_plain_text
    ) as extract:
        pages = list(iter_pages(path, report))
    assert [p.url for p in pages] == ["https://a/ok"]
    assert "real paragraph" in pages[0].text
    assert dict(report.bad_input) == {"too_nested": 1}
    assert extract.call_count == 1  # only the normal page was extracted
    assert nesting_work(deep.decode()) > MAX_NESTING_WORK
