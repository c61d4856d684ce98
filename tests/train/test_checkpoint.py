"""Training checkpoints: exact resume, pruning, corruption fallback, crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.model import ModelConfig, build_model
from llamaforge.train.checkpoint import (
    CheckpointManager,
    CheckpointWarning,
    latest_valid,
    plain_name,
    verify_checkpoint,
)

TINY = ModelConfig(dim=64, n_layers=2, n_heads=4, vocab_size=128, multiple_of=16, max_seq_len=64)
REPO = Path(__file__).resolve().parents[2]


def trained(seed: int = 0, cfg: ModelConfig = TINY):
    """A model and AdamW after two real steps, so the moments are non-trivial."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        tokens = torch.randint(0, cfg.vocab_size, (2, 16))
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def save(manager: CheckpointManager, step: int, model, optimizer, **kwargs) -> Path:
    return manager.save(
        step,
        model,
        optimizer,
        model_config=TINY.to_dict(),
        train_config={"lr": 1e-3, "out": Path("runs/x")},
        state=kwargs.pop("state", {"tokens_seen": step * 32}),
        **kwargs,
    )


def draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(4)


def test_round_trip_restores_weights_moments_rng_and_state(tmp_path: Path) -> None:
    model, optimizer = trained(seed=0)
    tokenizer = tmp_path / "tok.model"
    tokenizer.write_bytes(b"fake sentencepiece proto")
    loader_state = {"epoch": 1, "offsets": [3, 5], "nonfinite_steps": 0}
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save(
        CheckpointManager(tmp_path / "ckpt"),
        100,
        model,
        optimizer,
        state={"tokens_seen": 3200, "loader": loader_state},
        tokenizer_path=tokenizer,
    )
    expected_draws = draws()

    assert path == tmp_path / "ckpt" / "step_00000100"
    assert (path / "tokenizer.model").read_bytes() == tokenizer.read_bytes()
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "llamaforge" and config["format_version"] == 1
    assert ModelConfig.from_dict(config["model"]) == TINY
    assert config["train"] == {"lr": 1e-3, "out": "runs/x"}
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in path.iterdir()} - {"manifest.json"}

    other, other_optimizer = trained(seed=7)
    draws()  # move every generator away from the saved state
    state = CheckpointManager(tmp_path / "ckpt").load(path, other, other_optimizer)

    assert state == {"tokens_seen": 3200, "loader": loader_state, "step": 100}
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(
                optimizer.state[p][key], other_optimizer.state[q][key], rtol=0, atol=0
            )
    after = draws()
    assert after[:2] == expected_draws[:2]
    torch.testing.assert_close(after[2], expected_draws[2], rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method:DeprecationWarning")
def test_wrapped_models_save_plain_names_and_load_back(tmp_path: Path) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    assert plain_name("_orig_mod.layers.0._checkpoint_wrapped_module.attention.wq.weight") == (
        "layers.0.attention.wq.weight"
    )
    model, optimizer = trained(seed=0)
    compiled = torch.compile(model)  # compiles lazily: wrapping alone is cheap
    assert any("_orig_mod." in k for k in compiled.state_dict())
    path = save(CheckpointManager(tmp_path), 5, compiled, optimizer)
    names = set(load_file(path / "model.safetensors"))
    assert names == set(model.state_dict())
    assert {"tok_embeddings.weight", "layers.0.attention.wq.weight", "output.weight"} <= names

    target, target_optimizer = trained(seed=1)
    for i, layer in enumerate(target.layers):
        target.layers[i] = checkpoint_wrapper(layer)
    CheckpointManager(tmp_path).load(path, torch.compile(target), target_optimizer)
    torch.testing.assert_close(
        target.layers[1]._checkpoint_wrapped_module.feed_forward.w2.weight,
        model.layers[1].feed_forward.w2.weight,
        rtol=0,
        atol=0,
    )


def test_keep_last_prunes_old_but_never_the_one_just_written(tmp_path: Path) -> None:
    model, optimizer = trained()
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        save(manager, step, model, optimizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000030", "step_00000040"]

    with pytest.warns(CheckpointWarning, match="newer than step_00000005"):
        save(manager, 5, model, optimizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_00000005",
        "step_00000030",
        "step_00000040",
    ]

    keep_all = CheckpointManager(tmp_path / "all", keep_last=0)
    for step in range(5):
        save(keep_all, step, model, optimizer)
    assert len(list((tmp_path / "all").iterdir())) == 5
    with pytest.raises(ConfigError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=-1)


def _truncate(path: Path) -> None:
    file = path / "model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    file = path / "optimizer.pt"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def _nested_manifest(path: Path) -> None:  # RecursionError in json
    (path / "manifest.json").write_text("[" * 200_000, encoding="utf-8")


def _huge_number_in_manifest(path: Path) -> None:  # ValueError past Python's digit limit
    text = (path / "manifest.json").read_text(encoding="utf-8")
    (path / "manifest.json").write_text(text.replace("{", '{"n": ' + "9" * 5000 + ",", 1))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncate, "model.safetensors has .* bytes"),
        (_flip_byte, "optimizer.pt .*sha256"),
        (_nested_manifest, "manifest.json: cannot be read as JSON .nested too deeply"),
        (_huge_number_in_manifest, "manifest.json: cannot be read as JSON .*digits"),
    ],
)
def test_damaged_newest_checkpoint_is_skipped_with_warning(tmp_path: Path, damage, problem) -> None:
    model, optimizer = trained()
    manager = CheckpointManager(tmp_path)
    save(manager, 1, model, optimizer)
    newest = save(manager, 2, model, optimizer)
    damage(newest)
    with pytest.raises(CheckpointError, match=problem):
        verify_checkpoint(newest)
    with pytest.warns(CheckpointWarning, match=f"step_00000002.*{problem}"):
        assert manager.latest() == tmp_path / "step_00000001"


