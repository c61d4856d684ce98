"""The training configuration: one dataclass per TOML section, one field per knob.

A run is described by a TOML file (``configs/*.toml``) plus command-line
overrides ``section.field=value``; every hyper-parameter lives in exactly one
field here, and everything derived from them (gradient accumulation, number of
steps) is a property, never a second field that could disagree.

Decisions where the paper is silent:

* The defaults are the LLaMA-7B recipe (§2.2-2.4), so a file only lists what
  differs; the shipped configs still spell every paper value out.
* ``optim.eps`` is 1e-5, the value the Llama 2 paper (§2.2) gives for the
  optimizer it says it takes over from LLaMA 1.
* ``train.max_steps`` > 0 wins over ``train.total_tokens``: it is the more
  specific request (``train.max_steps=20`` turns a 7B config into a smoke test
  without also clearing ``total_tokens``). Otherwise the run takes
  ``ceil(total_tokens / batch_tokens)`` steps, so at least ``total_tokens``
  are seen. The learning-rate schedule always spans :attr:`max_steps`.
* TOML has no null, so 0 or "" means "unset" where a field is optional.
* Paths are kept as written and resolved against the working directory at run
  time, as torchtitan and litgpt do; ``checkpoint.dir`` "" means
  ``<train.run_dir>/checkpoints``.
* A config file must have a ``[model]`` table (``load_train_config`` refuses
  one without): the 7B default is too costly to be chosen by omission.
* Integer fields accept integral floats (``total_tokens = 1e12``) because
  that is how people write token counts.
* One optimizer step accumulates at most :data:`MAX_ACCUMULATION` (2**20)
  micro-batches per rank: the paper's 4M-token batch at 2048 x 1 is 2048 of
  them on one GPU, and a step is the unit of checkpoints and of honouring
  SIGTERM, so a mistyped ``batch_tokens = 1e20`` is refused instead of starting
  a step that would never end.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llamaforge.errors import ConfigError
from llamaforge.finetune.config import FinetuneSection, LoraSection, settle_run_length
from llamaforge.model.config import PRESETS, ModelConfig, get_preset
from llamaforge.train.config_fields import DataSource, Section, coerce, field_with_rule
from llamaforge.train.mixture_file import use_mixture_file

MAX_ACCUMULATION = 2**20  # micro-batches per rank and optimizer step (module docstring)


@dataclass
class ModelSection:
    """A preset of ``llamaforge.model.config.PRESETS`` plus ``ModelConfig`` field overrides.

    Stored as the preset name and the overrides, not the expanded shape, so a
    config reads like what the user wrote (``preset = "7B"``, ``vocab_size = 8000``).
    A ``[model]`` table without ``preset`` starts from 7B, like the other defaults.
    """

    preset: str = "7B"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.preset = coerce(self.preset, str, "model.preset")
        self.overrides = dict(self.overrides)
        if self.preset not in PRESETS:
            raise ConfigError(
                f"model.preset {self.preset!r} is unknown; choose one of {sorted(PRESETS)}"
            )
        hints = typing.get_type_hints(ModelConfig)
        for key, value in self.overrides.items():
            if key not in hints:
                raise ConfigError(
                    f"unknown field model.{key}; allowed: preset, {', '.join(sorted(hints))}"
                )
            self.overrides[key] = coerce(value, hints[key], f"model.{key}")
        self.build()

    def build(self) -> ModelConfig:
        return get_preset(self.preset, **self.overrides)


@dataclass
class OptimConfig(Section):
    """AdamW and its schedule (§2.2). See ``llamaforge.train.optim`` for the decay groups."""

    _name = "optim"
    lr: float = field_with_rule(3e-4, "> 0")
    betas: tuple[float, float] = field_with_rule((0.9, 0.95), "in [0, 1)")
    eps: float = field_with_rule(1e-5, "> 0")
    weight_decay: float = field_with_rule(0.1, ">= 0")
    grad_clip: float = field_with_rule(1.0, ">= 0")  # max global L2 norm; 0 disables clipping
    warmup_steps: int = field_with_rule(2000, ">= 0")
    min_lr_ratio: float = field_with_rule(0.1, "in [0, 1]")  # the cosine ends at min_lr_ratio * lr
    decay_embeddings: bool = True
    decay_norms: bool = False
    # "fused": one kernel for all parameters (default wherever PyTorch has it: CPU, CUDA);
    # "foreach": multi-tensor ops; "for-loop": one parameter at a time (the reference).
    # They agree to float rounding; see llamaforge.train.optim.
    implementation: Literal["fused", "foreach", "for-loop"] = "fused"


@dataclass
class DataConfig(Section):
    _name = "data"
    sources: list[DataSource] = field(default_factory=list)
    val_fraction: float = field_with_rule(0.01, "in [0, 1)")  # tail of each source held out
    seq_len: int = field_with_rule(2048, "> 0")
    batch_tokens: int = field_with_rule(
        4_194_304, "> 0"
    )  # global batch in tokens (4M = 2**22, §2.2)
    micro_batch_size: int = field_with_rule(
        1, "> 0"
    )  # sequences per forward pass per data-parallel rank
    seed: int = field_with_rule(0, ">= 0")  # data order and mixture draws
    tokenizer: str = ""  # path to the SentencePiece model


@dataclass
class TrainSection(Section):
    _name = "train"
    run_dir: str = field_with_rule(
        "runs/llama", "a non-empty string"
    )  # metrics.jsonl, TensorBoard, report
    total_tokens: int = field_with_rule(1_000_000_000_000, ">= 0")
    max_steps: int = field_with_rule(0, ">= 0")  # > 0 overrides total_tokens
    precision: Literal["bf16", "fp32"] = "bf16"
    activation_checkpointing: Literal["none", "full", "selective"] = "none"
    compile: bool = False
    # "inductor": generated kernels (speed); "aot_eager"/"eager": tracing only (fast to
    # compile; tests and debugging). Distributed runs compile per block.
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = field_with_rule(0, ">= 0")  # model initialisation
    max_nonfinite_steps: int = field_with_rule(
        5, "> 0"
    )  # consecutive skipped (NaN/inf) steps tolerated
    val_every_steps: int = field_with_rule(1000, ">= 0")  # 0 = only at the end
    val_batches: int = field_with_rule(20, "> 0")
    # Refuse a model that cannot fit in memory before allocating it (llamaforge.train.preflight).
    check_memory: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.total_tokens == 0 and self.max_steps == 0:
            raise ConfigError("set train.total_tokens or train.max_steps (both are 0)")


@dataclass
class CheckpointConfig(Section):
    _name = "checkpoint"
    dir: str = ""  # "" = <train.run_dir>/checkpoints
    every_steps: int = field_with_rule(1000, ">= 0")  # 0 = only at the end
    keep_last: int = field_with_rule(3, ">= 0")  # 0 = keep all
    # "auto" (latest valid checkpoint if any), "never", or a checkpoint path
    resume: str = field_with_rule("auto", "a non-empty string")
    # Resuming with a changed optim.*, model.*, data.*, seed, run length, or finetune/LoRA
    # setting is refused unless this is true (llamaforge.train.config_change decides per field).
    allow_config_change: bool = False
    # With resume = "auto" and every checkpoint damaged: refuse (false) or set them aside as
    # damaged-step_* and start from step 0 (true). Damaged checkpoints are never deleted.
    restart_over_damaged: bool = False
    # resume = "never" over a folder holding an earlier run: refuse (false) or move that run
    # into <run_dir>/previous-<timestamp>/ and start from step 0 (true); see train.fresh_run.
    fresh_run: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fresh_run and self.resume != "never":
            raise ConfigError(
                f"checkpoint.fresh_run = true starts a new run, but checkpoint.resume = "
                f"{self.resume!r}; set checkpoint.resume = 'never' (or drop --fresh-run)"
            )


@dataclass
class LogConfig(Section):
    _name = "log"
    every_steps: int = field_with_rule(
        1, "> 0"
    )  # JSONL/TensorBoard rows; the progress bar shows every step
    jsonl: bool = True
    tensorboard: bool = True
    # For MFU; 0 = detect (see llamaforge.train.metrics.detect_peak_flops).
    peak_flops_per_device: float = field_with_rule(0.0, ">= 0")
    # For the report's energy estimate (paper §2.5); 0 = 400 W on GPU (the paper's
    # A100 figure), 65 W on CPU (see llamaforge.train.report).
    device_power_w: float = field_with_rule(0.0, ">= 0")


@dataclass
class ParallelConfig(Section):
    """Data- and tensor-parallel degrees; dp * tp == world size is checked at launch."""

    _name = "parallel"
    dp: int = field_with_rule(1, ">= 1")
    tp: int = field_with_rule(1, ">= 1")


@dataclass
class BenchmarksConfig(Section):
    """Benchmarks on the live model during training, like the paper's Figure 2.

    Off unless ``tasks`` names some. ``llamaforge train`` turns this section
    into a :class:`llamaforge.eval.during_training.TaskEvalHook`; the numbers
    equal ``llamaforge eval`` on the saved checkpoint with the same settings.
    """

    _name = "benchmarks"
    tasks: str = ""  # as `llamaforge eval --tasks`: "hellaswag,piqa", a group, or "all"
    every_steps: int = field_with_rule(0, ">= 0")  # 0 = before the first and after the last step
    data_dir: str = ""  # <data_dir>/<task>/<split>.jsonl; "" = Hugging Face datasets
    limit: int = field_with_rule(0, ">= 0")  # documents per task; 0 = all
    shots: int = field_with_rule(-1, ">= -1")  # -1 = each task's paper default
    batch_size: int = field_with_rule(8, "> 0")


_SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "optim": OptimConfig,
    "data": DataConfig,
    "train": TrainSection,
    "checkpoint": CheckpointConfig,
    "log": LogConfig,
    "parallel": ParallelConfig,
    "benchmarks": BenchmarksConfig,
    "finetune": FinetuneSection,
    "lora": LoraSection,
}


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    benchmarks: BenchmarksConfig = field(default_factory=BenchmarksConfig)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    lora: LoraSection = field(default_factory=LoraSection)

    def __post_init__(self) -> None:
        # Finetuning from finetune.init: the model is the checkpoint's, checked when loaded.
        self.validate(skip_model=self.finetune.enabled and bool(self.finetune.init))
        settle_run_length(self)  # finetuning: finetune.epochs or train.max_steps, one of them

    def validate(self, model: ModelConfig | None = None, *, skip_model: bool = False) -> None:
        """Checks that span sections (each section checks its own fields).

        ``model`` is the model the run trains (default: ``[model]``'s);
        ``skip_model`` leaves out the checks that need it.
        """
        if not skip_model:
            self._validate_model(model or self.model_config)
        self._validate_batch()

    def _validate_model(self, model: ModelConfig) -> None:
        data = self.data
        if data.seq_len > model.max_seq_len:
            raise ConfigError(
                f"data.seq_len ({data.seq_len}) exceeds model.max_seq_len ({model.max_seq_len}); "
                "lower data.seq_len or set model.max_seq_len"
            )
        tp = self.parallel.tp
        split_by_tp = {  # what tensor and sequence parallelism cut into tp equal pieces
            "model.n_heads": model.n_heads,
            "the FFN hidden size (from model.dim and model.multiple_of)": model.ffn_hidden_dim,
            "model.vocab_size": model.vocab_size,
            "data.seq_len (sequence parallelism shards it)": data.seq_len,
        }
        for name, value in split_by_tp.items():
            if value % tp:
                raise ConfigError(f"{name} ({value}) must be divisible by parallel.tp ({tp})")

    def _validate_batch(self) -> None:
        data = self.data
        per_pass = self.micro_batch_tokens * self.parallel.dp
        if data.batch_tokens > per_pass * MAX_ACCUMULATION:
            raise ConfigError(
                f"data.batch_tokens ({data.batch_tokens}) would accumulate "
                f"{data.batch_tokens // per_pass:,} micro-batches per optimizer step (at most "
                f"{MAX_ACCUMULATION:,}: a step is the unit of checkpoints and of stopping on "
                "SIGTERM); lower it (the paper's batch is 4,194,304 tokens) or raise "
                "data.micro_batch_size"
            )
        if data.batch_tokens % per_pass:
            lower = max(per_pass, data.batch_tokens // per_pass * per_pass)
            raise ConfigError(
                f"data.batch_tokens ({data.batch_tokens}) must be a multiple of data.seq_len * "
                f"data.micro_batch_size * parallel.dp = {data.seq_len} * "
                f"{data.micro_batch_size} * {self.parallel.dp} = {per_pass}; "
                f"e.g. set data.batch_tokens to {lower} or {lower + per_pass}"
            )

    @property
    def model_config(self) -> ModelConfig:
        return self.model.build()

    @property
    def micro_batch_tokens(self) -> int:
        """Tokens in one forward pass of one rank."""
        return self.data.seq_len * self.data.micro_batch_size

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches each rank accumulates per optimizer step."""
        return self.data.batch_tokens // (self.micro_batch_tokens * self.parallel.dp)

    @property
    def max_steps(self) -> int:
        """Steps of a pretraining run, or of a finetuning run that sets ``train.max_steps``.

        A finetuning run in ``finetune.epochs`` learns its step count from
        the data; ``Trainer.max_steps`` holds it.
        """
        if self.train.max_steps > 0:
            return self.train.max_steps
        return math.ceil(self.train.total_tokens / self.data.batch_tokens)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir or Path(self.train.run_dir) / "checkpoints")

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML/JSON types; ``from_dict(to_dict())`` gives back an equal config."""
        out: dict[str, Any] = {}
        for name in _SECTIONS:
            section = getattr(self, name)
            if name == "model":
                out[name] = {"preset": section.preset, **section.overrides}
            else:
                table = dataclasses.asdict(section)
                out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in table.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build and validate; errors name ``source`` (a file) and the field."""
        try:
            if not isinstance(data, Mapping):
                raise ConfigError(f"expected a table of sections, got {type(data).__name__}")
            unknown = sorted(set(data) - set(_SECTIONS))
            if unknown:
                raise ConfigError(
                    f"unknown section(s) {unknown}; allowed sections: {', '.join(_SECTIONS)}"
                )
            sections = {name: _section(name, data.get(name, {})) for name in _SECTIONS}
            return cls(**sections)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


