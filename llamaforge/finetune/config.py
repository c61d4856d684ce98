"""The ``[finetune]`` and ``[lora]`` sections of a training config.

Finetuning is on when ``finetune.data`` is set: the trainer then reads
instruction examples instead of token folders (``data.sources`` is ignored),
``data.seq_len`` is the longest example (``max_seq_len``) and a packed row's
width, and ``data.batch_tokens / data.seq_len`` is the global batch in rows
(one example per row unpacked, several packed). ``finetune.epochs > 0`` sets
the number of steps when ``train.max_steps`` is 0, and ``finetune.warmup_ratio > 0``
replaces ``optim.warmup_steps`` by that share of the run's steps (recipes give
warm-up as a fraction, and the step count is only known once the data is read).

The ``[lora]`` fields mirror ``llamaforge.finetune.lora.LoRAConfig``, which
the trainer builds from them when ``lora.enabled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llamaforge.errors import ConfigError
from llamaforge.train.config_fields import Section, coerce, field_with_rule


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
    epochs: float = field_with_rule(0.0, ">= 0")  # > 0 and train.max_steps = 0: steps from epochs
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