def test_crash_leftovers_and_folders_without_manifest_are_ignored(tmp_path: Path) -> None:
    model, optimizer = trained()
    manager = CheckpointManager(tmp_path)
    assert manager.latest() is None and latest_valid(tmp_path / "absent") is None
    good = save(manager, 3, model, optimizer)
    crashed = tmp_path / ".tmp-step_00000009-abc123"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"partial")
    no_manifest = tmp_path / "step_00000008"
    no_manifest.mkdir()
    for name in ("model.safetensors", "config.json"):
        (no_manifest / name).write_bytes((good / name).read_bytes())
    with pytest.warns(CheckpointWarning, match="step_00000008.*manifest.json is missing"):
        assert manager.latest() == good

    users = tmp_path / ".tmp-thesis-drafts"  # checkpoint.dir may be a folder the user keeps
    users.mkdir()
    (users / "chapter1.tex").write_text("mine")
    save(manager, 4, model, optimizer)
    assert not crashed.exists()
    assert (users / "chapter1.tex").read_text() == "mine"  # not named as our saves: never touched
    assert no_manifest.exists()  # not ours to delete: never produced by a save


def test_resaving_a_step_replaces_it(tmp_path: Path) -> None:
    model, optimizer = trained()
    manager = CheckpointManager(tmp_path)
    save(manager, 7, model, optimizer, state={"tokens_seen": 1})
    path = save(manager, 7, model, optimizer, state={"tokens_seen": 2})
    verify_checkpoint(path)
    assert json.loads((path / "state.json").read_text())["tokens_seen"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000007"]


def test_shape_mismatch_raises_naming_the_file_and_changes_nothing(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = save(CheckpointManager(tmp_path), 1, model, optimizer)
    wider = ModelConfig(dim=96, n_layers=2, n_heads=4, vocab_size=128, multiple_of=16)
    other, other_optimizer = trained(seed=3, cfg=wider)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape"):
        CheckpointManager(tmp_path).load(path, other, other_optimizer)
    deeper = ModelConfig(dim=64, n_layers=3, n_heads=4, vocab_size=128, multiple_of=16)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing.*layers\.2"):
        CheckpointManager(tmp_path).load(path, build_model(deeper), None)
    for key, value in other.state_dict().items():
        assert torch.equal(value, before[key]), key

    # Same model, optimizer built with its parameters in another order.
    same, _ = trained(seed=4)
    shuffled = torch.optim.AdamW(list(same.parameters())[::-1], lr=1e-3)
    with pytest.raises(CheckpointError, match=r"optimizer\.pt.*exp_avg"):
        CheckpointManager(tmp_path).load(path, same, shuffled)


def test_bad_save_arguments(tmp_path: Path) -> None:
    model, optimizer = trained()
    manager = CheckpointManager(tmp_path)
    with pytest.raises(ConfigError, match="missing.model"):
        save(manager, 1, model, optimizer, tokenizer_path=tmp_path / "missing.model")
    with pytest.raises(ValueError, match="disagrees"):
        save(manager, 1, model, optimizer, state={"step": 2})
    with pytest.raises(TypeError, match="state.json"):
        save(manager, 1, model, optimizer, state={"bad": object()})
    assert list(tmp_path.iterdir()) == []  # failed saves leave nothing behind


CHILD = """
import sys, torch
from llamaforge.model import ModelConfig, build_model
from llamaforge.train.checkpoint import CheckpointManager
cfg = ModelConfig(dim=256, n_layers=4, n_heads=4, vocab_size=1024, multiple_of=64)
model = build_model(cfg)
opt = torch.optim.AdamW(model.parameters())
for p in model.parameters():
    p.grad = torch.randn_like(p)
opt.step()
manager = CheckpointManager(sys.argv[1], keep_last=2)
step = int(sys.argv[2])
for i in range(10**6):
    manager.save(step, model, opt, model_config=cfg.to_dict(), train_config={},
                 state={"tokens_seen": step})
    print(step, flush=True)
    step += 1 if i % 3 else 0  # sometimes re-save the same step (replace path)
"""


def test_sigkill_at_a_random_moment_leaves_only_complete_checkpoints(tmp_path: Path) -> None:
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = 0
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert child.stdout.readline().strip(), "child exited before its first save"
            time.sleep(rng.uniform(0.0, 0.6))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        path = latest_valid(tmp_path)
        assert path is not None
        for folder in tmp_path.glob("step_*"):
            verify_checkpoint(folder)  # every visible checkpoint is complete
        state = json.loads((path / "state.json").read_text())
        start = state["step"] + 1
