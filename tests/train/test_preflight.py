"""What ``llamaforge train`` checks before allocating or writing: one line each, nothing started.

The costly cases run in a child process and report its peak RSS, so a
check that comes after the allocation (the old behaviour: 7B allocated, then
"no data") shows as a big number, or as the allocation failing, instead of
silently passing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from llamaforge.cli import main
from llamaforge.train.config import TrainConfig, load_train_config
from llamaforge.train.preflight import (
    STATE_BYTES_PER_PARAM,
    ConfigWarning,
    estimate_memory,
    memory_refusal,
)
from llamaforge.train.trainer import Trainer
from tests.train.test_trainer import (
    make_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
SMALL_RSS = 1.5 * 2**30

# Runs the CLI in this child, optionally pretending the machine has GIB GiB free,
# then prints the exit code and the child's own peak RSS (bytes) as JSON.
CHILD = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from llamaforge.cli import main
from llamaforge.train import preflight
gib = float(sys.argv[1])
if gib > 0:
    preflight.available_memory = lambda device: (int(gib * 2**30), "the test's pretend machine")
code = main(sys.argv[2:])
print(json.dumps({"code": code, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run_child(args: list[str], pretend_gib: float = 0) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(pretend_gib), *args],
        env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_an_empty_config_is_refused_in_one_line_without_allocating(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result, stderr = run_child(["train", str(empty), "--quiet"])
    assert result["code"] == 2
    line = one_error_line(stderr)
    assert str(empty) in line and "[model]" in line and "preset" in line
    assert result["rss"] < SMALL_RSS  # the 7B default was never allocated
    assert not (tmp_path / "runs").exists() and not Path("runs/llama").exists()


def test_a_7b_config_on_cpu_is_refused_by_the_memory_estimate(tmp_path: Path) -> None:
    tokens = make_tokens(tmp_path / "tokens", n_tokens=5_000)
    config = write_config(tmp_path / "7b.toml", tokens, tmp_path / "run",
                          model={"preset": "7B", "dim": 4096, "n_layers": 32, "n_heads": 32,
                                 "vocab_size": 32000, "max_seq_len": 2048})  # fmt: skip
    result, stderr = run_child(["train", str(config), "--quiet"], pretend_gib=16)
    assert result["code"] == 2
    line = one_error_line(stderr)
    assert "'7B'" in line and "16.0 GiB is available" in line and "--skip-memory-check" in line
    assert result["rss"] < SMALL_RSS  # refused before the 27 GB of weights were allocated
    assert not (tmp_path / "run").exists()  # and before the run folder was touched


def test_the_memory_estimate_counts_16_bytes_per_parameter_per_rank() -> None:
    cfg = TrainConfig.from_dict({"model": {"preset": "7B"}, "data": {"seq_len": 2048}})
    params = cfg.model_config.num_params()
    assert 6.6e9 < params < 6.8e9  # LLaMA-7B
    one = estimate_memory(cfg)
    assert one.params == params and one.state_bytes == STATE_BYTES_PER_PARAM * params
    assert 0 < one.activation_bytes < one.state_bytes
    sharded = estimate_memory(TrainConfig.from_dict(cfg.to_dict() | {"parallel": {"dp": 8}}), 8)
    assert sharded.state_bytes == STATE_BYTES_PER_PARAM * params // 8
    full = estimate_memory(TrainConfig.from_dict(
        cfg.to_dict() | {"train": {"activation_checkpointing": "full"}}
    ))  # fmt: skip
    assert full.activation_bytes < one.activation_bytes
    off = TrainConfig.from_dict(cfg.to_dict() | {"train": {"check_memory": False}})
    import torch

    assert memory_refusal(off, torch.device("cpu"), 1) is None  # the documented override


def test_a_config_without_data_sources_is_refused_before_allocating(tmp_path, capsys) -> None:
    config = write_config(tmp_path / "run.toml", tmp_path / "tokens", tmp_path / "run")
    config.write_text(config.read_text().replace('sources = "', 'tokenizer = "'))
    assert main(["train", str(config), "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "data.sources is empty" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["missing", "no_index", "bad_index", "file"])
def test_unreadable_token_folders_are_one_line_before_anything_starts(
    tmp_path, capsys, damage
) -> None:
    tokens = make_tokens(tmp_path / "tokens", n_tokens=5_000)
    if damage == "missing":
        tokens = tmp_path / "nowhere"
    elif damage == "no_index":
        (tokens / "index.json").unlink()
    elif damage == "bad_index":
        (tokens / "index.json").write_bytes(b"\x00\xff{not json")
    else:
        tokens = tmp_path / "a-file"
        tokens.write_text("tokens?")
    config = write_config(tmp_path / "run.toml", tokens, tmp_path / "run")
    assert main(["train", str(config), "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(tokens) in line
    assert not (tmp_path / "run").exists()


def test_a_binary_or_folder_config_is_one_line(tmp_path, capsys) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    for path in (binary, tmp_path):
        assert main(["train", str(path), "--quiet"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(path) in line and "TOML" in line


@pytest.mark.parametrize(
    ("where", "override"),
    [("run", "train.run_dir"), ("checkpoints", "checkpoint.dir"),
     ("parent", "train.run_dir"), ("metrics", None)],
)  # fmt: skip
def test_output_paths_of_the_wrong_kind_are_one_line_and_untouched(
    tmp_path, capsys, where, override
) -> None:
    tokens = make_tokens(tmp_path / "tokens", n_tokens=5_000)
    config = write_config(tmp_path / "run.toml", tokens, tmp_path / "run")
    blocker = tmp_path / "blocker"
    blocker.write_text("my notes")
    args = ["train", str(config), "--quiet"]
    if override:
        target = blocker / "run" if where == "parent" else blocker
        args.append(f"{override}={str(target)!r}")
    else:
        blocker = tmp_path / "run" / "metrics.jsonl"
        blocker.mkdir(parents=True)
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(blocker) in line and ("file" in line or "folder" in line)
    assert blocker.is_dir() if where == "metrics" else blocker.read_text() == "my notes"


def test_warmup_longer_than_the_run_and_a_missing_tokenizer_warn(tmp_path) -> None:
    tokens = make_tokens(tmp_path / "tokens", n_tokens=5_000)
    config = write_config(tmp_path / "run.toml", tokens, tmp_path / "run",
                          optim={"warmup_steps": 50}, train={"max_steps": 20})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(load_train_config(config), progress=False)
    messages = [str(w.message) for w in caught if w.category is ConfigWarning]
    assert any("warmup_steps (50) > the run's 20 steps" in m for m in messages), messages
    assert any("data.tokenizer is not set" in m for m in messages), messages

    quiet = write_config(tmp_path / "ok.toml", tokens, tmp_path / "run2",
                         optim={"warmup_steps": 5}, data={"tokenizer": str(config)})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(load_train_config(quiet), progress=False)
    assert not [w for w in caught if w.category is ConfigWarning]


def test_cli_prints_our_warnings_as_one_line(tmp_path) -> None:
    tokens = make_tokens(tmp_path / "tokens", n_tokens=5_000)
    config = write_config(tmp_path / "run.toml", tokens, tmp_path / "run",
                          data={"tokenizer": str(tmp_path / "gone.model")},
                          optim={"warmup_steps": 1}, train={"max_steps": 1, "val_every_steps": 0},
                          checkpoint={"every_steps": 0})  # fmt: skip
    result, stderr = run_child(["train", str(config), "--quiet", "--no-report"])
    assert result["code"] == 0, stderr
    lines = [line for line in stderr.splitlines() if "gone.model" in line]
    assert lines == [
        f"llamaforge train: warning: data.tokenizer {str(tmp_path / 'gone.model')!r} "
        "is not a file: checkpoints will hold no tokenizer.model; fix the path"
    ]
