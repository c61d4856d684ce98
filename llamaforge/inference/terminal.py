"""What ``generate`` and ``chat`` print (model text made safe to show) and chat's read loop.

Model output is untrusted text. Two things go wrong when it is written to
``sys.stdout`` as is (found by a red-team pass, 2026-12-04):

* **Encodings.** A stdout whose encoding cannot hold a character
  (``PYTHONIOENCODING=latin-1``, a C locale) raised ``UnicodeEncodeError`` in
  the middle of an answer; so did a lone surrogate (a prompt given as non-UTF-8
  bytes on the command line arrives surrogate-escaped). Such characters are now
  replaced by the encoding's replacement (``?``), never a crash.
* **Control characters.** Byte-fallback tokens can spell any byte, so a model
  can print BEL, ESC (terminal escape sequences: colours, cursor moves, window
  titles, clipboard writes on some terminals) or C1 controls such as CSI
  (U+009B). Every C0/C1 control character (Unicode category ``Cc``: U+0000 to
  U+001F, U+007F to U+009F) except newline and tab is shown escaped as
  ``\\xNN`` (``\\r`` too: a bare carriage return would let text overwrite
  what was shown).
* **Bidirectional controls.** The embedding, override and isolate characters
  (U+202A to U+202E, U+2066 to U+2069) and the marks U+200E, U+200F, U+061C
  reorder what a terminal shows ("Trojan Source", CVE-2021-42574): a model's
  answer could display text in another order than it was written. They are
  shown escaped as ``\\uNNNN``, as code editors flag them. Right-to-left text
  itself needs none of them and is shown as it is.

Decision: this applies to everything the two commands write to stdout,
terminal or pipe (redirected output is read on a terminal later, with
``cat``), echoed prompts included; neither command writes files. The Python
API (:func:`~llamaforge.inference.generate.stream`,
:meth:`~llamaforge.inference.chat.ChatSession.send`, the chat history) keeps
the raw text: programs get what the model produced, and the chat history is
what training would encode.
"""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from llamaforge.inference.chat import ChatSession

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with control characters (but newline and tab) as ``\\xNN``, bidi ones ``\\uNNNN``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class SafeOutput:
    """A text stream wrapper: escapes control characters, replaces what cannot be encoded."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        encoding = getattr(stream, "encoding", None)
        try:
            self.encoding = codecs.lookup(encoding).name if isinstance(encoding, str) else None
        except LookupError:
            self.encoding = None

    def write(self, text: str) -> int:
        """Write ``text`` as it can be shown; returns the length written."""
        shown = escape_controls(text)
        if self.encoding is not None:
            shown = shown.encode(self.encoding, "replace").decode(self.encoding)
        else:  # an in-memory stream: no encoding to fit, but a lone surrogate is no text
            shown = shown.encode("utf-8", "replace").decode("utf-8")
        return self.stream.write(shown)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())


def chat_loop(session: ChatSession, lines: TextIO, out: TextIO, prompt: str = ">>> ") -> int:
    """Read user turns from ``lines`` until EOF, streaming each answer to ``out``."""
    interactive = lines.isatty() and out.isatty()
    out = SafeOutput(out)

    def notify(message: str) -> None:
        out.write(message + "\n")
        out.flush()

    while True:
        if interactive:
            try:
                line = input(prompt)
            except EOFError:
                out.write("\n")
                return 0
        else:
            line = lines.readline()
            if not line:
                return 0
        text = line.rstrip("\r\n")
        if text.strip() in ("/quit", "/exit"):
            return 0
        if text.strip() == "/reset":
            session.reset()
            notify("[conversation cleared]")
            continue
        if not text.strip():
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 on a non-UTF-8 terminal or pipe
            notify("[that line is not UTF-8 text; nothing was sent]")
            continue
        for piece in session.send(text, notify):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
