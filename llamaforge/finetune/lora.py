"""LoRA (Hu et al. 2021): low-rank adapters on frozen linear layers (beyond the paper).

A target ``nn.Linear`` with weight ``W`` (out x in) becomes a :class:`LoRALinear`
computing ``W x + (alpha / rank) * B A dropout(x)`` with ``A`` (rank x in)
drawn like ``nn.Linear``'s own init (Kaiming-uniform, ``a = sqrt(5)``, as the
paper's reference code and ``peft`` do) and ``B`` (out x rank) zero, so the
adapted model starts as exactly the base model. Dropout applies to the input
of the adapter path only; the frozen path sees ``x`` unchanged.

The API the trainer and the checkpoint code call:

* :func:`apply_lora` (model, :class:`LoRAConfig`) replaces the target linears in
  place and freezes every other parameter: afterwards the parameters with
  ``requires_grad`` are exactly the adapters, so ``build_optimizer`` (which
  skips frozen parameters) optimises only them. Call it on the plain model,
  before ``fully_shard``; it also works on a meta-device model (the adapters
  are created on the weight's device and dtype; fill them afterwards with
  :func:`reset_lora_parameters`, which understands FSDP's DTensor shards).
* :func:`trainable_state_dict` / :func:`load_trainable_state_dict`: what a
  finetuning checkpoint stores and restores (plain names, only the parameters
  that require grad). A LoRA checkpoint is a native folder whose
  ``model.safetensors`` holds only these tensors and whose ``config.json``
  has a ``"lora"`` table from :func:`llamaforge.finetune.adapters.adapter_config`
  (rank, alpha, dropout, targets and the base checkpoint it applies to).
* :func:`merge_lora` folds ``B A * scale`` into ``W`` and puts plain
  ``nn.Linear`` modules back, so every exporter writes an ordinary model.
* :func:`lora_state_dict` holds the adapter tensors only (``*.lora_a``, ``*.lora_b``).

Tensor parallelism is not supported with LoRA: the TP plans shard
``nn.Linear`` modules, and a :class:`LoRALinear` is deliberately not one, so
``parallelize_module`` fails loudly instead of sharding ``W`` but not ``A``/``B``.
FSDP2 is supported: it shards frozen and trainable parameters of one unit
together and reduce-scatters only the gradients that exist (tested on 2 gloo
ranks in ``tests/finetune/test_lora_fsdp.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.model.naming import plain_name
from llamaforge.train.config_fields import coerce

ADAPTER_SUFFIXES = (".lora_a", ".lora_b")


@dataclass
class LoRAConfig:
    """The ``[lora]`` section.

    ``target_modules`` are leaf names of linear layers (``wq wk wv wo`` in
    attention, ``w1 w2 w3`` in the SwiGLU FFN, ``output`` for the vocabulary
    projection); the default ``("wq", "wv")`` is the LoRA paper's choice.
    """

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("wq", "wv")

    def __post_init__(self) -> None:
        self.enabled = coerce(self.enabled, bool, "lora.enabled")
        self.rank = coerce(self.rank, int, "lora.rank")
        self.alpha = coerce(self.alpha, float, "lora.alpha")
        self.dropout = coerce(self.dropout, float, "lora.dropout")
        if self.rank < 1:
            raise ConfigError(f"lora.rank must be an integer >= 1, got {self.rank}")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        targets = self.target_modules
        if isinstance(targets, str):
            targets = (targets,)
        if not isinstance(targets, list | tuple) or not targets:
            raise ConfigError(
                f"lora.target_modules must be a non-empty list of names such as "
                f'["wq", "wv"], got {self.target_modules!r}'
            )
        names = tuple(coerce(t, str, f"lora.target_modules[{i}]") for i, t in enumerate(targets))
        if len(set(names)) != len(names):
            raise ConfigError(f"lora.target_modules lists a name twice: {list(names)}")
        self.target_modules = names

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        return {
            "enabled": self.enabled,
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": list(self.target_modules),
        }


class LoRALinear(nn.Module):
    """A frozen bias-free linear layer plus a trainable low-rank update.

    It keeps the original ``weight`` Parameter object under the same name, so
    ``layers.0.attention.wq.weight`` still names the base weight (the base
    checkpoint loads into it, ``init_plan`` still finds it) and the adapters
    appear next to it as ``...wq.lora_a`` and ``...wq.lora_b``.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if base.bias is not None:
            raise ConfigError("LoRA: the target linear has a bias; LLaMA's linears have none")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.weight = base.weight
        self.weight.requires_grad_(False)
        like = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, **like))
        self.lora_b = nn.Parameter(torch.empty(self.out_features, rank, **like))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if not self.weight.is_meta:
            self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """A ~ Kaiming-uniform(a=sqrt(5)) (bound 1/sqrt(in)), B = 0: the update starts at 0."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.lora_a, -bound, bound, generator=generator)
        nn.init.zeros_(self.lora_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight)
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)
        return base + update * self.scaling

    def merged_weight(self) -> torch.Tensor:
        """``W + scale * B A``, computed in float32 and returned in ``W``'s dtype."""
        delta = self.lora_b.detach().float() @ self.lora_a.detach().float()
        return (self.weight.detach().float() + self.scaling * delta).to(self.weight.dtype)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha}"
        )


