"""The ``[finetune]`` and ``[lora]`` sections of a training config.

Finetuning is on when ``finetune.data`` is set: the trainer then reads
instruction examples instead of token folders (``data.sources`` is ignored),
``data.seq_len`` is the longest example (``max_seq_len``) and a packed row's
width, and ``data.batch_tokens / data.seq_len`` is the global batch in rows
(one example per row unpacked, several packed). ``finetune.warmup_ratio > 0``
replaces ``optim.warmup_steps`` by that share of the run's steps (recipes give
warm-up as a fraction, and the step count is only known once the data is read).

**Run length** (:func:`settle_run_length`, at config load): a finetuning run
is as long as exactly one of

* ``finetune.epochs`` (> 0, with ``train.max_steps = 0``): passes over the
  training examples, the unit recipes use (Alpaca: 3); the trainer turns
  it into steps once the data is read, and the final line and the progress
  bar show that count;
* ``train.max_steps`` (> 0, with ``finetune.epochs = 0``): that many steps.

Both set at once is refused (which one was meant is a guess), and so is a
``train.total_tokens`` other than its default: a pretraining budget of
tokens is no finetuning length, and it is never used. Neither set means
:data:`DEFAULT_EPOCHS` = 3 epochs, the default of Alpaca, of Hugging Face's
``TrainingArguments`` and of TRL; it is written into ``finetune.epochs``, so
checkpoints record it and a resume compares it.

The ``[lora]`` fields mirror ``llamaforge.finetune.lora.LoRAConfig``, which
the trainer builds from them when ``lora.enabled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from llamaforge.errors import ConfigError
from llamaforge.train.config_fields import Section, coerce, field_with_rule

DEFAULT_EPOCHS = 3.0  # a finetuning run that sets neither finetune.epochs nor train.max_steps


@dataclass
class FinetuneSection(Section):
    _name = "finetune"
    # JSON / JSON-lines file(s), comma-separated, or a Hugging Face datasets name; "" = pretraining
    data: str = ""
    dataset_split: str = field_with_rule("train", "a non-empty string")  # for a datasets name
    schema: Literal["auto", "alpaca", "messages", "flan"] = "auto"
    template: str = field_with_rule("alpaca", "a non-empty string")  # shipped name or TOML path
    train_on_prompt: bool = False  # score prompt tokens too
    packing: bool = True  # several examples per row, block-diagonal attention
    overlong: Literal["truncate", "drop"] = "truncate"  # examples over data.seq_len positions
    val_fraction: float = field_with_rule(0.02, "in [0, 1)")  # held-out examples
    skip_bad_examples: bool = False  # skip and count bad records instead of stopping
    init: str = ""  # checkpoint to start from (native, HF or Meta folder); "" = random init
    epochs: float = field_with_rule(0.0, ">= 0")  # the run length; see settle_run_length
    # > 0: optim.warmup_steps = ceil(warmup_ratio * steps), e.g. Alpaca's 3 %
    warmup_ratio: float = field_with_rule(0.0, "in [0, 1)")

    @property
    def enabled(self) -> bool:
        return bool(self.data)


@dataclass
class LoraSection:
    """Mirrors ``LoRAConfig``; checked here too so a bad value fails at config load."""

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["wq", "wv"])

    def __post_init__(self) -> None:
        self.enabled = coerce(self.enabled, bool, "lora.enabled")
        self.rank = coerce(self.rank, int, "lora.rank")
        self.alpha = coerce(self.alpha, float, "lora.alpha")
        self.dropout = coerce(self.dropout, float, "lora.dropout")
        for ok, name, rule, value in (
            (self.rank >= 1, "lora.rank", ">= 1", self.rank),
            (self.alpha > 0, "lora.alpha", "> 0", self.alpha),
            (0 <= self.dropout < 1, "lora.dropout", "in [0, 1)", self.dropout),
        ):
            if not ok:
                raise ConfigError(f"{name} must be {rule}, got {value!r}")
        targets = self.target_modules
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        if not isinstance(targets, list | tuple) or not targets:
            raise ConfigError(
                f"lora.target_modules must be a non-empty list of names, got {targets!r}"
            )
        self.target_modules = [
            coerce(t, str, f"lora.target_modules[{i}]") for i, t in enumerate(targets)
        ]


def settle_run_length(cfg: Any) -> None:
    """Make a finetuning run's length one explicit field (the rule is in the module docstring).

    ``cfg`` is the whole ``TrainConfig`` (the rule spans ``[train]`` and
    ``[finetune]``); nothing changes for pretraining.
    """
    ft, train = cfg.finetune, cfg.train
    if not ft.enabled:
        return
    default_tokens = next(f.default for f in fields(train) if f.name == "total_tokens")
    if train.total_tokens != default_tokens:
        raise ConfigError(
            f"train.total_tokens = {train.total_tokens} does not apply to finetuning, whose "
            "length is finetune.epochs (passes over the examples) or train.max_steps; "
            "remove train.total_tokens"
        )
    if train.max_steps > 0 and ft.epochs > 0:
        raise ConfigError(
            f"train.max_steps = {train.max_steps} and finetune.epochs = {ft.epochs:g} both set "
            f"the run length; keep one: train.max_steps=0 to train {ft.epochs:g} epochs, or "
            f"finetune.epochs=0 to train {train.max_steps} steps"
        )
    if train.max_steps == 0 and ft.epochs == 0:
        ft.epochs = DEFAULT_EPOCHS
