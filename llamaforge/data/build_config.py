"""The data-build TOML: where raw dumps are, how to filter them, and the Table 1 mixture.

One file describes a whole build (``configs/data-llama.toml`` for the paper,
``configs/data-sample.toml`` for the sample dumps)::

    [build]       output folder, workers, executor, tokenizer, shard size, seed
    [mixture]     planned total tokens (1.4e12 in the paper)
    [sources.X]   input, weight, epochs + the source's own settings

Decisions where the spec is silent:

* **Relative paths resolve against the TOML file's folder** (output, tokenizer,
  inputs and the sources' model files), so a config and the data beside it
  can be moved together and the build does not depend on the working folder.
* ``weight`` is the Table 1 sampling proportion in any unit (percent in the
  shipped configs); weights are normalised, as the trainer's loader does.
  ``epochs`` is informational: the report sets it beside the epochs the
  planned total tokens would give (weight x total / tokens).
* Final shards are cut at ``shard_docs`` documents or ``shard_bytes`` bytes of
  text, whichever comes first (0 disables a limit; at least one must be set),
  the way RedPajama/Dolma cut theirs.
* ``seed`` orders documents for tokenization (shard order and a bounded
  shuffle buffer), because the loader holds out the *tail* of every source
  for validation: without a shuffle the validation set would be one input file.
* **The output folder and the inputs must not overlap** (after resolving
  symlinks): an output inside an input folder (or equal to it), or an input
  inside the output, is refused. Otherwise a re-run lists the build's own
  shards and reports as new input and the data grows with every run.
  Refusing is clearer than silently skipping the output while listing.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaforge.data.sources.registry import SOURCES
from llamaforge.errors import ConfigError

EXECUTORS = ("local", "dask")
PIPELINE_KEYS = ("input", "weight", "epochs")


def _number(table: dict[str, Any], section: str, key: str, default: Any, kind: type) -> Any:
    value = table.get(key, default)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # "1e9" is how people write sizes
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"[{section}].{key} must be {what}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"[{section}].{key} must be finite, got {value!r}")
    return value


def _string(table: dict[str, Any], section: str, key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"[{section}].{key} must be a string, got {value!r}")
    return value


def _no_unknown(table: dict[str, Any], section: str, known: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"[{section}]: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )


def _at_least(value: float, minimum: float, section: str, key: str) -> None:
    if value < minimum:
        raise ConfigError(f"[{section}].{key} must be >= {minimum}, got {value!r}")


def _resolve(base_dir: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else base_dir / path


@dataclass
class BuildSection:
    output: Path
    workers: int = 1
    executor: str = "local"
    scheduler: str = ""  # dask scheduler address; "" = a LocalCluster of `workers` processes
    tokenizer: Path | None = None  # None: stop after the filtered shards (no tokens, no mixture)
    shard_docs: int = 0
    shard_bytes: int = 256 << 20
    shard_tokens: int = 100_000_000
    shuffle_buffer: int = 10_000
    seed: int = 0

    KEYS = tuple(__annotations__)  # the TOML keys are exactly the fields

    @classmethod
    def from_table(cls, table: dict[str, Any], base_dir: Path) -> BuildSection:
        _no_unknown(table, "build", cls.KEYS)
        output = _string(table, "build", "output", "")
        if not output:
            raise ConfigError("[build].output is required: the folder the build writes into")
        tokenizer = _string(table, "build", "tokenizer", "")
        section = cls(
            output=_resolve(base_dir, output),
            workers=_number(table, "build", "workers", 1, int),
            executor=_string(table, "build", "executor", "local"),
            scheduler=_string(table, "build", "scheduler", ""),
            tokenizer=_resolve(base_dir, tokenizer) if tokenizer else None,
            shard_docs=_number(table, "build", "shard_docs", 0, int),
            shard_bytes=_number(table, "build", "shard_bytes", 256 << 20, int),
            shard_tokens=_number(table, "build", "shard_tokens", 100_000_000, int),
            shuffle_buffer=_number(table, "build", "shuffle_buffer", 10_000, int),
            seed=_number(table, "build", "seed", 0, int),
        )
        section.validate()
        return section

    def validate(self) -> None:
        _at_least(self.workers, 1, "build", "workers")
        if self.executor not in EXECUTORS:
            raise ConfigError(
                f"[build].executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}"
            )
        if self.scheduler and self.executor != "dask":
            raise ConfigError('[build].scheduler is only used with executor = "dask"')
        for key in ("shard_docs", "shard_bytes", "shuffle_buffer", "seed"):
            _at_least(getattr(self, key), 0, "build", key)
        _at_least(self.shard_tokens, 1, "build", "shard_tokens")
        if self.shard_docs == 0 and self.shard_bytes == 0:
            raise ConfigError("[build]: set shard_docs or shard_bytes (> 0) to cut final shards")


@dataclass
class SourceSection:
    name: str
    inputs: list[Path]
    weight: float
    epochs: float  # Table 1's epochs column; 0 = not given
    settings: dict[str, Any] = field(default_factory=dict)  # the source's own fields

    @classmethod
    def from_table(cls, name: str, table: Any, base_dir: Path) -> SourceSection:
        section = f"sources.{name}"
        if name not in SOURCES:
            raise ConfigError(f"[{section}]: unknown source {name!r}; known: {', '.join(SOURCES)}")
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table, got {table!r}")
        raw = table.get("input")
        items = [raw] if isinstance(raw, str) else raw
        if not items or not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            raise ConfigError(f"[{section}].input must be a path or a list of paths, got {raw!r}")
        weight = _number(table, section, "weight", None, float)
        if weight <= 0:
            raise ConfigError(f"[{section}].weight must be > 0, got {weight!r}")
        epochs = _number(table, section, "epochs", 0.0, float)
        _at_least(epochs, 0, section, "epochs")
        settings = {k: v for k, v in table.items() if k not in PIPELINE_KEYS}
        return cls(name, [_resolve(base_dir, p) for p in items], weight, epochs, settings)


@dataclass
class DataBuildConfig:
    build: BuildSection
    total_tokens: float  # [mixture].total_tokens: the tokens the training run will see
    sources: list[SourceSection]
    base_dir: Path  # folder of the TOML file: sources' relative paths resolve against it

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | Path) -> DataBuildConfig:
        base = Path(base_dir).resolve()
        _no_unknown(data, "data config", ("build", "mixture", "sources"))
        for key in ("build", "mixture", "sources"):
            if not isinstance(data.get(key, {}), dict):
                raise ConfigError(f"[{key}] must be a table")
        mixture = data.get("mixture", {})
        _no_unknown(mixture, "mixture", ("total_tokens",))
        total = _number(mixture, "mixture", "total_tokens", 1.4e12, float)
        if total <= 0:
            raise ConfigError(f"[mixture].total_tokens must be > 0, got {total!r}")
        tables = data.get("sources", {})
        if not tables:
            raise ConfigError(f"no [sources.NAME] tables; add at least one of {', '.join(SOURCES)}")
        sources = [SourceSection.from_table(n, t, base) for n, t in tables.items()]
        build = BuildSection.from_table(data.get("build", {}), base)
        for source in sources:
            for path in source.inputs:
                check_not_overlapping(build.output, path, source.name)
        return cls(build, total, sources, base)


def check_not_overlapping(output: Path, path: Path, source: str) -> None:
    """Refuse an input that holds the output folder, or lies inside it (module docstring)."""
    out, real = Path(os.path.realpath(output)), Path(os.path.realpath(path))
    if out.is_relative_to(real):
        raise ConfigError(
            f"[build].output {output} is inside [sources.{source}].input {path}: a re-run would "
            "read the build's own output as input; choose an output folder outside the inputs"
        )
    if real.is_relative_to(out):
        raise ConfigError(
            f"[sources.{source}].input {path} is inside [build].output {output}: the build "
            "would read its own output; keep the inputs outside the output folder"
        )


def load_build_config(path: str | Path) -> DataBuildConfig:
    """Read and validate a data TOML; errors name the file and ``[section].field``.

    TOML is UTF-8 by definition, so other bytes are refused with the position of the first
    bad byte. ``tomllib`` turns integers with its own ``int()``, so one with more digits than
    Python's int-string limit (4300 by default) raises a plain ``ValueError``, not a
    ``TOMLDecodeError``: both are reported as invalid TOML.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"data config {path} does not exist; see configs/data-*.toml") from None
    except OSError as error:
        raise ConfigError(f"data config {path} cannot be read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}:{line} is not UTF-8 text ({error.reason} at byte {error.start}); "
            "TOML must be UTF-8, so save the file as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except ValueError as error:  # an integer past the int-string digit limit
        limit = sys.get_int_max_str_digits()
        long_number = re.search(rf"\d{{{limit + 1},}}", text)
        if long_number is None:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
        line = text.count("\n", 0, long_number.start()) + 1
        raise ConfigError(
            f"{path}:{line} is not valid TOML: an integer has more than {limit} digits, more "
            "than any setting needs; fix the number"
        ) from None
    except RecursionError:
        raise ConfigError(f"{path} is not valid TOML: nested too deeply") from None
    try:
        return DataBuildConfig.from_dict(data, path.parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
