import tomllib
from pathlib import Path

import pytest

from llamaforge.data.build_config import DataBuildConfig, load_build_config
from llamaforge.data.sources import registry
from llamaforge.errors import ConfigError
from tests.data.test_build import FakeConfig, FakeSource, fake_sources  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
TABLE1 = {
    "commoncrawl": (67.0, 1.10),
    "c4": (15.0, 1.06),
    "github": (4.5, 0.64),
    "wikipedia": (4.5, 2.45),
    "books": (4.5, 2.23),
    "arxiv": (2.5, 1.06),
    "stackexchange": (2.0, 1.03),
}


def config(**sections):
    data = {"build": {"output": "out"}, "sources": {"c4": {"input": "x", "weight": 1}}}
    data.update(sections)
    return DataBuildConfig.from_dict(data, "/data/cfg")


def test_defaults_and_paths_relative_to_the_config_folder():
    cfg = config(build={"output": "out", "tokenizer": "tok.model", "shard_docs": 1e3})
    assert cfg.build.output == Path("/data/cfg/out")
    assert cfg.build.tokenizer == Path("/data/cfg/tok.model")
    assert cfg.build.shard_docs == 1000 and cfg.build.executor == "local"
    assert cfg.total_tokens == 1.4e12  # the paper's planned total
    source = cfg.sources[0]
    assert (source.name, source.inputs, source.weight, source.epochs) == (
        "c4", [Path("/data/cfg/x")], 1.0, 0.0
    )  # fmt: skip
    assert config(build={"output": "/abs/out"}).build.output == Path("/abs/out")


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"build": {"output": "o", "workers": 0}}, r"\[build\].workers must be >= 1"),
        ({"build": {"output": "o", "executor": "ray"}}, r"\[build\].executor must be one of"),
        ({"build": {"output": "o", "scheduler": "tcp://x:1"}}, r"\[build\].scheduler is only"),
        ({"build": {"output": "o", "shard_docs": 0, "shard_bytes": 0}}, "set shard_docs or"),
        ({"build": {"output": "o", "workerz": 2}}, r"\[build\]: unknown field\(s\) workerz"),
        ({"build": {}}, r"\[build\].output is required"),
        ({"build": {"output": "o", "seed": "1"}}, r"\[build\].seed must be an integer"),
        ({"mixture": {"total_tokens": -1}}, r"\[mixture\].total_tokens must be > 0"),
        ({"sources": {}}, r"no \[sources.NAME\] tables"),
        ({"sources": {"c5": {"input": "x", "weight": 1}}}, "unknown source 'c5'; known: commo"),
        ({"sources": {"c4": {"weight": 1}}}, r"\[sources.c4\].input must be a path"),
        ({"sources": {"c4": {"input": "x", "weight": 0}}}, r"\[sources.c4\].weight must be > 0"),
        ({"sources": {"c4": {"input": "x"}}}, r"\[sources.c4\].weight must be a number"),
        ({"sources": {"c4": {"input": "x", "weight": 1, "epochs": -1}}}, r"c4\].epochs must"),
    ],
)
def test_bad_values_name_section_and_field(sections, message):
    with pytest.raises(ConfigError, match=message):
        config(**sections)


def test_load_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_build_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[build]\noutput = 'o'\nworkers = -3\n[sources.c4]\ninput='x'\nweight=1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[build\].workers"):
        load_build_config(bad)


def test_undecodable_toml_is_a_config_error_naming_file_and_line(tmp_path):
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[build]\noutput = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1\.toml:2 is not UTF-8 text.*save the file as UTF-8"
    ):
        load_build_config(latin1)
    # tomllib's int() refuses more than 4300 digits with a ValueError, not a TOMLDecodeError
    digits = tmp_path / "digits.toml"
    digits.write_text("[build]\noutput = 'o'\nworkers = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"digits\.toml:3 is not valid TOML: an integer has more"):
        load_build_config(digits)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_build_config(tmp_path)  # a folder, not a file


def test_source_fields_pass_through_to_the_source_config(tmp_path, fake_sources):  # noqa: F811
    (tmp_path / "stop.txt").write_text("a\n")
    cfg = DataBuildConfig.from_dict(
        {
            "build": {"output": "o"},
            "sources": {"alpha": {"input": "x", "weight": 2, "min_words": 7, "fail_on": "b.txt"}},
        },
        tmp_path,
    )
    assert cfg.sources[0].settings == {"min_words": 7, "fail_on": "b.txt"}
    table = {**cfg.sources[0].settings, "stopwords_path": "stop.txt"}
    source = registry.build_source("alpha", table, tmp_path)
    assert isinstance(source, FakeSource)
    assert source.config == FakeConfig(7, "b.txt", str(tmp_path / "stop.txt"))
    with pytest.raises(ConfigError, match=r"\[sources.alpha\]: unknown field\(s\) min_word;"):
        registry.build_source("alpha", {"min_word": 3}, tmp_path)
    with pytest.raises(ConfigError, match="min_words must be >= 0"):
        registry.build_source("alpha", {"min_words": -1}, tmp_path)


def test_registry_knows_the_seven_sources_by_convention():
    assert list(registry.SOURCES) == list(TABLE1)
    for name, target in registry.SOURCES.items():
        module, cls = target.split(":")
        assert module == f"llamaforge.data.sources.{name}" and cls.endswith("Source")
    with pytest.raises(ConfigError, match="unknown source 'reddit'; known: commoncrawl, c4"):
        registry.build_source("reddit", {}, ".")
    with pytest.raises(ConfigError, match="unknown source 'reddit'"):
        registry.write_samples("reddit", "/tmp/x")


@pytest.mark.parametrize("name", ["data-llama.toml", "data-sample.toml"])
def test_shipped_configs_parse_with_table1_weights(name):
    path = REPO / "configs" / name
    data = tomllib.loads(path.read_text())
    cfg = DataBuildConfig.from_dict(data, path.parent)
    assert {s.name: (s.weight, s.epochs) for s in cfg.sources} == TABLE1
    if name == "data-llama.toml":
        assert cfg.total_tokens == 1.4e12
        assert sum(w for w, _ in TABLE1.values()) == pytest.approx(100.0)