def _section(name: str, table: Any) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{name}] must be a table, got {table!r}")
    section_cls = _SECTIONS[name]
    if name == "model":
        table = dict(table)
        return ModelSection(preset=table.pop("preset", "7B"), overrides=table)
    allowed = [f.name for f in dataclasses.fields(section_cls)]
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"allowed fields of [{name}]: {', '.join(allowed)}"
        )
    return section_cls(**table)


def _field_hint(section: str, name: str) -> Any:
    if section == "model":
        return str if name == "preset" else typing.get_type_hints(ModelConfig).get(name)
    return typing.get_type_hints(_SECTIONS[section]).get(name)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``section.field=value`` applied.

    The value is parsed as a TOML value (``3e-4``, ``true``, ``[0.9, 0.95]``,
    ``[{path="a", weight=2}]``) and falls back to the raw text, so
    ``model.preset=7B`` and ``train.device=cpu`` need no quotes; a string
    field always gets the raw text (``checkpoint.resume=100`` is a path).
    """
    merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name or "." in name:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        if section not in _SECTIONS:
            raise ConfigError(
                f"override {item!r}: unknown section [{section}]; allowed sections: "
                f"{', '.join(_SECTIONS)}"
            )
        raw = raw.strip()
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except (ValueError, RecursionError):  # not a TOML value (or one Python refuses to read)
            value = raw
        hint = _field_hint(section, name)
        is_text = hint is str or typing.get_origin(hint) is Literal
        if is_text and not isinstance(value, str):
            value = raw
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table, got {table!r}")
        table[name] = value
    return merged


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a TOML config, apply command-line overrides, validate everything."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; see configs/ for examples") from None
    except RecursionError:
        raise ConfigError(f"config {path} is not valid TOML: nested too deeply") from None
    except IsADirectoryError:
        raise ConfigError(
            f"config {path} is a folder; pass a TOML file such as configs/tiny-1m.toml"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"config file {path} cannot be read ({error.strerror or error})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8 TOML) file; pass a TOML config") from None
    except ValueError as error:  # TOMLDecodeError, or an integer past Python's digit limit
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    source = str(path) + (f" (with overrides {' '.join(overrides)})" if overrides else "")
    try:
        data = use_mixture_file(apply_overrides(data, overrides))
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    cfg = TrainConfig.from_dict(data, source=source)
    if "model" not in data:  # the 7B default is too costly to be picked by omission
        raise ConfigError(
            f'{source}: no [model] table; name the model, e.g. [model] preset = "tiny-1M" '
            f"(presets: {', '.join(PRESETS)})"
        )
    return cfg
