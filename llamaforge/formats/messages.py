"""One-line summaries of library errors, for messages the CLI prints as one line.

``torch.load(weights_only=True)`` explains a refused pickle in a dozen lines
(with advice to retry with ``weights_only=False``, which is exactly what must
not be done with an untrusted file); the line naming the refused global is
the one worth keeping.
"""

from __future__ import annotations

_MAX = 240


def brief(error: BaseException) -> str:
    """The most telling line of ``error``'s message, at most ~240 characters."""
    lines = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and "weights_only" not in line  # never the advice to unpickle
    ]
    if not lines:
        return type(error).__name__
    telling = [line for line in lines if "GLOBAL" in line or "global" in line.split(":")[0]]
    line = (telling or lines)[0]
    return line if len(line) <= _MAX else line[: _MAX - 3] + "..."
