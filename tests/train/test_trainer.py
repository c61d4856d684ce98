"""The training loop: accumulation arithmetic, clipping, and non-finite steps.

The helpers at the top (a tiny token folder and a tiny TOML config) are also
used by ``test_train_cli.py``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from llamaforge.data.shard_writer import ShardWriter
from llamaforge.model import ModelConfig, build_model
from llamaforge.model.naming import plain_name
from llamaforge.train.config import OptimConfig, load_train_config
from llamaforge.train.optim import build_optimizer
from llamaforge.train.report import read_metrics
from llamaforge.train.step import train_step
from llamaforge.train.trainer import Trainer, TrainingDiverged

VOCAB = 300
SEQ_LEN = 32


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: a tiny model gains nothing from more, and on a shared
    2-core machine OpenMP threads waiting for each other make it 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tokens(folder: Path, n_tokens: int = 40_000, seed: int = 0) -> Path:
    """A token folder with learnable structure: rotations of one 50-token phrase."""
    rng = np.random.default_rng(seed)
    phrase = rng.integers(3, VOCAB, size=50)
    pieces = [np.roll(phrase, k)[: rng.integers(20, 50)] for k in range(n_tokens // 20)]
    tokens = np.concatenate(pieces)[:n_tokens]
    with ShardWriter(folder, vocab_size=VOCAB, eos_id=2, bos_id=1, shard_tokens=7_000) as writer:
        writer.add_tokens(tokens)
        writer.finish()
    return folder


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    return repr(value)


def write_config(path: Path, tokens: Path, run_dir: Path, **sections: dict[str, Any]) -> Path:
    """A tiny-model TOML config; ``sections`` update the defaults table by table."""
    tables: dict[str, dict[str, Any]] = {
        "model": {"preset": "tiny-1M", "dim": 32, "n_layers": 2, "n_heads": 4,
                  "vocab_size": VOCAB, "max_seq_len": SEQ_LEN},
        "optim": {"lr": 3e-3, "warmup_steps": 5},
        "data": {"sources": str(tokens), "seq_len": SEQ_LEN, "micro_batch_size": 4,
                 "batch_tokens": 3 * 4 * SEQ_LEN, "val_fraction": 0.05},
        "train": {"run_dir": str(run_dir), "max_steps": 30, "precision": "fp32",
                  "device": "cpu", "val_every_steps": 10, "val_batches": 2},
        "checkpoint": {"every_steps": 5, "keep_last": 3},
        "log": {"tensorboard": False, "peak_flops_per_device": 1e12},
    }  # fmt: skip
    for name, table in sections.items():
        tables.setdefault(name, {}).update(table)
    lines = []
    for name, table in tables.items():
        lines += [f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items()), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ---- train_step ----------------------------------------------------------------


def _tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        dim=32, n_layers=2, n_heads=4, vocab_size=VOCAB, multiple_of=16, max_seq_len=SEQ_LEN
    )
    return build_model(cfg)


def _grad_recorder(store: list[list[torch.Tensor]]):
    """A clip_fn that records the gradients train_step is about to clip."""

    def clip(params, max_norm):
        params = list(params)
        store.append([p.grad.detach().clone() for p in params])
        return nn.utils.clip_grad_norm_(params, max_norm)

    return clip


def test_gradient_accumulation_equals_one_big_batch() -> None:
    big = _tiny_model()
    small = copy.deepcopy(big)
    optim_cfg = OptimConfig(lr=1e-3, warmup_steps=0)
    opt_big, opt_small = build_optimizer(big, optim_cfg), build_optimizer(small, optim_cfg)
    grads_big: list[list[torch.Tensor]] = []
    grads_small: list[list[torch.Tensor]] = []
    torch.manual_seed(1)
    for _ in range(2):  # a second step checks gradients do not leak across steps
        tokens = torch.randint(0, VOCAB, (8, SEQ_LEN + 1))
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        micro = [(inputs[i : i + 2], targets[i : i + 2]) for i in range(0, 8, 2)]
        r_big = train_step(big, opt_big, [(inputs, targets)], 1, 1.0,
                           clip_fn=_grad_recorder(grads_big))  # fmt: skip
        r_small = train_step(small, opt_small, iter(micro), 4, 1.0,
                             clip_fn=_grad_recorder(grads_small))  # fmt: skip
        assert r_big.tokens == r_small.tokens == 8 * SEQ_LEN
        assert not r_big.skipped and not r_small.skipped
        assert r_small.loss == pytest.approx(r_big.loss, rel=1e-5)
        assert r_small.grad_norm == pytest.approx(r_big.grad_norm, rel=1e-4)
    for step_big, step_small in zip(grads_big, grads_small, strict=True):
        for g_big, g_small in zip(step_big, step_small, strict=True):
            torch.testing.assert_close(g_small, g_big, rtol=1e-4, atol=1e-6)
    for (name, p_big), p_small in zip(big.named_parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(p_small, p_big, rtol=1e-4, atol=1e-6, msg=name)
    changed = _tiny_model()  # and the step really moved the weights
    assert not torch.equal(next(changed.parameters()), next(big.parameters()))


def test_clipping_caps_the_global_norm_and_reports_the_norm_before_clipping() -> None:
    model = _tiny_model()
    torch.manual_seed(2)
    tokens = torch.randint(0, VOCAB, (4, SEQ_LEN + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    reference = copy.deepcopy(model)  # the unclipped gradient, computed independently
    logits = reference(inputs)
    nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    unclipped = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in reference.parameters()])
    ).item()

    clip_value = 1e-3
    after: list[float] = []

    def clip_and_measure(params, max_norm):
        params = list(params)
        norm = nn.utils.clip_grad_norm_(params, max_norm)
        after.append(math.sqrt(sum(float(p.grad.double().square().sum()) for p in params)))
        return norm

    optimizer = build_optimizer(model, OptimConfig(lr=1e-3, warmup_steps=0))
    result = train_step(model, optimizer, [(inputs, targets)], 1, clip_value,
                        clip_fn=clip_and_measure)  # fmt: skip
    assert unclipped > 100 * clip_value  # the clip is really active
    assert result.grad_norm == pytest.approx(unclipped, rel=1e-4)
    assert after == [pytest.approx(clip_value, rel=1e-4)]
    assert not result.skipped


# ---- non-finite steps in the Trainer ---------------------------------------------


class PoisonedModel(nn.Module):
    """Wraps the trainer's model: NaN logits on chosen (1-based) training steps.

    It also records the weights at the start of every training step, so a test
    can tell whether a skipped step changed them.
    """

    def __init__(self, trainer: Trainer, bad_step) -> None:
        super().__init__()
        self.inner = trainer.model
        self.trainer = trainer
        self.bad_step = bad_step
        self.weights_before: dict[int, dict[str, torch.Tensor]] = {}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        step = self.trainer.step + 1
        training = torch.is_grad_enabled()  # evaluate_loss runs under no_grad
        if training and step not in self.weights_before:
            self.weights_before[step] = {
                plain_name(k): v.detach().clone() for k, v in self.inner.state_dict().items()
            }
        logits = self.inner(tokens)
        return logits * float("nan") if training and self.bad_step(step) else logits


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _poisoned_trainer(tmp_path: Path, bad_step, max_steps: int, **train: Any):
    tokens = make_tokens(tmp_path / "tokens")
    config = write_config(
        tmp_path / "run.toml", tokens, tmp_path / "run",
        train={"max_steps": max_steps, "val_every_steps": 0, **train},
        checkpoint={"every_steps": 0},
    )  # fmt: skip
    trainer = Trainer(load_train_config(config), progress=False)
    poisoned = PoisonedModel(trainer, bad_step)
    trainer.forward_model = poisoned
    return trainer, poisoned


def test_non_finite_steps_are_skipped_counted_and_training_goes_on(tmp_path: Path) -> None:
    trainer, poisoned = _poisoned_trainer(
        tmp_path, lambda step: step in (4, 5), max_steps=8, max_nonfinite_steps=3
    )
    result = trainer.run()
    assert (result.steps, result.skipped_steps, result.stopped_by) == (8, 2, "finished")
    assert math.isfinite(result.train_loss)
    before = poisoned.weights_before
    _assert_same(before[6], before[4])  # steps 4 and 5 left the weights alone
    assert not torch.equal(before[7]["output.weight"], before[6]["output.weight"])  # step 6 trained

    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["skipped_steps"] for r in rows] == [0, 0, 0, 1, 2, 2, 2, 2]
    assert [math.isfinite(r["loss"]) for r in rows] == [True] * 3 + [False] * 2 + [True] * 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_steps"] == 2


def test_too_many_non_finite_steps_stop_with_the_last_good_weights_saved(tmp_path: Path) -> None:
    trainer, poisoned = _poisoned_trainer(
        tmp_path, lambda step: step >= 6, max_steps=30, max_nonfinite_steps=3
    )
    with pytest.raises(TrainingDiverged, match="3 consecutive steps") as error:
        trainer.run()
    checkpoint = tmp_path / "run" / "checkpoints" / "step_00000008"
    assert str(checkpoint) in str(error.value)
    assert "optim.lr" in str(error.value)  # says what to do
    assert trainer.step == 8
    saved = load_file(checkpoint / "model.safetensors")
    _assert_same(saved, poisoned.weights_before[6])  # the weights before the first bad step
    assert not torch.equal(poisoned.weights_before[6]["output.weight"],
                           poisoned.weights_before[1]["output.weight"])  # fmt: skip
    state = json.loads((checkpoint / "state.json").read_text())
    assert (state["step"], state["skipped_steps"], state["consecutive_nonfinite"]) == (8, 3, 3)


def test_compiled_and_selectively_checkpointed_training_matches_eager(tmp_path):
    """train.compile and selective checkpointing change speed and memory, never the curve."""
    tokens = make_tokens(tmp_path / "tokens")
    losses = {}
    for name, train in {
        "eager": {},
        "compiled": {"compile": True, "activation_checkpointing": "selective"},
    }.items():
        run = tmp_path / name
        config = write_config(
            tmp_path / f"{name}.toml", tokens, run,
            train={"max_steps": 3, "val_every_steps": 0, **train},
            checkpoint={"every_steps": 0},
        )  # fmt: skip
        Trainer(load_train_config(config), progress=False).run()
        losses[name] = [
            r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"
        ]
    assert len(losses["eager"]) == 3
    np.testing.assert_allclose(losses["compiled"], losses["eager"], rtol=1e-4)
