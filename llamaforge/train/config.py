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
* Integer fields accept integral floats (``total_tokens = 1e12``) because
  that is how people write token counts.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from llamaforge.errors import ConfigError
from llamaforge.model.config import PRESETS, ModelConfig, get_preset


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} numbers"
    if origin is list:
        return "a list of {path = ..., weight = ...} tables (or one path)"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check ``value`` against a type hint, converting only lossless cases."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = False
    if origin is Literal:
        ok = value in args
    elif origin is tuple and isinstance(value, list | tuple) and len(value) == len(args):
        return tuple(
            _coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    elif origin is list:
        if isinstance(value, str):
            value = [{"path": value}]
        if isinstance(value, list | tuple):
            return [_source(item, f"{name}[{i}]") for i, item in enumerate(value)]
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int and not isinstance(value, bool):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int)
    elif hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        value, ok = float(value), math.isfinite(value)
    elif hint is str:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"{name} must be {_describe(hint)}, got {value!r} ({type(value).__name__})"
        )
    return value


# Range rules, attached to fields as ``metadata={"rule": ...}`` by ``_f``.
_RULES: dict[str, Any] = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "a non-empty string": bool,
}


def _f(default: Any, rule: str | None = None) -> Any:
    return field(default=default, metadata={"rule": rule} if rule else {})


def _require(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


class _Section:
    """Coerces every field to its annotated type and checks its range rule."""

    _name: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            name = f"{self._name}.{f.name}"
            value = _coerce(getattr(self, f.name), hints[f.name], name)
            setattr(self, f.name, value)
            rule = f.metadata.get("rule")
            if rule is None:
                continue
            items = list(enumerate(value)) if isinstance(value, tuple) else [(None, value)]
            for i, item in items:  # a tuple's rule applies to each element
                _require(_RULES[rule](item), name if i is None else f"{name}[{i}]", rule, item)


@dataclass
class DataSource:
    """One token folder of the mixture; weights are relative (normalised by the loader)."""

    path: str
    weight: float = 1.0


def _source(item: Any, name: str) -> DataSource:
    if isinstance(item, DataSource):
        item = dataclasses.asdict(item)
    if not isinstance(item, Mapping) or "path" not in item:
        raise ConfigError(f"{name} must be a table {{path = ..., weight = ...}}, got {item!r}")
    unknown = sorted(set(item) - {"path", "weight"})
    if unknown:
        raise ConfigError(f"{name}: unknown field(s) {unknown}; allowed: path, weight")
    path = _coerce(item["path"], str, f"{name}.path")
    weight = _coerce(item.get("weight", 1.0), float, f"{name}.weight")
    _require(bool(path), f"{name}.path", "a non-empty path", path)
    _require(weight > 0, f"{name}.weight", "> 0", weight)
    return DataSource(path, weight)


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
        self.preset = _coerce(self.preset, str, "model.preset")
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
            self.overrides[key] = _coerce(value, hints[key], f"model.{key}")
        self.build()

    def build(self) -> ModelConfig:
        return get_preset(self.preset, **self.overrides)


@dataclass
class OptimConfig(_Section):
    """AdamW and its schedule (§2.2). See ``llamaforge.train.optim`` for the decay groups."""

    _name = "optim"
    lr: float = _f(3e-4, "> 0")
    betas: tuple[float, float] = _f((0.9, 0.95), "in [0, 1)")
    eps: float = _f(1e-5, "> 0")
    weight_decay: float = _f(0.1, ">= 0")
    grad_clip: float = _f(1.0, ">= 0")  # max global L2 norm; 0 disables clipping
    warmup_steps: int = _f(2000, ">= 0")
    min_lr_ratio: float = _f(0.1, "in [0, 1]")  # the cosine ends at min_lr_ratio * lr
    decay_embeddings: bool = True
    decay_norms: bool = False


@dataclass
class DataConfig(_Section):
    _name = "data"
    sources: list[DataSource] = field(default_factory=list)
    val_fraction: float = _f(0.01, "in [0, 1)")  # tail of each source held out
    seq_len: int = _f(2048, "> 0")
    batch_tokens: int = _f(4_194_304, "> 0")  # global batch in tokens (4M = 2**22, §2.2)
    micro_batch_size: int = _f(1, "> 0")  # sequences per forward pass per data-parallel rank
    seed: int = _f(0, ">= 0")  # data order and mixture draws
    tokenizer: str = ""  # path to the SentencePiece model


@dataclass
class TrainSection(_Section):
    _name = "train"
    run_dir: str = _f("runs/llama", "a non-empty string")  # metrics.jsonl, TensorBoard, report
    total_tokens: int = _f(1_000_000_000_000, ">= 0")
    max_steps: int = _f(0, ">= 0")  # > 0 overrides total_tokens
    precision: Literal["bf16", "fp32"] = "bf16"
    activation_checkpointing: Literal["none", "full", "selective"] = "none"
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = _f(0, ">= 0")  # model initialisation
    max_nonfinite_steps: int = _f(5, "> 0")  # consecutive skipped (NaN/inf) steps tolerated
    val_every_steps: int = _f(1000, ">= 0")  # 0 = only at the end
    val_batches: int = _f(20, "> 0")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.total_tokens == 0 and self.max_steps == 0:
            raise ConfigError("set train.total_tokens or train.max_steps (both are 0)")


@dataclass
class CheckpointConfig(_Section):
    _name = "checkpoint"
    dir: str = ""  # "" = <train.run_dir>/checkpoints
    every_steps: int = _f(1000, ">= 0")  # 0 = only at the end
    keep_last: int = _f(3, ">= 0")  # 0 = keep all
    # "auto" (latest valid checkpoint if any), "never", or a checkpoint path
    resume: str = _f("auto", "a non-empty string")


@dataclass
class LogConfig(_Section):
    _name = "log"
    every_steps: int = _f(1, "> 0")  # JSONL/TensorBoard rows; the progress bar shows every step
    jsonl: bool = True
    tensorboard: bool = True
    # For MFU; 0 = detect (see llamaforge.train.metrics.detect_peak_flops).
    peak_flops_per_device: float = _f(0.0, ">= 0")
    # For the report's energy estimate (paper §2.5); 0 = 400 W on GPU (the paper's
    # A100 figure), 65 W on CPU (see llamaforge.train.report).
    device_power_w: float = _f(0.0, ">= 0")


@dataclass
class ParallelConfig(_Section):
    """Data- and tensor-parallel degrees; dp * tp == world size is checked at launch."""

    _name = "parallel"
    dp: int = _f(1, ">= 1")
    tp: int = _f(1, ">= 1")


_SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "optim": OptimConfig,
    "data": DataConfig,
    "train": TrainSection,
    "checkpoint": CheckpointConfig,
    "log": LogConfig,
    "parallel": ParallelConfig,
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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Checks that span sections (each section checks its own fields)."""
        model, data = self.model_config, self.data
        if data.seq_len > model.max_seq_len:
            raise ConfigError(
                f"data.seq_len ({data.seq_len}) exceeds model.max_seq_len ({model.max_seq_len}); "
                "lower data.seq_len or set model.max_seq_len"
            )
        if model.n_heads % self.parallel.tp:
            raise ConfigError(
                f"model.n_heads ({model.n_heads}) must be divisible by parallel.tp ({self.parallel.tp})"
            )
        per_pass = self.micro_batch_tokens * self.parallel.dp
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
        except tomllib.TOMLDecodeError:
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
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    source = str(path) + (f" (with overrides {' '.join(overrides)})" if overrides else "")
    try:
        data = apply_overrides(data, overrides)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return TrainConfig.from_dict(data, source=source)