def linear_names(model: nn.Module) -> set[str]:
    """Leaf names of the model's ``nn.Linear`` modules (what ``target_modules`` may list)."""
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if type(m) is nn.Linear}


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Replace the target linears by :class:`LoRALinear` in place; return their names.

    Every parameter outside the adapters is frozen (``requires_grad=False``).
    Applying twice is refused (the adapters would stack and the second set
    would freeze the first).
    """
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ConfigError("apply_lora: the model already has LoRA adapters")
    available = linear_names(model)
    unknown = sorted(set(cfg.target_modules) - available)
    if unknown:
        raise ConfigError(
            f"lora.target_modules: {unknown} name no linear layer of this model; "
            f"choose among {sorted(available)}"
        )
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if type(module) is nn.Linear and name.rsplit(".", 1)[-1] in cfg.target_modules
    ]
    for param in model.parameters():
        param.requires_grad_(False)
    for name, module in targets:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, LoRALinear(module, cfg.rank, cfg.alpha, cfg.dropout))
    return [plain_name(name) for name, _ in targets]


def lora_modules(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
def reset_lora_parameters(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Initialise every adapter in module order (after ``to_empty`` of a meta model).

    Sharded (DTensor) adapters are drawn in full on every rank and each keeps
    its shard, as ``llamaforge.train.parallel.meta_init`` does for the base
    weights, so every layout starts from the single-process adapters.
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    for _, module in lora_modules(model):
        a, b = module.lora_a, module.lora_b
        full = torch.empty(a.shape, dtype=a.dtype, device=a.device)
        bound = 1.0 / math.sqrt(module.in_features)
        nn.init.uniform_(full, -bound, bound, generator=generator)
        if isinstance(a, DTensor):
            shard = distribute_tensor(full, a.device_mesh, a.placements, src_data_rank=None)
            a.to_local().copy_(shard.to_local())
            b.to_local().zero_()
        else:
            a.copy_(full)
            b.zero_()


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors only, under plain names (``layers.0.attention.wq.lora_a`` ...)."""
    return {plain_name(k): v for k, v in model.state_dict().items() if k.endswith(ADAPTER_SUFFIXES)}


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that require grad, under plain names: what a LoRA checkpoint stores.

    With :func:`apply_lora` these are exactly the adapters; a caller that
    unfreezes more (say the norms) gets those saved too, since a checkpoint
    that silently drops trained tensors would not resume.
    """
    return {plain_name(k): p for k, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Copy ``state`` (from :func:`trainable_state_dict`) into the model, checked first.

    Every trainable parameter must be present with its shape; ``state`` may also
    hold frozen tensors (a full-weights checkpoint), which are copied too.
    Nothing is modified when a check fails.
    """
    params = {plain_name(k): p for k, p in model.named_parameters()}
    trainable = {k for k, p in params.items() if p.requires_grad}
    missing = sorted(trainable - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: adapter weights do not fit this model (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}); use the [lora] settings the checkpoint was "
            "trained with (its config.json 'lora' table)"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(params[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(params[key].shape)}; lora.rank or the base model differ"
            )
    for key, tensor in state.items():
        params[key].copy_(tensor)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and restore plain ``nn.Linear`` modules.

    Works in place and returns ``model``. Afterwards no parameter is frozen
    (the model is an ordinary one again, as a freshly loaded checkpoint is).
    A sharded (FSDP) model is refused: gather it into one process first.
    """
    from torch.distributed.tensor import DTensor

    for name, module in lora_modules(model):
        if isinstance(module.weight, DTensor):
            raise CheckpointError(
                f"merge_lora: {name} is sharded; load the checkpoint in one process "
                "(llamaforge convert) to merge it"
            )
        plain = nn.Linear(
            module.in_features,
            module.out_features,
            bias=False,
            device=module.weight.device,
            dtype=module.weight.dtype,
        )
        plain.weight = nn.Parameter(module.merged_weight())
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, plain)
    for param in model.parameters():
        param.requires_grad_(True)
    return model
