"""Typed, range-checked dataclass fields for the TOML configuration sections.

TOML gives ints, floats, strings, lists and tables; these helpers check each
value against its field's type hint (converting only lossless cases, such as
``1e12`` for an integer token count) and its range rule, and raise a
``ConfigError`` naming the field and what it accepts.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from llamaforge.errors import ConfigError


def describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} numbers"
    if origin is list:
        return "a list of {path = ..., weight = ...} tables (or one path)"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Check ``value`` against a type hint, converting only lossless cases."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = False
    if origin is Literal:
        ok = value in args
    elif origin is tuple and isinstance(value, list | tuple) and len(value) == len(args):
        return tuple(
            coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    elif origin is list:
        if isinstance(value, str):
            value = [{"path": value}]
        if isinstance(value, list | tuple):
            return [source_entry(item, f"{name}[{i}]") for i, item in enumerate(value)]
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
            f"{name} must be {describe(hint)}, got {value!r} ({type(value).__name__})"
        )
    return value


# Range rules, attached to fields as ``metadata={"rule": ...}`` by ``_f``.
_RULES: dict[str, Any] = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    ">= -1": lambda v: v >= -1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "a non-empty string": bool,
}


def field_with_rule(default: Any, rule: str | None = None) -> Any:
    return field(default=default, metadata={"rule": rule} if rule else {})


def require(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


class Section:
    """Coerces every field to its annotated type and checks its range rule."""

    _name: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            name = f"{self._name}.{f.name}"
            value = coerce(getattr(self, f.name), hints[f.name], name)
            setattr(self, f.name, value)
            rule = f.metadata.get("rule")
            if rule is None:
                continue
            items = list(enumerate(value)) if isinstance(value, tuple) else [(None, value)]
            for i, item in items:  # a tuple's rule applies to each element
                require(_RULES[rule](item), name if i is None else f"{name}[{i}]", rule, item)


@dataclass
class DataSource:
    """One token folder of the mixture; weights are relative (normalised by the loader)."""

    path: str
    weight: float = 1.0


def source_entry(item: Any, name: str) -> DataSource:
    if isinstance(item, DataSource):
        item = dataclasses.asdict(item)
    if not isinstance(item, Mapping) or "path" not in item:
        raise ConfigError(f"{name} must be a table {{path = ..., weight = ...}}, got {item!r}")
    unknown = sorted(set(item) - {"path", "weight"})
    if unknown:
        raise ConfigError(f"{name}: unknown field(s) {unknown}; allowed: path, weight")
    path = coerce(item["path"], str, f"{name}.path")
    weight = coerce(item.get("weight", 1.0), float, f"{name}.weight")
    require(bool(path), f"{name}.path", "a non-empty path", path)
    require(weight > 0, f"{name}.weight", "> 0", weight)
    return DataSource(path, weight)
