"""Temporary files and folders that become outputs get the user's umask, not 0700/0600.

``tempfile.mkdtemp``/``mkstemp`` create private entries (0700/0600) on
purpose, which is right for scratch space but wrong for an atomic write: the
temporary is renamed into place and keeps its mode, so on a shared cluster the
rest of the group could not read a checkpoint, an eval results file or a
language model. These wrappers create the same unique names and then set the
mode a plain ``mkdir``/``open`` would have given (0777/0666 minus the umask).
Scratch space that must stay private (the code sandbox) keeps using
``tempfile`` directly. The module sits at the package top and imports only
the standard library, so the data pipeline and eval can use it without
importing ``llamaforge.formats`` (and torch).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _LOCK:  # elsewhere: set and restore, under a lock against our own threads
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new uniquely named folder in ``parent`` with ``mkdir``'s mode (0755 under umask 022)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def make_temp_file(parent: str | os.PathLike, prefix: str, suffix: str = "") -> tuple[int, Path]:
    """``tempfile.mkstemp`` (open descriptor and path) with ``open``'s mode (0644 under 022)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise
    return fd, Path(name)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a new temp beside it, fsynced, then one rename.

    The one atomic text write of the package (checkpoint manifests aside): a
    crash leaves the previous file or none, never a truncated one; the temp is
    created exclusively under a unique name (``O_CREAT | O_EXCL``), so a link
    planted at a temp name is never written through, and ``os.replace``
    replaces a link at ``path`` itself, not its target. Missing parent
    folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file we just wrote ``open``'s mode; for writers that create it 0600 themselves.

    ``safetensors.torch.save_file`` (0.6 and later) writes through a private
    temporary and renames it, so its files come out 0600 whatever the umask.
    """
    os.chmod(path, 0o666 & ~current_umask())


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """``safetensors.torch.save_file`` with the user's umask on the written file."""
    from safetensors.torch import save_file

    save_file(tensors, path, metadata=metadata)
    follow_umask(path)
