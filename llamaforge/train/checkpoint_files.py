"""Checkpoint folders on disk: naming, manifests, verification, finding the newest valid one.

Split from :mod:`llamaforge.train.checkpoint` so the single-file writer and
the distributed (``torch.distributed.checkpoint``) writer in
:mod:`llamaforge.train.parallel.dcp` share one definition of "complete and
intact". A manifest's ``layout`` says which files a checkpoint must hold:

* ``single`` (the default, older manifests have no key): ``model.safetensors``,
  ``config.json``, ``optimizer.pt``, ``state.json``, ``rng.pt``.
* ``dcp``: ``config.json``, ``state.json``, DCP's ``.metadata`` and at least
  one ``*.distcp`` shard; per-rank ``rng_rank*.pt`` files are listed but a
  different world size may read fewer or more of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llamaforge.errors import CheckpointError
from llamaforge.train.rng import CheckpointWarning

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_FILES = ("model.safetensors", "config.json", "optimizer.pt", "state.json", "rng.pt")
DCP_REQUIRED_FILES = ("config.json", "state.json", ".metadata")
LAYOUTS = {"single": REQUIRED_FILES, "dcp": DCP_REQUIRED_FILES}
_STEP_RE = re.compile(r"^step_(\d+)$")
_PROGRESS_BYTES = 512 * 2**20  # hash with a progress bar above this size


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_failed(
    step: int, error: BaseException, directory: Path, rank: int | None = None
) -> CheckpointError:
    """The one line a save that could not write raises (disk full, quota, permissions).

    Every save writes into a temporary folder that is removed on failure, so the
    previous checkpoints are always as they were; the line says so.
    """
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line
    where = getattr(error, "filename", None) or directory
    on = f" on rank {rank}" if rank is not None else ""
    return CheckpointError(
        f"saving checkpoint {step_dir_name(step)} failed{on}: {where}: {reason}; the previous "
        "checkpoints are unchanged. Free disk space (or fix permissions) and resume"
    )


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory entry on POSIX (Windows cannot open directories)."""
    if path.is_dir() and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        open(path, "rb") as file,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"sha256 {path.name}",
            disable=size < _PROGRESS_BYTES,
            leave=False,
        ) as bar,
    ):
        while chunk := file.read(2**22):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of one written file (fsynced first, so the hash is of what is on disk)."""
    fsync_path(path)
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def write_json(path: Path, data: Any) -> None:
    def default(obj: Any) -> Any:
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"{path.name}: {type(obj).__name__} value {obj!r} is not JSON-serialisable")

    path.write_text(json.dumps(data, indent=2, default=default) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """``path``'s JSON, or a CheckpointError (so a damaged file is skipped, never a crash).

    ``ValueError`` covers invalid JSON, bytes that are not UTF-8 and an integer
    past Python's digit limit; ``RecursionError`` a file of nested brackets.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot be read as JSON ({error})") from error
    except RecursionError:
        raise CheckpointError(f"{path}: cannot be read as JSON (nested too deeply)") from None


def write_manifest(folder: Path, step: int, files: dict[str, Any], layout: str = "single") -> None:
    """Write ``manifest.json`` last: its presence marks the checkpoint complete."""
    manifest = {
        "format": "llamaforge-checkpoint",
        "format_version": FORMAT_VERSION,
        "step": step,
        "files": files,
    }
    if layout != "single":
        manifest["layout"] = layout
    write_json(folder / MANIFEST, manifest)
    fsync_path(folder / MANIFEST)
    fsync_path(folder)


def checkpoint_layout(path: str | os.PathLike) -> str:
    """``single`` or ``dcp``, from the manifest (or the files when there is none)."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        manifest = read_json(manifest_path)
        if isinstance(manifest, dict):
            return str(manifest.get("layout", "single"))
    return "dcp" if (folder / ".metadata").is_file() else "single"


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise CheckpointError describing the first problem, or return if complete and intact.

    Checks the manifest, that every file its layout requires is listed, and
    the size then sha256 of each listed file. Files not in the manifest (notes
    a user added) are allowed. Hashing reads the whole folder once, which is
    cheap next to the training time it protects.
    """
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{manifest_path} is missing: the checkpoint is incomplete (the save was "
            "interrupted or the folder was copied partially); use an earlier checkpoint"
        )
    manifest = read_json(manifest_path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise CheckpointError(
            f"{manifest_path} has no 'files' table; it is not a llamaforge manifest"
        )
    layout = manifest.get("layout", "single")
    if layout not in LAYOUTS:
        raise CheckpointError(
            f"{manifest_path}: unknown layout {layout!r} (this llamaforge knows "
            f"{sorted(LAYOUTS)}); upgrade llamaforge"
        )
    for name in LAYOUTS[layout]:
        if name not in files:
            raise CheckpointError(f"{manifest_path} does not list required file {name}")
    if layout == "dcp" and not any(name.endswith(".distcp") for name in files):
        raise CheckpointError(f"{manifest_path} lists no .distcp shard")
    for name, entry in files.items():
        if Path(name).name != name or name in (".", "..", MANIFEST):
            raise CheckpointError(f"{manifest_path} lists an invalid file name {name!r}")
        file = folder / name
        entry = entry if isinstance(entry, dict) else {}
        if not file.is_file():
            raise CheckpointError(f"{file} is listed in the manifest but missing")
        size = file.stat().st_size
        if size != entry.get("size"):
            raise CheckpointError(
                f"{file} has {size} bytes, the manifest says {entry.get('size')} (truncated?)"
            )
        if sha256_file(file) != entry.get("sha256"):
            raise CheckpointError(f"{file} does not match its sha256 in the manifest (corrupted)")


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``step_*`` folders, newest first (numeric order, so step 10^8 sorts right)."""
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found, reverse=True)


def scan_checkpoints(directory: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that verifies, and the damaged ones newer than it (with why)."""
    damaged = []
    for _, path in list_checkpoints(Path(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            damaged.append((path, str(error)))
            continue
        return path, damaged
    return None, damaged


def latest_valid(directory: str | os.PathLike) -> Path | None:
    """Newest checkpoint that verifies; each newer broken one is skipped with a warning.

    Folders without a manifest are also warned about: they are never produced
    by the checkpoint writers and usually mean a partial copy.
    """
    found, damaged = scan_checkpoints(directory)
    for path, problem in damaged:
        warnings.warn(f"skipping checkpoint {path}: {problem}", CheckpointWarning, stacklevel=2)
    return found


def set_aside(path: Path) -> Path:
    """Rename a damaged ``step_N`` to ``damaged-step_N`` (``-2``, ``-3``... if taken).

    Out of the ``step_*`` namespace it is never resumed from, never counted
    by ``keep_last`` and never replaced by a new save of the same step; it is
    never deleted either: only the user knows whether it is worth rescuing.
    """
    target, n = path.with_name(f"damaged-{path.name}"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"damaged-{path.name}-{n}")
    os.replace(path, target)
    return target


def damaged_note(moved: list[tuple[Path, str, Path]]) -> str:
    """One line describing checkpoints :func:`set_aside` moved."""
    return " | ".join(
        f"skipping checkpoint {old}: {problem}; set aside as {new.name} (not deleted)"
        for old, problem, new in moved
    )
