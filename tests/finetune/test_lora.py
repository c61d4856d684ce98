"""LoRA: exact start, exact merge, only adapters trained, adapter checkpoints load merged."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.finetune.adapters import adapter_config, is_adapter_folder, save_adapters
from llamaforge.finetune.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_trainable_state_dict,
    lora_state_dict,
    merge_lora,
    trainable_state_dict,
)
from llamaforge.formats import convert, load_any, save_any
from llamaforge.train.config import OptimConfig
from llamaforge.train.optim import build_optimizer
from tests.formats.conftest import random_model

ALL = ("wq", "wk", "wv", "wo", "w1", "w2", "w3", "output")


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(seed))


def randomize_b(model: nn.Module, seed: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_b.normal_(0, 0.05, generator=generator)


def test_zero_initialised_b_gives_exactly_the_base_logits() -> None:
    base = random_model()
    model = copy.deepcopy(base)
    replaced = apply_lora(model, LoRAConfig(rank=4, dropout=0.1, target_modules=ALL))
    assert len(replaced) == 2 * 7 + 1
    assert all(m.lora_a.abs().sum() > 0 for m in model.modules() if isinstance(m, LoRALinear))
    with torch.no_grad():
        assert torch.equal(model.eval()(tokens()), base.eval()(tokens()))
        model.train()  # dropout on the adapter input changes nothing while B is zero
        assert torch.equal(model(tokens()), base(tokens()))


def test_merged_weights_give_the_unmerged_logits_and_plain_linears() -> None:
    model = random_model()
    base_keys = set(model.state_dict())
    apply_lora(model, LoRAConfig(rank=4, alpha=8, target_modules=("wq", "wv", "w2")))
    randomize_b(model)
    with torch.no_grad():
        unmerged = model(tokens())
        assert not torch.allclose(unmerged, random_model()(tokens()), atol=1e-3)
        merge_lora(model)
        merged = model(tokens())
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear | LoRALinear)]
    assert linears and all(type(m) is nn.Linear for m in linears)
    assert set(model.state_dict()) == base_keys
    assert all(p.requires_grad for p in model.parameters())


def test_only_adapters_require_grad_and_only_they_change_under_adamw() -> None:
    model = random_model()
    apply_lora(model, LoRAConfig(rank=2, target_modules=("wq", "wv")))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {
        f"layers.{i}.attention.{w}.lora_{ab}" for i in range(2) for w in ("wq", "wv") for ab in "ab"
    }
    assert trainable == expected
    assert set(lora_state_dict(model)) == expected == set(trainable_state_dict(model))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2, warmup_steps=1))
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(expected)
    for step in range(3):
        batch = tokens(step)
        logits = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    for key, value in after.items():
        if key in expected:
            assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key
            assert dict(model.named_parameters())[key].grad is None


def test_trainable_state_dict_round_trip_and_mismatch_leaves_model_untouched() -> None:
    model = random_model()
    apply_lora(model, LoRAConfig(rank=4))
    randomize_b(model)
    saved = {k: v.detach().clone() for k, v in trainable_state_dict(model).items()}
    fresh = random_model()
    apply_lora(fresh, LoRAConfig(rank=4))
    load_trainable_state_dict(fresh, saved)
    with torch.no_grad():
        assert torch.equal(fresh(tokens()), model(tokens()))
    other = random_model()
    apply_lora(other, LoRAConfig(rank=2))
    snapshot = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match="lora.rank"):
        load_trainable_state_dict(other, saved, source="x")
    assert all(torch.equal(v, snapshot[k]) for k, v in other.state_dict().items())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rank": 0}, "lora.rank"),
        ({"alpha": 0}, "lora.alpha"),
        ({"dropout": 1.0}, "lora.dropout"),
        ({"target_modules": []}, "lora.target_modules"),
        ({"target_modules": ["wq", "wq"]}, "twice"),
        ({"rank": "8"}, "lora.rank"),
    ],
)
def test_bad_lora_config_names_the_field(fields, message) -> None:
    with pytest.raises(ConfigError, match=message):
        LoRAConfig(**fields)


def test_unknown_target_module_lists_the_choices() -> None:
    model = random_model()
    with pytest.raises(ConfigError, match=r"\['q_proj'\].*'w1'"):
        apply_lora(model, LoRAConfig(target_modules=("q_proj",)))
    apply_lora(model, LoRAConfig())
    with pytest.raises(ConfigError, match="already"):
        apply_lora(model, LoRAConfig())


def adapter_folder(tmp_path, base_format: str = "native"):
    base = random_model()
    base_dir = save_any(base, tmp_path / "base", base_format)
    model = copy.deepcopy(base)
    cfg = LoRAConfig(rank=4, target_modules=("wq", "wv", "w3"))
    table = adapter_config(cfg, base_dir, base, base_format="auto")
    apply_lora(model, cfg)
    randomize_b(model)
    folder = save_adapters(model, tmp_path / "adapters", table, extra_config={"train": {"x": 1}})
    return model, folder


@pytest.mark.parametrize("base_format", ["native", "hf"])
def test_adapter_folder_holds_only_adapters_and_loads_merged(tmp_path, base_format) -> None:
    model, folder = adapter_folder(tmp_path, base_format)
    stored = load_file(folder / "model.safetensors")
    assert set(stored) == set(lora_state_dict(model))
    assert is_adapter_folder(folder) and not is_adapter_folder(tmp_path / "base")
    loaded, _ = load_any(folder)
    assert not any(isinstance(m, LoRALinear) for m in loaded.modules())
    assert set(loaded.state_dict()) == set(random_model().state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens()), model(tokens()), rtol=1e-5, atol=1e-5)
    out = convert(folder, tmp_path / "hf", dst_format="hf")  # merge on export, no flag
    exported, _ = load_any(out)
    with torch.no_grad():
        torch.testing.assert_close(exported(tokens()), model(tokens()), rtol=1e-5, atol=1e-5)


def test_adapter_folder_with_missing_or_different_base_fails_clearly(tmp_path) -> None:
    _, folder = adapter_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["lora"]["base"] = str(tmp_path / "gone")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="gone does not exist"):
        load_any(folder)
    from tests.formats.conftest import TINY

    bigger = random_model(type(TINY)(**{**TINY.to_dict(), "n_layers": 3}))
    save_any(bigger, tmp_path / "gone", "native")
    with pytest.raises(CheckpointError, match="different model"):
        load_any(folder)


def test_replaced_base_weights_warn(tmp_path) -> None:
    _, folder = adapter_folder(tmp_path)
    save_any(random_model(seed=5), tmp_path / "base", "native", overwrite=True)
    with pytest.warns(UserWarning, match="fingerprint"):
        load_any(folder)


def test_a_lora_folder_with_the_full_weights_needs_no_base(tmp_path) -> None:
    from safetensors.torch import save_file

    model, folder = adapter_folder(tmp_path)
    full = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(full, folder / "model.safetensors")  # what saving model.state_dict() gives
    config = json.loads((folder / "config.json").read_text())
    config["lora"]["base"] = str(tmp_path / "gone")
    (folder / "config.json").write_text(json.dumps(config))
    loaded, _ = load_any(folder)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens()), model(tokens()), rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, LoRALinear) for m in loaded.modules())


def test_a_lora_training_checkpoint_converts_merged(tmp_path) -> None:
    """A full-state LoRA checkpoint (no finetune.init, or torchrun): lora in the train config."""
    from llamaforge.train.checkpoint import CheckpointManager

    model = random_model()
    cfg = LoRAConfig(rank=4, alpha=8, target_modules=("wq", "w2"))
    apply_lora(model, cfg)
    randomize_b(model)
    optimizer = build_optimizer(model, OptimConfig())
    train = {"lora": cfg.to_dict() | {"enabled": True}}
    folder = CheckpointManager(tmp_path / "run").save(
        3, model, optimizer, model_config=model.config, train_config=train, state={}
    )
    out = convert(folder, tmp_path / "hf", dst_format="hf")
    exported, _ = load_any(out)
    with torch.no_grad():
        torch.testing.assert_close(exported(tokens()), model(tokens()), rtol=1e-5, atol=1e-5)
    train["lora"]["enabled"] = False  # a run without LoRA: its adapters would be unexpected
    plain = CheckpointManager(tmp_path / "run2").save(
        3, model, optimizer, model_config=model.config, train_config=train, state={}
    )
    with pytest.raises(CheckpointError, match="unexpected"):
        load_any(plain)
