"""Where a run's data and starting weights come from: pretraining or finetuning.

The trainer asks this module for its loaders and its starting point and
otherwise runs the same loop for both. Pretraining reads token folders
(``data.sources``) and starts from the seeded initialisation. Finetuning
(``finetune.data`` set) reads instruction examples through
:mod:`llamaforge.finetune` and starts from ``finetune.init``, any folder
:func:`llamaforge.formats.load_any` reads (native, Hugging Face, Meta); the
model's shape then comes from that checkpoint, not from ``[model]``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llamaforge.errors import CheckpointError, ConfigError, DataError, LlamaforgeError
from llamaforge.model import ModelConfig
from llamaforge.train.config import TrainConfig
from llamaforge.umask import atomic_write_text

DATA_REPORT = "finetune_data.json"  # in train.run_dir; written by every launch of a finetuning run


@dataclass
class StartPoint:
    model_config: ModelConfig
    state: dict[str, torch.Tensor] | None = None  # full, plain-named weights to load
    tokenizer: str | None = None  # the checkpoint's tokenizer.model, if any


@dataclass
class DataPlan:
    loader: Any
    val_loader: Any | None
    report: dict[str, Any] = field(default_factory=dict)  # finetuning: what was read and kept
    template: Any | None = None  # finetuning: the ChatTemplate the examples are rendered in


def start_point(cfg: TrainConfig) -> StartPoint:
    init = cfg.finetune.init if cfg.finetune.enabled else ""
    if not init:
        return StartPoint(cfg.model_config)
    from llamaforge.formats import load_any

    if not Path(init).is_dir():
        raise ConfigError(f"finetune.init {init!r} is not a checkpoint folder")
    _check_init_format(init)
    model, tokenizer = load_any(init, device="cpu", dtype=torch.float32)
    state = {name: t.detach() for name, t in model.state_dict().items()}
    return StartPoint(model.config, state, str(tokenizer) if tokenizer else None)


def _check_init_format(init: str) -> None:
    """Refuse a ``finetune.init`` folder of no format we read, saying what it must hold.

    :func:`~llamaforge.formats.detect_format` ends its message with the
    ``convert --from`` flag, which ``finetune`` has no equivalent of: the
    format always comes from the files.
    """
    from llamaforge.formats import detect_format

    try:
        detect_format(init)
    except CheckpointError:
        found = sorted(p.name for p in Path(init).iterdir())[:10]
        raise ConfigError(
            f"finetune.init {init!r} is not a model folder we can read (its files: "
            f"{found or 'none, it is empty'}); point it at a native folder (config.json with "
            "model.safetensors, e.g. a run's checkpoints/step_* folder), a Hugging Face folder "
            "(config.json with model_type) or a Meta folder (params.json + consolidated.NN.pth)"
        ) from None


def load_start_weights(model: nn.Module, state: dict[str, torch.Tensor], distributed: bool) -> None:
    """Copy the full ``state`` into ``model`` (plain, or FSDP2/TP-sharded: each rank its shard).

    Names absent from ``state`` (LoRA adapters) keep their initialisation;
    every name of ``state`` must exist in the model.
    """
    if distributed:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, state, options=options)
        return
    missing = set(state) - set(model.state_dict())
    if missing:
        raise LlamaforgeError(
            f"the start checkpoint has weights the model lacks: {sorted(missing)[:5]}"
        )
    model.load_state_dict(state, strict=False)


def tokenizer_for(cfg: TrainConfig, start: StartPoint):
    from llamaforge.tokenizer import Tokenizer

    path = cfg.data.tokenizer or start.tokenizer
    if not path:
        raise ConfigError(
            "finetuning needs a tokenizer: set data.tokenizer or use a finetune.init "
            "checkpoint folder holding tokenizer.model"
        )
    return Tokenizer(path)


def build_data(cfg: TrainConfig, start: StartPoint, rank: int, dp: int) -> DataPlan:
    if not cfg.finetune.enabled:
        return _pretraining_data(cfg, rank, dp)
    from llamaforge.finetune.checkpointing import check_tokenizer_fits
    from llamaforge.finetune.data import read_conversations
    from llamaforge.finetune.examples import build_examples, split_indices
    from llamaforge.finetune.source import FinetuneLoader
    from llamaforge.finetune.templates import load_template

    ft = cfg.finetune
    check_data_report_path(Path(cfg.train.run_dir))  # before the data is read
    tokenizer = tokenizer_for(cfg, start)
    check_tokenizer_fits(cfg, start, tokenizer)  # before any data is read
    conversations, read = read_conversations(
        ft.data, ft.schema, ft.skip_bad_examples, ft.dataset_split
    )
    template = load_template(ft.template)
    train_ids, val_ids = split_indices(len(conversations), ft.val_fraction, cfg.data.seed)
    kw = dict(
        max_seq_len=cfg.data.seq_len, overlong=ft.overlong, train_on_prompt=ft.train_on_prompt,
        skip_bad=ft.skip_bad_examples,
    )  # fmt: skip
    train, train_counts = build_examples(
        tokenizer, template, [conversations[i] for i in train_ids],
        where=[read.where[i] for i in train_ids], **kw,
    )  # fmt: skip
    if not train:
        raise DataError(
            f"no training example is left of {len(train_ids)} records ({dict(train_counts)}): "
            + _why_none_left(train_counts, cfg.data.seq_len)
        )
    common = dict(
        seq_len=cfg.data.seq_len, batch_size=cfg.data.micro_batch_size, packing=ft.packing,
        seed=cfg.data.seed, rank=rank, world_size=dp, vocab_size=tokenizer.vocab_size,
        pad_multiple=math.lcm(8, cfg.parallel.tp),
    )  # fmt: skip
    loader = FinetuneLoader(train, split="train", **common)
    report = {"read": read.to_dict(), "train": dict(train_counts), "template": template.name,
              "packing": ft.packing, "train_on_prompt": ft.train_on_prompt}  # fmt: skip
    val_loader = None
    if len(val_ids):
        val, val_counts = build_examples(
            tokenizer, template, [conversations[i] for i in val_ids],
            where=[read.where[i] for i in val_ids], **kw,
        )  # fmt: skip
        report["val"] = dict(val_counts)
        if not val:
            from llamaforge.train.preflight import ConfigWarning

            warnings.warn(
                f"finetune.val_fraction holds out {len(val_ids)} records but none of them is left "
                f"as an example ({dict(val_counts)}): this run has no validation loss; "
                + _why_none_left(val_counts, cfg.data.seq_len),
                ConfigWarning,
                stacklevel=2,
            )
        if val:
            val_loader = FinetuneLoader(
                val, split="val", max_batches=cfg.train.val_batches, **common
            )
    return DataPlan(loader, val_loader, report, template)


def _why_none_left(counts, seq_len: int) -> str:
    """What to change when the length rule or the template left no example."""
    if counts.get("dropped_too_long"):  # finetune.overlong = "drop"
        return (
            f"they are longer than data.seq_len = {seq_len} positions; raise data.seq_len (up "
            'to the model\'s max_seq_len), set finetune.overlong = "truncate" (keeps the '
            "prompt and the start of the response) or shorten the examples"
        )
    if counts.get("dropped_no_response_left"):  # truncated, and only prompt was left
        return (
            f"their prompts alone fill data.seq_len = {seq_len} positions, so truncation "
            "leaves no response to learn; raise data.seq_len (up to the model's max_seq_len) "
            "or shorten the prompts (instruction, input, system turn)"
        )
    if counts.get("not_in_template"):
        return "the template cannot show them; choose another finetune.template"
    return "check finetune.data and finetune.val_fraction"


def _pretraining_data(cfg: TrainConfig, rank: int, dp: int) -> DataPlan:
    from llamaforge.train.preflight import open_data

    return DataPlan(*open_data(cfg, rank, dp))


def apply_lora_if_enabled(model: nn.Module, cfg: TrainConfig) -> bool:
    """Wrap the target linears with LoRA adapters (``lora.enabled``); True if it did."""
    if not cfg.lora.enabled:
        return False
    try:
        from llamaforge.finetune.lora import LoRAConfig, apply_lora
    except ImportError:
        raise ConfigError(
            "lora.enabled = true but llamaforge.finetune.lora is not installed in this checkout"
        ) from None
    if cfg.parallel.tp > 1:
        raise ConfigError(
            "lora.enabled does not support parallel.tp > 1 (FSDP2 only); set parallel.tp=1"
        )
    apply_lora(model, LoRAConfig(**asdict(cfg.lora)))
    return True


def check_data_report_path(run_dir: Path) -> None:
    """Refuse, before anything is read or written, a folder where ``finetune_data.json`` goes.

    The same rule and words as the other run files get in
    :func:`llamaforge.train.preflight.check_output_paths`. A *file* of that
    name is never overwritten by a new run: it is one of
    :data:`llamaforge.train.fresh_run.RUN_OUTPUTS`, refused or moved aside
    before step 0 like ``metrics.jsonl``.
    """
    path = run_dir / DATA_REPORT
    if path.is_dir():
        raise ConfigError(
            f"{path} exists and is not a file, but the run writes its {DATA_REPORT} there; "
            "move it away or choose another train.run_dir"
        )


def write_data_report(run_dir: Path, report: dict[str, Any]) -> None:
    """``finetune_data.json``: records read, skipped by reason, truncated, dropped, kept.

    Written through a new temporary file and a rename
    (:func:`~llamaforge.umask.atomic_write_text`), so a failed write leaves the
    previous report whole and a link planted at a temp name is never followed.
    """
    if not report:
        return
    path = run_dir / DATA_REPORT
    try:
        atomic_write_text(path, json.dumps(report, indent=2))
    except OSError as error:
        raise LlamaforgeError(
            f"{path} cannot be written ({error.strerror or error}); move what is there away "
            "or choose another train.run_dir, then run the same command again"
        ) from None
