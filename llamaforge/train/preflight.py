"""What a training run checks before it allocates or writes anything.

The trainer opens its data (:func:`open_data`: every token folder's
``index.json`` is read and the shard sizes and vocabulary checked) and then
calls :func:`preflight`
before the model leaves the meta device, so a bad config or a model that
cannot fit costs a second, not an out-of-memory kill after minutes of
allocation. Checks here:

* **Output paths.** ``train.run_dir``, the checkpoint folder, and the files
  the run writes in it (``metrics.jsonl``, ``summary.json``, ``report.md``,
  ``tensorboard/``) must be folders/files or not exist yet, and no parent of
  them may be a file.
* **Memory.** :func:`estimate_memory` is the fixed training state per rank,
  exact: fp32 weights, fp32 gradients and the two fp32 AdamW moments, i.e.
  16 bytes per parameter, divided by ``dp * tp`` under FSDP/TP sharding; plus
  a rough (low) guess of one micro-batch's saved activations and logits. The
  CUDA context, allocator fragmentation and temporary buffers are not
  counted, so passing the check does not promise the run fits, but failing it
  means it cannot. The budget is ``torch.cuda.mem_get_info`` on GPU; on CPU
  ``MemAvailable`` of ``/proc/meminfo`` (capped by the cgroup limit, as in a
  container), shared among ``LOCAL_WORLD_SIZE`` ranks on the node. A run
  whose estimate exceeds the budget is refused; ``train.check_memory =
  false`` (``llamaforge train --skip-memory-check``) turns the check off.
* **Warnings** (not errors, the run can go on): a warm-up longer than the
  run (the learning rate never reaches ``optim.lr``) and a missing
  ``data.tokenizer`` (checkpoints then carry no ``tokenizer.model``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from llamaforge.data.loader import TokenLoader
from llamaforge.errors import ConfigError
from llamaforge.model import ModelConfig
from llamaforge.train.config import TrainConfig

GiB = 2**30
# Bytes per parameter of the training state: fp32 weight, gradient, AdamW exp_avg, exp_avg_sq.
STATE_BYTES_PER_PARAM = 16
RUN_FILES = {"metrics.jsonl": "file", "summary.json": "file", "report.md": "file",
             "tensorboard": "folder"}  # fmt: skip


class ConfigWarning(UserWarning):
    """A config that runs but probably does not do what was meant."""


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    state_bytes: int  # weights + gradients + AdamW moments held by one rank
    activation_bytes: int  # rough: one micro-batch's saved activations and logits

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes


def estimate_memory(
    cfg: TrainConfig, world_size: int = 1, model: ModelConfig | None = None
) -> MemoryEstimate:
    """Bytes one rank needs for ``cfg`` (see the module docstring for what is counted).

    ``model`` is the shape actually trained when it is not ``cfg``'s own
    (finetuning takes it from ``finetune.init``).
    """
    model = model or cfg.model_config
    params = model.num_params()
    tp = cfg.parallel.tp if world_size > 1 else 1
    tokens = cfg.data.micro_batch_size * cfg.data.seq_len
    elem = 2 if cfg.train.precision == "bf16" else 4
    d, hidden = model.dim, model.ffn_hidden_dim
    # Saved for backward per block: ~10 tensors of width dim (norm inputs/outputs, q, k, v,
    # rotated q and k, attention output, residuals) and 4 of the FFN width (w1, w3, SiLU, product).
    per_layer = tokens * (10 * d + 4 * hidden) * elem // tp
    mode = cfg.train.activation_checkpointing
    if mode == "full":  # block inputs only, plus one block recomputed at a time
        activations = model.n_layers * tokens * d * 4 // tp + per_layer
    elif mode == "selective":  # matmul outputs kept, element-wise ones recomputed: about half
        activations = model.n_layers * per_layer // 2 + per_layer
    else:
        activations = model.n_layers * per_layer
    activations += tokens * model.vocab_size * (elem + 8) // tp  # logits, fp32 loss and its grad
    state = STATE_BYTES_PER_PARAM * params // max(world_size, 1)
    return MemoryEstimate(params, state, activations)


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """Bytes this rank may still allocate on ``device`` and where the number comes from."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {device}"
    budget, source = _cpu_available()
    if budget is None:
        return None, source
    ranks = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    if ranks > 1:
        return budget // ranks, f"{source}, shared by {ranks} ranks on this machine"
    return budget, source


def _cpu_available() -> tuple[int | None, str]:
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    except (OSError, ValueError, IndexError):
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            found.append((int(pages), "available physical memory"))
        except (AttributeError, ValueError, OSError):
            pass
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # cgroup v1
    ):  # fmt: skip
        try:
            cap = Path(limit).read_text().strip()
            if cap.isdigit() and int(cap) < 2**60:
                used = int(Path(usage).read_text().strip())
                found.append((max(int(cap) - used, 0), f"the cgroup limit {limit}"))
                break
        except (OSError, ValueError):
            continue
    if not found:
        return None, "unknown (no /proc/meminfo)"
    return min(found)


