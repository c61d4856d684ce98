"""The ``llamaforge`` entry point: --version, defaults in every --help, one line per rank."""

import argparse

import pytest

import llamaforge
from llamaforge import cli
from llamaforge.cli import COMMANDS, build_parser, main


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"llamaforge {llamaforge.__version__}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_help_shows_the_defaults(command):
    _, chosen = build_parser(command)
    checked = 0
    for parser in _parsers(chosen):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default is None or default is False:
                continue
            if default == argparse.SUPPRESS or default == []:
                continue
            # the option's own entry in the help mentions a default
            entry = text.split(action.option_strings[-1], 2)[-1][:400]
            assert "default" in entry, f"{parser.prog} {action.option_strings}: {entry[:120]}"
            checked += 1
    assert checked > 0 or command in (
        "train",
        "finetune",
        "demo",
        "carbon",
    )  # options without defaults


def test_torchrun_rank_failure_is_one_line(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("NCCL timeout\nsecond line of detail")

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.delenv("LLAMAFORGE_TRACEBACK", raising=False)
    args = argparse.Namespace(run=boom, command="train")
    monkeypatch.setattr(cli, "parse", lambda argv: args)
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "rank 3: llamaforge train: RuntimeError: NCCL timeout "
        "(LLAMAFORGE_TRACEBACK=1 shows the traceback)"
    ]
    monkeypatch.setenv("LLAMAFORGE_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["train"])


def test_user_errors_name_the_rank_under_torchrun(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["generate", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("rank 1: llamaforge generate: error: ") and "missing" in line


def test_plain_runs_keep_the_traceback(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(run=boom, command="x"))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["x"])
