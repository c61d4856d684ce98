"""llamaforge.data.outputs: exclusive temps, and which top-level build files are ours."""

from __future__ import annotations

import os

import pytest

from llamaforge.data.mixture import write_mixture_toml, write_reports
from llamaforge.data.outputs import check_build_outputs, remove_temps
from llamaforge.errors import ConfigError
from llamaforge.umask import atomic_write_text


def test_atomic_write_replaces_a_link_at_the_destination_not_its_target(tmp_path):
    victim, dest = tmp_path / "victim", tmp_path / "out" / "report.json"
    dest.parent.mkdir()
    victim.write_text("precious")
    dest.symlink_to(victim)
    (dest.parent / ".report.json.tmp").symlink_to(victim)
    atomic_write_text(dest, "new\n")
    assert victim.read_text() == "precious"
    assert not dest.is_symlink() and dest.read_text() == "new\n"
    assert oct(dest.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(p.name for p in dest.parent.iterdir()) == [".report.json.tmp", "report.json"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_remove_temps_removes_only_our_temp_names(tmp_path):
    for name in (".x.jsonl.zst.abcd1234.tmp", ".x.jsonl.zst.tmp", "x.jsonl.zst", ".y.abcd1234.tmp"):
        (tmp_path / name).write_text("")
    remove_temps(tmp_path, "x.jsonl.zst")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".x.jsonl.zst.tmp", ".y.abcd1234.tmp", "x.jsonl.zst"
    ]  # fmt: skip


def test_the_builds_own_files_pass_and_others_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    report = {"config": "c.toml", "output": str(out), "total_tokens": 1.0, "sources": {},
              "failures": [], "redone": [], "reused": 0}  # fmt: skip
    write_reports(out, report)
    write_mixture_toml(out / "mixture.toml", {}, None, 0)
    check_build_outputs(out)  # ours: no error
    (out / "report.json").write_text('{"config": 1}')
    with pytest.raises(ConfigError, match="report.json was not written by"):
        check_build_outputs(out)
    (out / "report.json").unlink()
    (out / "report.json").mkdir()
    with pytest.raises(ConfigError, match="report.json is not a plain file"):
        check_build_outputs(out)
    with pytest.raises(ConfigError, match="its parent .* is a file"):
        check_build_outputs(out / "mixture.toml" / "sub")