def memory_refusal(
    cfg: TrainConfig, device: torch.device, world_size: int, model: ModelConfig | None = None
) -> str | None:
    """Why ``cfg`` cannot fit on ``device``, or None when it may (or the check is off)."""
    if not cfg.train.check_memory:
        return None
    estimate = estimate_memory(cfg, world_size, model)
    budget, source = available_memory(device)
    if budget is None or estimate.total_bytes <= budget:
        return None
    per_rank = f" per rank (of {world_size})" if world_size > 1 else ""
    return (
        f"model {cfg.model.preset!r} ({estimate.params / 1e9:.2f}B parameters) needs about "
        f"{estimate.state_bytes / GiB:.1f} GiB for weights, gradients and AdamW moments plus "
        f"~{estimate.activation_bytes / GiB:.1f} GiB of activations{per_rank} on {device}, but "
        f"only {budget / GiB:.1f} GiB is available ({source}); choose a smaller [model], "
        "shard over more devices (parallel.dp/tp), lower data.micro_batch_size or set "
        "train.activation_checkpointing, or pass --skip-memory-check (train.check_memory=false) "
        "to try anyway"
    )


def check_output_paths(cfg: TrainConfig) -> None:
    """Refuse (one line) output paths that are, or sit under, something of the wrong kind."""
    run_dir = Path(cfg.train.run_dir)
    for name, folder in (("train.run_dir", run_dir), ("checkpoint.dir", cfg.checkpoint_dir)):
        for path in (folder, *folder.parents):
            if path.exists() and not path.is_dir():
                what = name if path == folder else f"{name} = {str(folder)!r}: its parent"
                raise ConfigError(
                    f"{what} {str(path)!r} is a file, not a folder; choose another {name}"
                )
    for name, kind in RUN_FILES.items():
        path = run_dir / name
        wrong = path.is_dir() if kind == "file" else path.exists() and not path.is_dir()
        if wrong:
            raise ConfigError(
                f"{path} exists and is not a {kind}, but the run writes its {name} there; "
                f"move it away or choose another train.run_dir"
            )


def warn_about(cfg: TrainConfig, steps: int | None = None) -> None:
    """Warn about settings that run but probably do not do what was meant.

    ``steps``: the run's real length where only the data knows it (a finetuning
    run of ``finetune.epochs``); ``cfg.max_steps`` otherwise.
    """
    steps = cfg.max_steps if steps is None else steps
    if cfg.optim.warmup_steps > steps:
        warnings.warn(
            f"optim.warmup_steps ({cfg.optim.warmup_steps}) > the run's {steps} steps: "
            f"the learning rate never reaches optim.lr ({cfg.optim.lr:g}); lower warmup_steps",
            ConfigWarning,
            stacklevel=2,
        )
    tokenizer = cfg.data.tokenizer
    if not tokenizer and cfg.finetune.enabled and cfg.finetune.init:
        pass  # finetuning takes finetune.init's tokenizer.model and saves it in its checkpoints
    elif not tokenizer:
        warnings.warn(
            "data.tokenizer is not set: checkpoints will hold no tokenizer.model, so generate "
            "and eval need it passed separately; set data.tokenizer to the SentencePiece model",
            ConfigWarning,
            stacklevel=2,
        )
    elif not os.path.isfile(tokenizer):
        warnings.warn(
            f"data.tokenizer {tokenizer!r} is not a file: checkpoints will hold no "
            "tokenizer.model; fix the path",
            ConfigWarning,
            stacklevel=2,
        )


def open_data(
    cfg: TrainConfig, rank: int = 0, world_size: int = 1
) -> tuple[TokenLoader, TokenLoader | None]:
    """The train and validation loaders: every token folder opened and checked, nothing allocated."""
    sources = [(s.path, s.weight) for s in cfg.data.sources]
    if not sources:
        raise ConfigError("data.sources is empty: give at least one token folder (or data.mixture)")
    common = dict(seq_len=cfg.data.seq_len, batch_size=cfg.data.micro_batch_size,
                  val_fraction=cfg.data.val_fraction, seed=cfg.data.seed,
                  rank=rank, world_size=world_size)  # fmt: skip
    loader = TokenLoader(sources, split="train", **common)
    val_loader = None
    if cfg.data.val_fraction > 0:
        val_loader = TokenLoader(sources, split="val", max_batches=cfg.train.val_batches, **common)
    vocab = cfg.model_config.vocab_size
    if loader.vocab_size > vocab:
        raise ConfigError(
            f"token data has vocab_size {loader.vocab_size} but model.vocab_size is {vocab}; "
            f"set model.vocab_size={loader.vocab_size}"
        )
    return loader, val_loader


def preflight(
    cfg: TrainConfig,
    device: torch.device,
    world_size: int = 1,
    is_main: bool = True,
    any_rank: Callable[[bool], bool] | None = None,
    model: ModelConfig | None = None,
    steps: int | None = None,
) -> None:
    """All checks of this module, in the order a user would fix them.

    ``any_rank(flag)`` (distributed runs) tells every rank whether any rank
    refused, so all ranks stop together instead of waiting for one another.
    """
    check_output_paths(cfg)
    refusal = memory_refusal(cfg, device, world_size, model)
    if any_rank is not None and any_rank(refusal is not None) and refusal is None:
        refusal = "another rank does not have the memory for this model (see its error)"
    if refusal is not None:
        raise ConfigError(refusal)
    if is_main:
        warn_about(cfg, steps)
