import json

from llamaforge.cli import main
from llamaforge.data.sources import registry
from tests.data.test_build import fake_sources, write_docs  # noqa: F401 (fixture)

CONFIG = """
[build]
output = "out"
shard_docs = 10
workers = 1

[sources.alpha]
input = "alpha"
weight = 2
{extra}

[sources.beta]
input = ["beta.txt"]
weight = 1
"""


def write_config(tmp_path, extra=""):
    write_docs(tmp_path / "alpha" / "a.txt", ["one two three four", "x"])
    write_docs(tmp_path / "alpha" / "b.txt", ["five six seven eight"])
    write_docs(tmp_path / "beta.txt", ["nine ten eleven twelve"])
    path = tmp_path / "data.toml"
    path.write_text(CONFIG.format(extra=extra))
    return path


def test_data_build_command(tmp_path, fake_sources, capsys):  # noqa: F811
    config = write_config(tmp_path)
    assert main(["data", "build", str(config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "alpha: 2/2 files, 2 docs, no tokens" in out and "beta: 1/1 files, 1 docs" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["sources"]["alpha"]["process"]["dropped_docs"] == {"fake.short": 1}
    assert not (tmp_path / "out" / "mixture.toml").exists()  # no tokenizer configured


def test_data_build_command_fails_on_a_crash_and_names_the_file(
    tmp_path,
    fake_sources,  # noqa: F811
    capsys,
):
    config = write_config(tmp_path, extra='fail_on = "b.txt"')
    assert main(["data", "build", str(config), "--no-progress", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "b.txt failed" in err and "1 task(s) failed" in err
    assert (tmp_path / "out" / "alpha" / "filtered" / "a.txt.report.json").is_file()


def test_data_build_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[build]\noutput = "o"\n[sources.c4]\ninput = "nowhere"\nweight = -1\n')
    assert main(["data", "build", str(path)]) == 2
    assert "[sources.c4].weight must be > 0" in capsys.readouterr().err


def test_data_samples_command(tmp_path, capsys):
    available = registry.available_samples()
    assert main(["data", "samples", str(tmp_path), "--sources", "nope"]) == 2
    assert "unknown nope" in capsys.readouterr().err
    if not available:
        return
    name = available[0]
    argv = ["data", "samples", str(tmp_path), "--sources", name, "--n-docs", "5"]
    assert main([*argv, "--tokenizer-vocab", "0"]) == 0
    assert f"{name}:" in capsys.readouterr().out
    assert any((tmp_path / name).iterdir())
    assert not (tmp_path / "tokenizer.model").exists()
