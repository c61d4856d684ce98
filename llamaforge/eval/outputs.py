"""Where ``llamaforge eval`` writes, checked before the model loads, so nothing is lost.

The rules follow ``llamaforge convert``'s (:mod:`llamaforge.formats.atomic`):

* Every output path (``--out``, ``--markdown``) is checked before the model
  is loaded: a folder, a path under a file, an unwritable folder, two
  outputs naming one file, or an output naming a ``--compare`` input is an
  error at once, not after hours of scoring.
* A new or empty file is written. An existing non-empty file is refused
  unless ``--overwrite``, and even then it is replaced only when it is an
  output of ``llamaforge eval`` (as ``convert --overwrite`` replaces only
  the files convert writes): for ``--out`` a results JSON (an object with a
  ``results`` object and a ``config`` object holding ``llamaforge_version``),
  for ``--markdown`` a report (:func:`looks_like_report`). Anything else
  (notes, another tool's JSON) is never replaced: choose another name.
* A symlink is written through, as convert resolves its outputs: the file it
  points to is checked by the same rules and replaced atomically, and the
  link is kept.
* Files are written via a temporary file and a rename, so a crash leaves the
  previous file or the new one, never half of one. Just before writing, the
  path is checked again; if a file that may not be replaced appeared there
  during the run, the output goes to a fresh sibling (``results.1.json``)
  instead, named on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from llamaforge.errors import ConfigError
from llamaforge.eval.report import NOTE_PREFIXES, atomic_write_text

RESULTS = "results"
MARKDOWN = "markdown"
# Our outputs are kilobytes; a bigger file is not read whole just to learn that it is not ours.
MAX_OWN_BYTES = 64 << 20


def _small_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_OWN_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def is_results_file(path: Path) -> bool:
    """Whether ``path`` holds a results JSON written by ``llamaforge eval`` (module docstring)."""
    text = _small_text(path)
    try:
        data = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("results"), dict)
        and isinstance(data.get("config"), dict)
        and "llamaforge_version" in data["config"]
    )


def looks_like_report(path: Path) -> bool:
    """Whether ``path`` holds a Markdown report of ``llamaforge eval``.

    Its first line is a ``## `` heading and every other non-blank line is a
    heading, a table row or one of the report's notes; a file with any
    other line (the user's prose) is not ours.
    """
    text = _small_text(path)
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines or not lines[0].startswith("## "):
        return False
    return all(line.startswith(("## ", "| ", *NOTE_PREFIXES)) for line in lines)


_OURS = {RESULTS: is_results_file, MARKDOWN: looks_like_report}
_WHAT = {RESULTS: "a results JSON", MARKDOWN: "a Markdown report"}


def _resolve(flag: str, path: Path) -> Path:
    """``path`` absolute, through symlinks; its nearest existing ancestor a writable folder."""
    final = Path(os.path.realpath(path))
    for ancestor in final.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(
                    f"{flag} {path}: {ancestor} is a file, not a folder; choose another path"
                )
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path}: cannot write in {ancestor}; choose another path")
            break
    return final


def _problem(flag: str, path: Path, final: Path, kind: str, overwrite: bool) -> str | None:
    """Why ``final`` (``path`` resolved) may not be written, or None when it may."""
    if final.is_dir():
        return f"{flag} {path} is a folder; name a file (e.g. {path}/results.json)"
    if not final.exists() or final.stat().st_size == 0:
        return None
    shown = f"{path} (a link to {final})" if final != Path(os.path.abspath(path)) else f"{path}"
    if not _OURS[kind](final):
        return (
            f"{flag} {shown} exists and is not {_WHAT[kind]} of `llamaforge eval`; it is never "
            "replaced: choose another name or move it away"
        )
    if not overwrite:
        return f"{flag} {shown} exists; pass --overwrite to replace it, or choose another name"
    return None


def check_outputs(
    outputs: Mapping[str, tuple[Path | None, str]],
    compare: Sequence[Path] = (),
    overwrite: bool = False,
) -> dict[str, Path]:
    """``flag -> resolved path`` for each given output; raise :class:`ConfigError` if one is bad.

    ``outputs`` maps a flag (``"--out"``) to its path (or None) and its kind
    (:data:`RESULTS` or :data:`MARKDOWN`); ``compare`` are the files read as
    inputs, which an output may not replace.
    """
    resolved: dict[str, Path] = {}
    inputs = {Path(os.path.realpath(p)): p for p in compare}
    for flag, (path, kind) in outputs.items():
        if path is None:
            continue
        final = _resolve(flag, Path(path))
        problem = _problem(flag, Path(path), final, kind, overwrite)
        if problem:
            raise ConfigError(problem)
        for other, seen in resolved.items():
            if _same(final, seen):
                raise ConfigError(
                    f"{flag} and {other} both name {final}; give each output its own file"
                )
        for source, given in inputs.items():
            if _same(final, source):
                raise ConfigError(
                    f"{flag} {path} is also given to --compare ({given}); writing it would "
                    "replace the earlier run you compare with: choose another name"
                )
        resolved[flag] = final
    return resolved


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def write_output(flag: str, final: Path, text: str, kind: str, overwrite: bool) -> Path:
    """Write ``text`` to the checked path ``final``; if it became unwritable, to a sibling."""
    if _problem(flag, final, final, kind, overwrite) is not None:
        target = _free_sibling(final)
        print(
            f"llamaforge eval: warning: {final} changed during the run and may not be replaced; "
            f"{flag} written to {target} instead",
            file=sys.stderr,
        )
        final = target
    return atomic_write_text(final, text)


def _free_sibling(final: Path) -> Path:
    for number in range(1, 10_000):
        candidate = final.with_name(f"{final.stem}.{number}{final.suffix}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise ConfigError(f"{final}: no free name next to it; clean up its folder")
