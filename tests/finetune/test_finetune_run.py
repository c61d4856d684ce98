"""``llamaforge finetune`` end to end: HF and Meta starting points, exact resume after SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from llamaforge.formats import load_any
from llamaforge.formats.huggingface import to_hf
from llamaforge.formats.meta import to_meta
from llamaforge.model import ModelConfig, build_model
from llamaforge.train.config import load_train_config
from llamaforge.train.report import write_run_report
from llamaforge.train.step import evaluate_loss
from llamaforge.train.trainer import Trainer
from tests.train.test_train_cli import ENV, curves, last_train_step
from tests.train.test_trainer import one_thread, write_config  # noqa: F401 (autouse fixture)

MAX_STEPS = 12
WORDS = ["the", "cat", "dog", "sat", "on", "mat", "ran", "far", "away", "home"]


def instruction_file(path: Path, n: int = 48) -> Path:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        rows.append({"instruction": "reverse " + " ".join(words), "output": " ".join(words[::-1])})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """A tiny base model written as a Hugging Face folder and as a Meta folder."""
    root = tmp_path_factory.mktemp("ft-base")
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, vocab_size=tokenizer.vocab_size,
                      multiple_of=16, max_seq_len=128)  # fmt: skip
    model = build_model(cfg)
    return {
        "hf": to_hf(model, root / "hf", tokenizer_path=tokenizer.model_path),
        "meta": to_meta(model, root / "meta", tokenizer_path=tokenizer.model_path),
        "data": instruction_file(root / "train.jsonl"),
        "root": root,
    }


def finetune_config(path: Path, base: dict[str, Path], init: Path, run_dir: Path, **extra) -> Path:
    return write_config(
        path, Path("unused"), run_dir,
        model={"preset": "tiny-1M"},
        data={"seq_len": 128, "micro_batch_size": 2, "batch_tokens": 2 * 2 * 128,
              "val_fraction": 0.0},
        train={"max_steps": MAX_STEPS, "val_every_steps": 4, "val_batches": 4},
        checkpoint={"every_steps": 3, "keep_last": 2},
        finetune={"data": str(base["data"]), "init": str(init), "val_fraction": 0.2,
                  "template": "chat", **extra},
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["hf", "meta"])
def test_finetune_starts_from_the_checkpoint_and_learns(base, tmp_path, fmt) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base[fmt], tmp_path / "run")
    trainer = Trainer(load_train_config(config), progress=False)
    reference, _ = load_any(base[fmt])
    for name, tensor in reference.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    start = evaluate_loss(reference, trainer.val_loader)[0]
    result = trainer.run()
    assert result.initial_val_loss == pytest.approx(start, rel=1e-6)  # response-only val loss
    assert result.val_loss < result.initial_val_loss
    report = json.loads((tmp_path / "run" / "finetune_data.json").read_text())
    assert report["read"] == {"records": 48, "kept": 48, "skipped": {}}
    assert report["train"]["examples"] + report["val"]["examples"] == 48
    markdown = write_run_report(trainer.cfg, result, trainer.model).read_text(encoding="utf-8")
    assert '"kept": 48' in markdown  # the training report carries the data counts


def finetune(config: Path, run_dir: Path, kill_after: int = 0) -> int:
    """Run ``llamaforge finetune``; SIGKILL it once metrics show ``kill_after`` steps."""
    command = [sys.executable, "-m", "llamaforge", "finetune", str(config), "--quiet",
               "--no-report", f"train.run_dir={str(run_dir)!r}"]  # fmt: skip
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while kill_after and last_train_step(run_dir / "metrics.jsonl") < kill_after:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"run ended or stalled before step {kill_after}: {process.stderr.read()}"
                )
            time.sleep(0.003)
        if kill_after:
            process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert kill_after or process.returncode == 0, err.decode()
    return process.returncode


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_finetune_resume_after_sigkill_reproduces_the_loss_curve(base, tmp_path, lora) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "unused")
    if lora:  # adapter-only checkpoints: resume = finetune.init's base + the saved adapters
        with config.open("a", encoding="utf-8") as file:
            file.write("\n[lora]\nenabled = true\nrank = 4\n")
    finetune(config, tmp_path / "reference")
    reference = curves(tmp_path / "reference")
    assert [s for s, _, _ in reference["train"]] == list(range(1, MAX_STEPS + 1))
    assert [s for s, _, _ in reference["val"]] == [0, 4, 8, 12]
    run_dir = tmp_path / "run"
    assert finetune(config, run_dir, kill_after=7) == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()
    assert last_train_step(run_dir / "metrics.jsonl") < MAX_STEPS
    finetune(config, run_dir)
    assert curves(run_dir) == reference
    final = run_dir / "checkpoints" / f"step_{MAX_STEPS:08d}"
    with safe_open(final / "model.safetensors", "pt") as weights:
        names = set(weights.keys())
    assert all(n.endswith((".lora_a", ".lora_b")) for n in names) == lora
    assert ("lora" in json.loads((final / "config.json").read_text())) == lora


def test_steps_and_warmup_come_from_epochs(base, tmp_path) -> None:
    config = finetune_config(
        tmp_path / "ft.toml", base, base["hf"], tmp_path / "run", epochs=2.0, warmup_ratio=0.1
    )
    cfg = load_train_config(config, ["train.max_steps=0"])
    trainer = Trainer(cfg, progress=False)
    loader = trainer.loader
    rows = len(loader._epoch_rows(0)) + len(loader._epoch_rows(1))
    assert trainer.max_steps == -(-rows // loader.global_batch)
    assert cfg.optim.warmup_steps == -(-trainer.max_steps // 10)


def test_a_warmup_longer_than_an_epochs_run_warns_with_its_real_length(base, tmp_path) -> None:
    """The run's steps come from the data here, not from cfg.max_steps (the pretraining rule)."""
    import warnings

    from llamaforge.train.preflight import ConfigWarning

    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run", epochs=1.0)
    cfg = load_train_config(config, ["train.max_steps=0", "optim.warmup_steps=2000"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(cfg, progress=False)
    messages = [str(w.message) for w in caught if w.category is ConfigWarning]
    assert trainer.max_steps < 2000
    expected = f"warmup_steps (2000) > the run's {trainer.max_steps} steps"
    assert any(expected in m for m in messages), messages


def test_lora_run_trains_only_the_adapters(base, tmp_path) -> None:
    pytest.importorskip("llamaforge.finetune.lora")  # lands from the LoRA branch
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run")
    cfg = load_train_config(config, ["lora.enabled=true", "lora.rank=4", "train.max_steps=3"])
    trainer = Trainer(cfg, progress=False)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    optimized = [names[id(p)] for g in trainer.optimizer.param_groups for p in g["params"]]
    assert optimized and all(n.endswith((".lora_a", ".lora_b")) for n in optimized)
    reference, _ = load_any(base["hf"])
    trainer.run()
    state = trainer.model.state_dict()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(state[name], tensor), name  # the base stayed frozen
    assert any(state[n].abs().sum() > 0 for n in optimized if n.endswith(".lora_b"))


def test_records_the_length_rule_leaves_nothing_of_are_reported_with_their_counts(
    base, tmp_path
) -> None:
    """No train example left: an error with the counts and the fix; no val example: a warning."""
    from llamaforge.errors import DataError
    from llamaforge.finetune.examples import split_indices

    long_text = " ".join(WORDS * 30)  # far more than data.seq_len = 128 positions
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"instruction": long_text, "output": "x"}) + "\n"
                            for _ in range(10)))  # fmt: skip
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run",
                             overlong="drop")  # fmt: skip
    with pytest.raises(DataError, match=r"no training example.*dropped_too_long.*data\.seq_len"):
        Trainer(load_train_config(config, [f"finetune.data={str(data)!r}"]), progress=False)
    cfg = load_train_config(config)
    _, val_ids = split_indices(20, cfg.finetune.val_fraction, cfg.data.seed)
    rows = [{"instruction": long_text if i in set(val_ids) else "reverse the cat", "output": "x"}
            for i in range(20)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match="no validation loss") as caught:
        Trainer(load_train_config(config, [f"finetune.data={str(data)!r}"]), progress=False)
    # the tokenizer comes from finetune.init: no "data.tokenizer is not set" warning
    assert not [w for w in caught if "data.tokenizer" in str(w.message)]
