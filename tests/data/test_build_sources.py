"""Smoke test through the real sources: their sample dumps, built with configs/data-sample.toml.

Every source whose module and sample writer exist is included (none is skipped
once present); the layout ``configs/`` + ``data/samples/`` is recreated in a
temporary folder so the shipped config's relative paths are used unchanged.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from llamaforge.data.build import build
from llamaforge.data.build_config import PIPELINE_KEYS, DataBuildConfig
from llamaforge.data.sources import registry
from tests.data.test_build import tiny_tokenizer  # noqa: F401 (fixture)

SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "data-sample.toml"
READY = [n for n in registry.available_samples() if n in registry.available_sources()]


@pytest.mark.skipif(not READY, reason="no source has both a module and a sample writer yet")
def test_sample_config_builds_every_available_source(tmp_path, tiny_tokenizer):  # noqa: F811
    data = tomllib.loads(SAMPLE_CONFIG.read_text())
    data["sources"] = {n: t for n, t in data["sources"].items() if n in READY}
    data["build"].update(workers=1, tokenizer=str(tiny_tokenizer))
    (tmp_path / "configs").mkdir()
    for name in READY:
        assert registry.write_samples(name, tmp_path / "data" / "samples" / name, 20, 0)
    report = build(DataBuildConfig.from_dict(data, tmp_path / "configs"), progress=False).report
    assert report["failures"] == []
    for name in READY:
        row = report["sources"][name]
        process = row["process"]
        assert row["files"]["done"] == row["files"]["total"] > 0, name
        assert row["global_filter"]["kept_docs"] > 0, name
        assert process["dropped_docs"] or process["bad_input"], f"{name}: samples drop nothing"
        assert row["tokens"] > 0, name
    mixture = tomllib.loads((tmp_path / "data" / "sample-build" / "mixture.toml").read_text())
    assert [Path(s["path"]).parent.name for s in mixture["data"]["sources"]] == READY


@pytest.mark.parametrize("name", registry.available_samples())
def test_sample_config_matches_the_sample_writers_settings(name):
    """Where a sample writer says which settings its dumps need, the shipped config has them."""
    module = importlib.import_module(f"{registry.SAMPLES_PACKAGE}.{name}")
    data = tomllib.loads(SAMPLE_CONFIG.read_text())
    cfg = DataBuildConfig.from_dict(data, SAMPLE_CONFIG.parent)
    section = next(s for s in cfg.sources if s.name == name)
    assert not set(section.settings) & set(PIPELINE_KEYS)
    if not hasattr(module, "sample_config"):  # the source's defaults fit its samples
        assert section.settings == {}
        return
    samples = (SAMPLE_CONFIG.parent / "../data/samples" / name).resolve()
    resolved = {
        key: str((SAMPLE_CONFIG.parent / value).resolve()) if key.endswith("_model") else value
        for key, value in section.settings.items()
    }
    assert resolved == module.sample_config(samples)
