"""Re-runs redo exactly the outputs whose recipe (settings, code version, input) changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llamaforge.data import build_recipe
from llamaforge.data.build import build
from llamaforge.data.build_config import DataBuildConfig
from llamaforge.data.build_stages import read_jsonl_zst
from llamaforge.data.sources.c4 import C4Config, C4Source
from llamaforge.data.sources.registry import write_samples


def c4_config(root: Path, output: str = "out", **c4) -> DataBuildConfig:
    table = {
        "build": {"output": output, "shard_docs": 4},
        "mixture": {"total_tokens": 1e6},
        "sources": {"c4": {"input": "dumps", "weight": 1.0, **c4}},
    }
    return DataBuildConfig.from_dict(table, root)


def final_texts(out: Path) -> list[str]:
    return [
        d.text for f in sorted((out / "c4" / "final").glob("part-*")) for d in read_jsonl_zst(f)
    ]


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "c4").rglob("*")}


@pytest.fixture
def dumps(tmp_path) -> Path:
    write_samples("c4", tmp_path / "dumps", n_docs=40)
    return tmp_path


def test_changed_min_sentences_redoes_and_unchanged_rerun_redoes_nothing(dumps):
    out = dumps / "out"
    first = build(c4_config(dumps), progress=False)
    kept = final_texts(out)
    assert kept and first.report["reused"] == 0
    assert {(r["stage"], r["why"]) for r in first.report["redone"]} >= {("final", "not built yet")}

    before = mtimes(out)
    again = build(c4_config(dumps), progress=False)
    assert again.report["redone"] == []
    assert again.report["reused"] == len(first.report["redone"])
    assert mtimes(out) == before  # not one file rewritten

    (out / "c4" / "final" / "NOTES.txt").write_text("mine")  # a user's file: must survive
    changed = build(c4_config(dumps, min_sentences=40), progress=False)
    assert final_texts(out) == []  # what a fresh build with min_sentences = 40 keeps
    whys = {(r["stage"], r["why"]) for r in changed.report["redone"]}
    default = C4Config().min_sentences
    assert ("filtered", f"setting min_sentences {default} -> 40") in whys
    assert any(stage == "final" and "per-file output" in why for stage, why in whys)
    assert (out / "c4" / "final" / "NOTES.txt").read_text() == "mine"
    assert f"min_sentences {default} -> 40" in (out / "report.md").read_text()

    fresh = build(c4_config(dumps, "fresh", min_sentences=40), progress=False)
    assert fresh.report["sources"]["c4"]["global_filter"]["kept_docs"] == 0

    build(c4_config(dumps), progress=False)  # back to the first settings
    assert final_texts(out) == kept


def test_changed_input_file_and_old_reports_without_recipe_are_redone(dumps):
    out = dumps / "out"
    build(c4_config(dumps), progress=False)
    report = next((out / "c4" / "filtered").glob("*.report.json"))
    record = json.loads(report.read_text())
    del record["recipe"]  # what a build from before recipes wrote
    report.write_text(json.dumps(record))
    result = build(c4_config(dumps), progress=False)
    whys = [r["why"] for r in result.report["redone"] if r["stage"] == "filtered"]
    assert whys == ["no recipe recorded (made by an older llamaforge)"]

    source = Path(record["input"])
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    result = build(c4_config(dumps), progress=False)
    whys = [r["why"] for r in result.report["redone"] if r["stage"] == "filtered"]
    assert len(whys) == 1 and whys[0].startswith("input.mtime_ns ")


def test_source_code_version_and_named_file_contents_are_in_the_recipe(dumps, monkeypatch):
    words = dumps / "words.txt"
    words.write_text("alpha\n")
    page = next((dumps / "dumps").glob("*.json.gz"))
    source = C4Source(C4Config(badwords_path=str(words)))
    recipe = build_recipe.file_recipe(source, page)
    assert recipe["settings"]["config"]["min_sentences"] == C4Config().min_sentences
    assert [f["path"] for f in recipe["settings"]["files"]] == [str(words)]
    words.write_text("alpha\nbeta\n")  # same path, new list
    assert "settings.files" in build_recipe.what_changed(
        recipe, build_recipe.file_recipe(source, page)
    )
    newer = build_recipe.file_recipe(source, page)
    monkeypatch.setattr(C4Source, "VERSION", C4Source.VERSION + 1)
    assert build_recipe.what_changed(newer, build_recipe.file_recipe(source, page)).startswith(
        "source_version "
    )
