"""Writing a model folder without losing anything already there.

Rules (summarised in the README, "Checkpoint formats"):

* A new or empty destination is written as a hidden sibling
  ``.DST.tmp-XXXX/new/`` and renamed into place, so a crash leaves no
  half-written ``DST``.
* An existing non-empty destination is refused unless ``overwrite=True``.
  Even then only the files this write puts there are replaced, plus the
  stale members of the weight-file families it writes (a
  ``consolidated.03.pth`` left from a 4-shard Meta folder when 2 shards are
  written, ``model.safetensors`` beside a new sharded Hugging Face set, or the
  reverse), which would otherwise be read together with the new files; every
  other file (notes, code, another format's files, a training checkpoint's
  optimizer / RNG state / manifest) is kept. A GGUF written next to a
  checkpoint (``convert X X --to gguf``) so replaces ``model.gguf`` only. The
  replaced files are first moved into a hidden ``.DST.old-XXXX/`` sibling
  and deleted only after every new file is in place; on an error they are
  moved back.
* Every temporary folder holds a marker (:data:`MARKER_NAME`) naming its
  writer: host, boot, pid and the pid's start time. A later write into the
  same parent folder deletes a ``.tmp-`` temporary only when its marker is
  ours and its writer is dead (a SIGKILLed convert). Folders without a valid
  marker, or whose marker names another host or a live process, are never
  touched, even when their names match. ``.old-`` folders of a killed
  replace hold the user's previous files: they are reported, never deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llamaforge.errors import CheckpointError

MARKER_NAME = ".llamaforge-partial.json"
_MARKER_KIND = "llamaforge-convert-temporary"
_OUTPUT_NAMES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "generation_config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "params.json",
        "model.gguf",
    }
)
_TEMP_NAME = re.compile(r"^\..+\.(tmp|old)-")
_OUTPUT_PATTERNS = (
    re.compile(r"^consolidated\.\d+\.pth$"),
    re.compile(r"^model-\d+-of-\d+\.safetensors$"),
)


# Weight files of one format that are read as a set: writing any member replaces them all.
_WEIGHT_FAMILIES = (
    lambda name: bool(_OUTPUT_PATTERNS[0].match(name)),  # Meta consolidated.NN.pth
    lambda name: (
        name in ("model.safetensors", "model.safetensors.index.json")
        or bool(_OUTPUT_PATTERNS[1].match(name))
    ),  # Hugging Face / native safetensors, sharded or not
)


def is_output_name(name: str) -> bool:
    """Whether ``convert`` writes a file of this name in some format (native, hf, meta, gguf)."""
    return name in _OUTPUT_NAMES or any(p.match(name) for p in _OUTPUT_PATTERNS)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to detect a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _make_temp(parent: Path, prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    marker = {
        "kind": _MARKER_KIND,
        "name": folder.name,
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": os.getpid(),
        "start": _start_time(os.getpid()),
        "created": time.time(),
    }
    (folder / MARKER_NAME).write_text(json.dumps(marker), encoding="utf-8")
    return folder


def _abandoned(folder: Path) -> dict | None:
    """The marker of a temporary folder we wrote whose writer is dead, else None."""
    marker_path = folder / MARKER_NAME
    if folder.is_symlink() or not folder.is_dir() or marker_path.is_symlink():
        return None
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("kind") != _MARKER_KIND:
        return None
    pid = marker.get("pid")
    if marker.get("name") != folder.name or not isinstance(pid, int) or not 0 < pid < 2**31:
        return None
    if marker.get("host") != socket.gethostname():
        return None  # its writer may be alive on another machine sharing the folder
    if marker.get("boot") is not None and marker.get("boot") != _boot_id():
        return marker  # written before this machine last booted
    if _alive(pid) and _start_time(pid) == marker.get("start"):
        return None  # still writing (a live pid with another start time is a reused pid)
    return marker


def remove_stale_temporaries(parent: str | os.PathLike) -> list[Path]:
    """Delete the ``.*.tmp-*`` folders in ``parent`` left by dead convert processes; return them."""
    removed: list[Path] = []
    folder = Path(parent)
    if not folder.is_dir():
        return removed
    for child in sorted(folder.iterdir()):
        if not _TEMP_NAME.match(child.name) or _abandoned(child) is None:
            continue
        if ".tmp-" in child.name:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
        elif ".old-" in child.name:
            print(
                f"warning: {child} holds files an interrupted `convert --overwrite` moved aside; "
                "move back what you need and delete it",
                file=sys.stderr,
            )
    return removed


def _resolve(path: str | os.PathLike) -> Path:
    """``path`` made absolute ("." or a symlink: where it points), its nearest ancestor a folder."""
    final = Path(os.path.realpath(path))
    for ancestor in final.parents:
        if ancestor.exists() and not ancestor.is_dir():
            raise CheckpointError(
                f"{path}: {ancestor} is a file, not a folder; choose another output path"
            )
        if ancestor.is_dir():
            break
    return final


def check_destination(directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """The absolute output folder, or a one-line :class:`CheckpointError` saying why not.

    Called before anything is read, so a bad output path fails at once, not
    after a 65B model was loaded.
    """
    final = _resolve(directory)
    if not final.exists():
        return final
    if not final.is_dir():
        raise CheckpointError(f"{directory} exists and is a file; choose a folder as the output")
    entries = sorted(p.name for p in final.iterdir())
    if entries and not overwrite:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise CheckpointError(
            f"{directory} is not empty ({shown}); pass --overwrite to replace the model files "
            "convert writes there (other files are kept), or choose a new or empty folder"
        )
    for name in entries:
        path = final / name
        if is_output_name(name) and path.is_dir() and not path.is_symlink():
            raise CheckpointError(f"{path} is a folder where convert writes a file; move it away")
    return final


def _fsync(path: Path) -> None:
    if path.is_dir() and os.name != "posix":
        return  # Windows cannot open a directory to flush it
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replaced_by(incoming: list[str], name: str) -> bool:
    """Whether writing ``incoming`` replaces an existing file ``name`` (module docstring)."""
    return name in incoming or any(
        family(name) and any(family(n) for n in incoming) for family in _WEIGHT_FAMILIES
    )


def _merge(new: Path, final: Path) -> None:
    """Move ``new``'s files into the existing ``final``, replacing only what this write owns."""
    incoming = sorted(p.name for p in new.iterdir())
    doomed = sorted(
        p.name
        for p in final.iterdir()
        if _replaced_by(incoming, p.name) and (p.is_symlink() or not p.is_dir())
    )
    aside = _make_temp(final.parent, f".{final.name}.old-")
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in doomed:
            os.replace(final / name, aside / name)
            moved.append(name)
        for name in incoming:
            os.replace(new / name, final / name)
            placed.append(name)
    except BaseException:
        try:
            for name in placed:
                (final / name).unlink(missing_ok=True)
            for name in moved:
                os.replace(aside / name, final / name)
        except OSError:
            print(
                f"warning: could not move the previous files back from {aside}; they are there",
                file=sys.stderr,
            )
        else:
            shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_folder(directory: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success its files become ``directory``'s.

    If the body raises, the temporary folder is deleted and ``directory`` is
    untouched. See the module docstring for what ``overwrite`` may replace.
    """
    final = check_destination(directory, overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final.parent)
        tmp = _make_temp(final.parent, f".{final.name}.tmp-")
    except OSError as error:
        raise CheckpointError(f"{directory}: cannot write there ({error})") from error
    new = tmp / "new"
    new.mkdir()
    try:
        yield new
        for child in new.iterdir():
            _fsync(child)
        check_destination(directory, overwrite)  # again: files may have appeared meanwhile
        if final.is_dir() and any(final.iterdir()):
            _merge(new, final)
        else:
            if final.is_dir():
                final.rmdir()  # empty: os.replace cannot move a folder onto it everywhere
            os.replace(new, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync(final)
    _fsync(final.parent)


def check_file_destination(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """The absolute output file, or a one-line error: an existing file needs ``overwrite``."""
    final = _resolve(path)
    if final.is_dir():
        raise CheckpointError(f"{path} is a folder; name a new file, or a folder without .gguf")
    if final.exists() and not overwrite:
        raise CheckpointError(
            f"{path} exists; pass --overwrite to replace it, or choose a new name"
        )
    return final


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success the file replaces ``path`` in one rename.

    The temporary sits in a marked ``.NAME.tmp-XXXX`` folder next to ``path``
    (so a killed writer's leftovers are cleaned up as for folders); if the
    body raises, it is deleted and ``path`` is untouched.
    """
    final = check_file_destination(path, overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final.parent)
        tmp = _make_temp(final.parent, f".{final.name}.tmp-")
    except OSError as error:
        raise CheckpointError(f"{path}: cannot write there ({error})") from error
    try:
        yield tmp / final.name
        _fsync(tmp / final.name)
        check_file_destination(path, overwrite)  # again: a file may have appeared meanwhile
        os.replace(tmp / final.name, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync(final.parent)


__all__ = [
    "MARKER_NAME",
    "atomic_file",
    "atomic_folder",
    "check_destination",
    "check_file_destination",
    "is_output_name",
    "remove_stale_temporaries",
]
