"""``data.mixture``: a training config reads the mixture ``llamaforge data build`` wrote.

Kept apart from the config dataclasses because it is file handling, not a
hyper-parameter: it turns one path into the ``[[data.sources]]`` and
``tokenizer`` that file lists, before the config is validated.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from llamaforge.errors import ConfigError


def use_mixture_file(data: dict[str, Any]) -> dict[str, Any]:
    """Replace ``data.mixture = "mixture.toml"`` by the sources and tokenizer that file lists.

    ``llamaforge data build`` writes ``mixture.toml`` (token folders with the
    Table 1 weights); pointing a training config at it keeps one source of
    truth for the mixture instead of a copy that can drift. Giving both
    ``mixture`` and ``sources`` is an error. An explicit ``data.tokenizer``
    wins over the mixture's.
    """
    table = dict(data.get("data") or {})
    mixture = table.pop("mixture", None)
    if mixture is None:
        return data
    if "sources" in table:
        raise ConfigError("[data] gives both mixture and sources; keep one")
    path = Path(str(mixture))
    try:
        with path.open("rb") as handle:
            listed = tomllib.load(handle).get("data", {})
    except IsADirectoryError:
        raise ConfigError(f"data.mixture {path} is a folder; name the mixture.toml in it") from None
    except RecursionError:
        raise ConfigError(f"data.mixture {path} is not valid TOML: nested too deeply") from None
    except FileNotFoundError:
        raise ConfigError(
            f"data.mixture = {str(mixture)!r} does not exist; `llamaforge data build` writes "
            "OUTPUT/mixture.toml"
        ) from None
    except OSError as error:
        raise ConfigError(f"data.mixture {path} cannot be read ({error})") from None
    except ValueError as error:  # TOMLDecodeError, not UTF-8, an integer past the digit limit
        raise ConfigError(f"data.mixture {path} is not valid TOML: {error}") from None
    if not isinstance(listed, dict):
        raise ConfigError(f"data.mixture {path}: data must be a table, got {listed!r}")
    if not listed.get("sources"):
        raise ConfigError(f"data.mixture {path} lists no [[data.sources]]")
    table["sources"] = listed["sources"]
    if not table.get("tokenizer") and listed.get("tokenizer"):
        table["tokenizer"] = listed["tokenizer"]
    return {**data, "data": table}
