"""What made a build stage's output, so a re-run redoes exactly the outputs whose recipe changed.

A finished output of stage 1 (one input file's ``filtered/<key>.report.json``)
or stage 2 (a source's ``final/report.json``) records a *recipe*:

* ``stage`` and ``stage_version`` (:data:`STAGE_VERSIONS`, bumped when the
  pipeline's own code for that stage changes what it writes);
* ``source_version``: the source class's ``VERSION`` (1 when it has none),
  bumped when a source's filtering code changes its output;
* ``llamaforge``: the package version;
* ``settings``: the source's whole ``[sources.NAME]`` config (its dataclass,
  paths resolved) and ``settings_sha256``, the SHA-256 of its canonical JSON
  (sorted keys, no spaces). Files the settings name (models, word lists) are
  fingerprinted by size and modification time, so replacing ``en.arpa.bin``
  in place redoes the stage like renaming it would;
* stage 1 also records its input file (path, size, mtime); stage 2 the
  recipe digests of every per-file output it read and the shard sizes.

A re-run compares the stored recipe with the one the current config gives
and redoes the output when any part differs; :func:`what_changed` names the
first difference for the build report (``report.json`` ``"redone"``).
Output with no recipe (made before recipes existed) is redone once.

Decision: stage 1's recipe holds the whole source section, including fields
that only the global filter reads (``dedup_scope``); a change there redoes
stage 1 too. Splitting sections by stage would be a second list to keep true
for every source, and redoing a stage is never wrong, only slower.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import llamaforge

# Bump a stage's number when its code changes what it writes for the same inputs.
STAGE_VERSIONS = {"filtered": 2, "final": 2}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def file_fingerprint(path: Path) -> dict[str, Any]:
    # path.stat(), not os.stat(path): an input may be a slice of a file (a Wikipedia
    # multistream slice, ``dump@start-end``), whose stat answers for the dump it cuts.
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _named_files(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f for item in value.values() for f in _named_files(item)]
    if isinstance(value, list | tuple):
        return [f for item in value for f in _named_files(item)]
    if isinstance(value, str) and value and os.path.isfile(value):
        return [value]
    return []


def source_settings(source: Any) -> dict[str, Any]:
    """The source's config as plain JSON data, plus fingerprints of the files it names."""
    config = getattr(source, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        settings = json.loads(canonical_json(dataclasses.asdict(config)))
    else:
        settings = json.loads(canonical_json(getattr(config, "__dict__", {}) or {}))
    files = sorted(set(_named_files(settings)))
    return {"config": settings, "files": [file_fingerprint(Path(f)) for f in files]}


def _common(stage: str, source: Any, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": stage,
        "stage_version": STAGE_VERSIONS[stage],
        "source": getattr(source, "name", type(source).__name__),
        "source_version": int(getattr(type(source), "VERSION", 1)),
        "llamaforge": llamaforge.__version__,
        "settings": settings,
        "settings_sha256": digest(settings),
    }


def file_recipe(source: Any, path: Path, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage 1's recipe for one input file (``settings`` from :func:`source_settings`)."""
    settings = source_settings(source) if settings is None else settings
    return {**_common("filtered", source, settings), "input": file_fingerprint(path)}


def final_recipe(
    source: Any, file_digests: dict[str, str], shard_docs: int, shard_bytes: int
) -> dict[str, Any]:
    """Stage 2's recipe: the per-file outputs it reads (by recipe digest) and its shard sizes."""
    return {
        **_common("final", source, source_settings(source)),
        "inputs": dict(sorted(file_digests.items())),
        "shard_docs": shard_docs,
        "shard_bytes": shard_bytes,
    }


def _first_difference(old: Any, new: Any, where: str) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key not in old:
                return f"{where}{key} is new"
            if key not in new:
                return f"{where}{key} was removed"
            found = _first_difference(old[key], new[key], f"{where}{key}.")
            if found:
                return found
        return ""
    if old != new:
        shown = lambda v: canonical_json(v) if len(canonical_json(v)) <= 60 else "(changed)"  # noqa: E731
        return f"{where.rstrip('.')} {shown(old)} -> {shown(new)}"
    return ""


def what_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """ "" when ``old`` equals ``new``; else a short phrase naming the first difference."""
    if not old:
        return "no recipe recorded (made by an older llamaforge)"
    if digest(old) == digest(new):
        return ""
    found = _first_difference(old, new, "")
    if found.startswith("settings.config."):
        found = "setting " + found.removeprefix("settings.config.")
    elif found.startswith("inputs."):
        found = "per-file output " + found.removeprefix("inputs.")
    return found or "recipe changed"
