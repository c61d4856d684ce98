"""Output paths of ``llamaforge eval``: refused before the run, and nothing foreign replaced."""

import json
import os

import pytest

from llamaforge.errors import ConfigError
from llamaforge.eval.outputs import (
    MARKDOWN,
    RESULTS,
    check_outputs,
    is_results_file,
    looks_like_report,
    write_output,
)
from llamaforge.eval.report import markdown_report

RUN = {
    "results": {"boolq": {"metrics": {"acc": 0.5}, "title": "BoolQ", "table": "Table 3: x"}},
    "config": {"llamaforge_version": "0.1", "limit": 2, "checkpoint": "ck/tiny"},
}


def check(out=None, md=None, compare=(), overwrite=False):
    outputs = {"--out": (out, RESULTS), "--markdown": (md, MARKDOWN)}
    return check_outputs(outputs, list(compare), overwrite)


def test_new_paths_are_resolved_and_their_folders_may_not_exist_yet(tmp_path):
    paths = check(tmp_path / "a" / "r.json", tmp_path / "r.md")
    assert paths == {"--out": tmp_path / "a" / "r.json", "--markdown": tmp_path / "r.md"}
    assert check() == {}


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_file_is_never_replaced(tmp_path, overwrite):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(ConfigError, match="not a results JSON of `llamaforge eval`"):
        check(out=notes, overwrite=overwrite)
    with pytest.raises(ConfigError, match="not a Markdown report"):
        check(md=notes, overwrite=overwrite)
    other_json = tmp_path / "other.json"
    other_json.write_text(json.dumps({"results": {}}))  # no config.llamaforge_version
    with pytest.raises(ConfigError, match="never replaced"):
        check(out=other_json, overwrite=overwrite)
    assert notes.read_text() == "my notes\n"


def test_our_own_outputs_are_replaced_only_with_overwrite(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    out.write_text(json.dumps(RUN))
    md.write_text(markdown_report(RUN))
    with pytest.raises(ConfigError, match="r.json exists; pass --overwrite"):
        check(out=out)
    with pytest.raises(ConfigError, match="r.md exists; pass --overwrite"):
        check(md=md)
    assert check(out, md, overwrite=True) == {"--out": out, "--markdown": md}


def test_an_empty_file_holds_nothing_to_lose(tmp_path):
    (tmp_path / "r.json").touch()
    assert check(out=tmp_path / "r.json") == {"--out": tmp_path / "r.json"}


def test_folders_and_paths_under_files_are_refused(tmp_path):
    (tmp_path / "outdir").mkdir()
    with pytest.raises(ConfigError, match="--out .*outdir is a folder"):
        check(out=tmp_path / "outdir")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="notes.txt is a file, not a folder"):
        check(md=tmp_path / "notes.txt" / "sub" / "r.md")


def test_a_folder_we_cannot_write_in_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        with pytest.raises(ConfigError, match="cannot write in"):
            check(out=locked / "r.json")
    finally:
        locked.chmod(0o700)


def test_one_file_named_twice_or_also_compared_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--markdown and --out both name"):
        check(tmp_path / "x", tmp_path / "sub" / ".." / "x")
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(RUN))
    with pytest.raises(ConfigError, match="also given to --compare"):
        check(out=earlier, compare=[earlier], overwrite=True)
    (tmp_path / "hard.json").hardlink_to(earlier)
    with pytest.raises(ConfigError, match="also given to --compare"):
        check(out=tmp_path / "hard.json", compare=[earlier], overwrite=True)


def test_a_symlink_is_written_through_and_its_target_checked(tmp_path):
    target = tmp_path / "real.json"
    target.write_text(json.dumps(RUN))
    link = tmp_path / "link.json"
    link.symlink_to(target)
    paths = check(out=link, overwrite=True)
    assert paths == {"--out": target}
    write_output("--out", paths["--out"], json.dumps({**RUN, "new": 1}), RESULTS, True)
    assert link.is_symlink() and json.loads(target.read_text())["new"] == 1
    (tmp_path / "notes").write_text("mine")
    (tmp_path / "to_notes.json").symlink_to(tmp_path / "notes")
    with pytest.raises(ConfigError, match=r"a link to .*notes\) exists and is not"):
        check(out=tmp_path / "to_notes.json", overwrite=True)
    with pytest.raises(ConfigError, match="also given to --compare"):
        check(out=link, compare=[target], overwrite=True)


def test_a_file_that_appeared_during_the_run_is_kept_and_the_output_goes_beside_it(
    tmp_path, capsys
):
    out = tmp_path / "r.json"
    (final,) = check(out=out).values()
    out.write_text("someone else's file")
    written = write_output("--out", final, json.dumps(RUN), RESULTS, False)
    assert written == tmp_path / "r.1.json" and is_results_file(written)
    assert out.read_text() == "someone else's file"
    assert "written to" in capsys.readouterr().err


def test_what_counts_as_our_report(tmp_path):
    path = tmp_path / "r.md"
    path.write_text(markdown_report([RUN, {**RUN, "partial": {"failed_task": "piqa"}}]))
    assert looks_like_report(path)
    path.write_text(markdown_report(RUN) + "\nMy comment on these numbers.\n")
    assert not looks_like_report(path)
    path.write_text("# Notes\n| a | b |\n")
    assert not looks_like_report(path)
