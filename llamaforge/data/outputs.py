"""Writing the data pipeline's files without following planted links or replacing others' files.

* **Temporaries are created, never opened.** Every temp file is a new,
  uniquely named ``.NAME.XXXXXXXX.tmp`` made by ``mkstemp`` (``O_CREAT |
  O_EXCL | O_NOFOLLOW``) in the destination's folder, then renamed over the
  destination. A fixed temp name opened with ``open(..., "w")`` would follow
  a symlink someone left at that name and write into whatever it points to;
  ``O_EXCL`` refuses any existing entry, and ``os.replace`` replaces a link
  at the destination itself, never its target. The mode is the umask's, as
  with ``open`` (:mod:`llamaforge.umask`).
* **The build's top-level files are replaced only when the build wrote them.**
  ``report.json``, ``report.md`` and ``mixture.toml`` in the output folder
  are recognised by their content (the build's own first line or keys);
  anything else at those names, a folder or a symlink, is a user's and is
  refused before any work (:func:`check_build_outputs`), the way training
  checks its run folder before it starts.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from llamaforge.errors import ConfigError
from llamaforge.umask import make_temp_file

# A temp name of :func:`create_temp`: hidden, the destination's name, a random part, ".tmp".
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
REPORT_MD_TITLE = "# Data build report"
MIXTURE_HEADER = "# Written by `llamaforge data build`"
# report.json is json.dumps(report, indent=1) with these two keys first.
_REPORT_START = re.compile(r'^\{\n "config": ".*",\n "output": ')


def create_temp(dest: Path) -> tuple[int, Path]:
    """A new temp file beside ``dest`` (open descriptor and path), made exclusively."""
    return make_temp_file(dest.parent, f".{dest.name}.", ".tmp")


def open_temp_binary(dest: Path) -> tuple[io.BufferedWriter, Path]:
    """``(file, temp path)``: a new temp beside ``dest`` opened for writing bytes."""
    fd, tmp = create_temp(dest)
    try:
        return os.fdopen(fd, "wb"), tmp
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def remove_temps(folder: Path, name: str) -> None:
    """Delete our temps for destination ``name`` in ``folder`` left by a killed writer."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        ours = entry.name.startswith(f".{name}.") and len(entry.name) == len(name) + 14
        if ours and TEMP_NAME.match(entry.name) and (entry.is_symlink() or entry.is_file()):
            entry.unlink()


def _ours(name: str, text: str) -> bool:
    if name == "report.md":
        return text.startswith(REPORT_MD_TITLE)
    if name == "mixture.toml":
        return text.startswith(MIXTURE_HEADER)
    return bool(_REPORT_START.match(text))


def check_build_outputs(out: Path) -> None:
    """Refuse (one line) an output folder where the build would replace a file it did not write."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            what = "it" if path == out else f"its parent {path}"
            raise ConfigError(
                f"[build].output {out}: {what} is a file, not a folder; choose another output"
            )
    for name in ("report.json", "report.md", "mixture.toml"):
        path = out / name
        if not path.exists() and not path.is_symlink():
            continue
        why = ""
        if path.is_symlink() or not path.is_file():
            why = "is not a plain file"
        else:
            try:
                with open(path, "rb") as f:
                    head = f.read(64 << 10).decode("utf-8", "replace")
            except OSError as error:
                raise ConfigError(f"{path} cannot be read ({error.strerror})") from None
            if not _ours(name, head):
                why = "was not written by `llamaforge data build`"
        if why:
            raise ConfigError(
                f"{path} {why}, but the build writes its {name} there; move it away or "
                "choose another [build].output"
            )
