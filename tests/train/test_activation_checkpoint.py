import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from llamaforge.errors import ConfigError
from llamaforge.model import build_model, get_preset
from llamaforge.model.layers import TransformerBlock
from llamaforge.train.activation_checkpoint import CheckpointedBlock, apply_activation_checkpointing

MODES = ("none", "full", "selective")


class OutputTracker(TorchDispatchMode):
    """Records every aten op, and a weak reference to the storage of every op output."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.storages: dict[StorageWeakRef, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops[func.overloadpacket.__name__] += 1
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                storage = item.untyped_storage()
                self.storages[StorageWeakRef(storage)] = storage.nbytes()
        return out

    def alive_bytes(self) -> int:
        return sum(n for ref, n in self.storages.items() if not ref.expired())


def make_model(mode: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = get_preset("tiny-1M", n_layers=2, vocab_size=96)
    return apply_activation_checkpointing(build_model(cfg), mode)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    tokens = torch.randint(0, 96, (2, 33))
    return tokens[:, :-1], tokens[:, 1:]


def loss_of(model: torch.nn.Module) -> torch.Tensor:
    inputs, targets = batch()
    return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


def profile(mode: str) -> tuple[int, Counter[str]]:
    """Bytes held for backward after the forward, and the ops the backward runs."""
    model = make_model(mode)
    with OutputTracker() as forward:
        loss = loss_of(model)
    held = forward.alive_bytes()
    with OutputTracker() as backward:
        loss.backward()
    return held, backward.ops


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_loss_and_gradients_equal_the_plain_model(mode):
    reference, wrapped = make_model("none"), make_model(mode)
    assert all(isinstance(layer, CheckpointedBlock) for layer in wrapped.layers)
    ref_loss, loss = loss_of(reference), loss_of(wrapped)
    ref_loss.backward()
    loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    ref_grads = dict(reference.named_parameters())
    for name, param in wrapped.state_dict(keep_vars=True).items():
        torch.testing.assert_close(param.grad, ref_grads[name].grad, rtol=1e-5, atol=1e-7)


def test_selective_saves_less_than_none_and_more_than_full():
    held = {}
    ops = {}
    for mode in MODES:
        held[mode], ops[mode] = profile(mode)
    assert held["full"] < held["selective"] < held["none"], held
    # Selective recomputes no matmul in the backward pass, full recomputes all of them.
    assert ops["selective"]["mm"] == ops["none"]["mm"]
    assert ops["full"]["mm"] > ops["none"]["mm"]
    # ...but it does recompute the cheap element-wise ops (RMSNorm's rsqrt, SiLU).
    for cheap in ("rsqrt", "silu"):
        assert ops["none"][cheap] == 0
        assert ops["selective"][cheap] == ops["full"][cheap] > 0
    # The attention kernel's output is saved, not recomputed.
    attention = "_scaled_dot_product_flash_attention_for_cpu"
    assert ops["selective"][attention] == ops["none"][attention] == 0 < ops["full"][attention]


def test_state_dict_and_no_grad_paths_are_unchanged():
    plain, wrapped = make_model("none"), make_model("selective")
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    other = copy.deepcopy(plain)
    for param in other.parameters():
        param.data.add_(1.0)
    wrapped.load_state_dict(other.state_dict())  # plain keys load into a wrapped model
    torch.testing.assert_close(
        wrapped.layers[0].block.attention.wq.weight, other.layers[0].attention.wq.weight
    )
    with torch.no_grad():
        cache = wrapped.new_cache(batch=2, max_len=40)
        prefill = wrapped(batch()[0], cache=cache)
        torch.testing.assert_close(prefill, other(batch()[0]))
        assert cache.filled == 32


def test_reapplying_replaces_the_mode_and_bad_modes_fail():
    model = make_model("full")
    apply_activation_checkpointing(model, "selective")
    assert [layer.mode for layer in model.layers] == ["selective", "selective"]
    apply_activation_checkpointing(model, "none")
    assert all(type(layer) is TransformerBlock for layer in model.layers)
    with pytest.raises(ConfigError, match="'none', 'full', 'selective'|none, full, selective"):
        apply_activation_checkpointing(model, "partial")


def test_attributes_fall_through_to_the_block():
    wrapped = make_model("selective")
    layer = wrapped.layers[0]
    assert layer.attention is layer.block.attention  # what state-dict helpers walk
    assert layer.mode == "selective"  # the wrapper's own attributes win
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = layer.no_such_thing
    clone = copy.deepcopy(wrapped)  # construction without __init__ must not recurse
    assert isinstance(clone.layers[0], CheckpointedBlock)


def test_distributed_state_dict_helpers_see_plain_names():
    """What DCP saves and loads: the same keys wrapped or not, optimizer state included."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from llamaforge.train.config import OptimConfig
    from llamaforge.train.optim import build_optimizer

    def trained(mode: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = make_model(mode)
        optimizer = build_optimizer(model, OptimConfig(lr=1e-2))
        loss_of(model).backward()
        optimizer.step()
        return model, optimizer

    plain, plain_opt = trained("none")
    wrapped, wrapped_opt = trained("selective")
    plain_sd, plain_osd = get_state_dict(plain, plain_opt)
    wrapped_sd, wrapped_osd = get_state_dict(wrapped, wrapped_opt)
    assert list(wrapped_sd) == list(plain_sd) == list(plain.state_dict())
    assert list(wrapped_osd["state"]) == list(plain_osd["state"])
    assert set(plain_osd["state"]) == set(plain_sd)
    torch.testing.assert_close(wrapped_sd, plain_sd)

    fresh = make_model("full")
    fresh_opt = build_optimizer(fresh, OptimConfig(lr=1e-2))
    set_state_dict(fresh, fresh_opt, model_state_dict=plain_sd, optim_state_dict=plain_osd)
    torch.testing.assert_close(fresh.state_dict(), plain.state_dict())
    moments = fresh_opt.state[fresh.layers[1].feed_forward.w2.weight]["exp_avg"]
    torch.testing.assert_close(
        moments, plain_opt.state[plain.layers[1].feed_forward.w2.weight]["exp_avg"]
    )
