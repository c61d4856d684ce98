"""GitHub records whose binary part comes after the first 8 KB are still binary."""

from llamaforge.data.sources.github import GitHubConfig, GitHubSource
from tests.data.sources.test_github import record


def test_nul_after_the_sniffed_head_is_binary():
    source = GitHubSource(GitHubConfig())
    text = "def f(x):\n    return x + 1\n" * 400  # ~11 KB of clean code
    assert source.check(record(content=text))[1] == ""
    assert source.check(record(content=text + "\x00\x01\x02" * 100))[1] == "github.binary"
