"""``llamaforge train`` and ``eval-loss`` end to end: real signals, real subprocesses.

Resume tests compare against an uninterrupted run of the same config with
``==``: on CPU with one thread the arithmetic is deterministic, and the
trainer checkpoints everything that decides the next step.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llamaforge.cli import main
from llamaforge.data.loader import sequential_batches
from llamaforge.formats.native import load_pretrained
from llamaforge.train.config import load_train_config
from llamaforge.train.report import read_metrics
from llamaforge.train.step import evaluate_loss
from llamaforge.train.trainer import Trainer
from tests.train.test_trainer import (
    SEQ_LEN,
    make_tokens,
    one_thread,  # noqa: F401 (autouse fixture)
    write_config,
)

MAX_STEPS = 40
CHECKPOINT_EVERY = 5
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_command(config: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "llamaforge", "train", str(config), "--quiet", "--no-report",
            f"train.run_dir={str(run_dir)!r}"]  # fmt: skip


def run_to_end(config: Path, run_dir: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        train_command(config, run_dir), env=ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def last_train_step(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    steps = [0]
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written
        if row.get("split") == "train":
            steps.append(row["step"])
    return max(steps)


def interrupt(config: Path, run_dir: Path, after_step: int, sig: signal.Signals):
    """Start a run, send ``sig`` once metrics.jsonl shows ``after_step``; return the process."""
    process = subprocess.Popen(
        train_command(config, run_dir), env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    try:
        while last_train_step(run_dir / "metrics.jsonl") < after_step:
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate()
                pytest.fail(f"run ended or stalled before step {after_step}: {err}")
            time.sleep(0.003)
        process.send_signal(sig)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process


def curves(run_dir: Path) -> dict[str, list[tuple[int, float, float | None]]]:
    rows = read_metrics(run_dir / "metrics.jsonl")
    return {
        "train": [(r["step"], r["loss"], r["grad_norm"]) for r in rows if r["split"] == "train"],
        "val": [(r["step"], r["loss"], None) for r in rows if r["split"] == "val"],
    }


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, dict]:
    """The config and the loss curves of one uninterrupted run."""
    root = tmp_path_factory.mktemp("train-cli")
    tokens = make_tokens(root / "tokens")
    config = write_config(
        root / "run.toml", tokens, root / "unused",
        train={"max_steps": MAX_STEPS, "val_every_steps": 10},
        checkpoint={"every_steps": CHECKPOINT_EVERY, "keep_last": 3},
    )  # fmt: skip
    run_to_end(config, root / "reference")
    reference = curves(root / "reference")
    assert [s for s, _, _ in reference["train"]] == list(range(1, MAX_STEPS + 1))
    assert [s for s, _, _ in reference["val"]] == [0, 10, 20, 30, 40]
    assert reference["val"][-1][1] < reference["val"][0][1]  # it learns something
    return config, reference


def test_resume_after_sigkill_reproduces_the_loss_curve(reference_run, tmp_path: Path) -> None:
    config, reference = reference_run
    run_dir = tmp_path / "run"
    killed = interrupt(config, run_dir, 2 * CHECKPOINT_EVERY + 2, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()  # it really died mid-run
    assert last_train_step(run_dir / "metrics.jsonl") < MAX_STEPS
    assert checkpoint_steps(run_dir)[-1] >= 2 * CHECKPOINT_EVERY
    lock = run_dir / ".llamaforge.lock"
    assert lock.read_text().strip() == str(killed.pid)  # a stale lock file, but no lock

    run_to_end(config, run_dir)
    assert curves(run_dir) == reference
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["stopped_by"]) == (MAX_STEPS, "finished")


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(
    reference_run, tmp_path
) -> None:
    config, reference = reference_run
    run_dir = tmp_path / "run"
    interrupt(config, run_dir, 2 * CHECKPOINT_EVERY + 2, signal.SIGKILL)
    *_, previous, newest = checkpoint_steps(run_dir)
    weights = run_dir / "checkpoints" / f"step_{newest:08d}" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    lines_before = len((run_dir / "metrics.jsonl").read_text().splitlines())

    done = run_to_end(config, run_dir)
    assert "skipping checkpoint" in done.stderr and "model.safetensors" in done.stderr
    appended = (run_dir / "metrics.jsonl").read_text().splitlines()[lines_before:]
    first = next(json.loads(line) for line in appended if '"train"' in line)
    assert first["step"] == previous + 1  # resumed from the previous checkpoint
    assert curves(run_dir) == reference


def test_sigterm_saves_a_checkpoint_exits_cleanly_and_resumes(reference_run, tmp_path) -> None:
    config, reference = reference_run
    run_dir = tmp_path / "run"
    stopped = interrupt(config, run_dir, CHECKPOINT_EVERY + 2, signal.SIGTERM)
    assert stopped.returncode == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary["steps"]
    assert summary["stopped_by"] == "SIGTERM"
    assert CHECKPOINT_EVERY + 2 <= step < MAX_STEPS
    assert checkpoint_steps(run_dir)[-1] == step  # saved where it stopped
    assert last_train_step(run_dir / "metrics.jsonl") == step  # and did no further step

    done = run_to_end(config, run_dir)
    assert done.stdout.startswith(f"finished: step {MAX_STEPS}/{MAX_STEPS}")
    assert curves(run_dir) == reference


def test_a_second_trainer_on_the_run_folder_is_refused_and_the_first_is_undisturbed(
    reference_run, tmp_path
) -> None:
    config, reference = reference_run
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        train_command(config, run_dir), env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while last_train_step(run_dir / "metrics.jsonl") < CHECKPOINT_EVERY + 1:
            assert first.poll() is None and time.monotonic() < deadline, "first run ended early"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # paused mid-run, lock held, however slow the machine
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        second = subprocess.run(
            train_command(config, run_dir), env=ENV, capture_output=True, text=True, timeout=120
        )
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
        first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    (line,) = [line for line in second.stderr.splitlines() if ": error: " in line]
    assert f"pid {first.pid}" in line and str(run_dir) in line
    assert first.returncode == 0, first_err
    assert curves(run_dir) == reference


@pytest.mark.parametrize(
    ("where", "field"),
    [("override", "optim.lr=-1"), ("file", 'lr = "fast"'), ("override", "optim.learning_rate=1")],
)
def test_config_errors_are_one_clear_line(tmp_path, capsys, where, field) -> None:
    config = write_config(tmp_path / "run.toml", tmp_path / "tokens", tmp_path / "run")
    args = ["train", str(config), "--quiet"]
    if where == "override":
        args.append(field)
    else:
        text = config.read_text()
        assert "lr = 0.003" in text
        config.write_text(text.replace("lr = 0.003", field))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("llamaforge train: error: ")
    assert str(config) in err and "optim." in err and ("lr" in err or "learning_rate" in err)
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_eval_loss_prints_loss_and_perplexity_of_a_checkpoint(tmp_path, capsys) -> None:
    tokens = make_tokens(tmp_path / "tokens")
    config = write_config(
        tmp_path / "run.toml", tokens, tmp_path / "run",
        optim={"warmup_steps": 1}, train={"max_steps": 6, "val_every_steps": 0},
        checkpoint={"every_steps": 0},
    )  # fmt: skip
    result = Trainer(load_train_config(config), progress=False).run()
    held_out = make_tokens(tmp_path / "held-out", n_tokens=30 * SEQ_LEN + 5)

    args = ["eval-loss", result.checkpoint, str(held_out), "--seq-len", str(SEQ_LEN)]
    assert main([*args, "--batch-size", "7"]) == 0  # 30 windows: the last batch is short
    out = capsys.readouterr().out
    match = re.search(r"loss (\S+)\s+perplexity (\S+)\s+\(([\d,]+) tokens\)", out)
    assert match, out
    loss, ppl = float(match[1]), float(match[2])
    assert int(match[3].replace(",", "")) == 30 * SEQ_LEN
    assert ppl == pytest.approx(math.exp(loss), rel=2e-4)  # both printed rounded

    model, _ = load_pretrained(result.checkpoint)
    expected, count = evaluate_loss(model, sequential_batches(held_out, SEQ_LEN, 7))
    assert count == 30 * SEQ_LEN
    assert match[1] == f"{expected:.4f}"
    # and the same number as scoring all 30 windows in one batch
    inputs, targets = next(iter(sequential_batches(held_out, SEQ_LEN, 30)))
    with torch.no_grad():
        whole = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()
    assert expected == pytest.approx(whole, rel=1e-5)
    assert loss < math.log(300)  # a trained model beats uniform guessing


@pytest.fixture
def small_checkpoint(tmp_path) -> Path:
    """An untrained 2-layer model with vocab 300 and max_seq_len 32, saved as a native folder."""
    from llamaforge.formats.native import save_native
    from llamaforge.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, vocab_size=300, multiple_of=16,
                      max_seq_len=SEQ_LEN)  # fmt: skip
    return save_native(Transformer(cfg), tmp_path / "model")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--seq-len", "100000"], "--seq-len 100000 is longer than the model's max_seq_len 32"),
        (["--seq-len", "-3"], "--seq-len must be an integer >= 0"),
        (["--max-batches", "-1"], "--max-batches must be an integer >= 0"),
    ],
)
def test_eval_loss_bad_flags_are_one_line(tmp_path, small_checkpoint, capsys, flags, message):
    tokens = make_tokens(tmp_path / "tokens", n_tokens=4 * SEQ_LEN)
    assert main(["eval-loss", str(small_checkpoint), str(tokens), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_eval_loss_refuses_token_ids_beyond_the_model_vocabulary(
    tmp_path, small_checkpoint, capsys
):
    from llamaforge.data.shard_writer import ShardWriter

    wide = tmp_path / "wide"  # tokenized for a larger vocabulary than the model's 300
    with ShardWriter(wide, vocab_size=1000, eos_id=2, bos_id=1) as writer:
        writer.add_tokens(np.arange(4 * SEQ_LEN) % 1000)
        writer.finish()
    assert main(["eval-loss", str(small_checkpoint), str(wide)]) == 2
    err = capsys.readouterr().err
    assert "vocab_size 1000" in err and "vocab_size 300" in err and err.count("\n") == 1

    lying = tmp_path / "lying"  # the index claims vocab 300, a shard holds id 299 + 7
    with ShardWriter(lying, vocab_size=300, eos_id=2, bos_id=1) as writer:
        writer.add_tokens(np.arange(4 * SEQ_LEN) % 300)
        writer.finish()
    shard = lying / "shard_00000.bin"
    data = np.fromfile(shard, dtype="<u2")
    data[40] = 306
    data.tofile(shard)
    assert main(["eval-loss", str(small_checkpoint), str(lying)]) == 2
    err = capsys.readouterr().err
    # the shard reader names the file and position (TokenShards.read checks every read)
    assert "shard_00000.bin holds token id 306 at token 40 (byte 80), outside vocab_size 300" in err
    assert err.count("\n") == 1
