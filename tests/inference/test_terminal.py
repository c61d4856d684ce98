"""Model output on stdout: control characters escaped, unencodable text replaced, never a crash."""

from __future__ import annotations

import io

from llamaforge.cli import main
from llamaforge.formats.native import save_pretrained
from llamaforge.inference.terminal import SafeOutput, chat_loop, escape_controls

# What byte-fallback tokens can spell: BEL, an ANSI colour (ESC [), CR, DEL, C1 CSI, NUL,
# and text a latin-1 stdout cannot hold (U+FFFD from an incomplete character, CJK, emoji).
PIECES = ["ok\a", "\x1b[31mred", "\r\x7f", "\x9b2J", "\x00", "\ufffd漢😀", "é\n\tend"]
SHOWN = r"ok\x07\x1b[31mred\x0d\x7f\x9b2J\x00" + "???é\n\tend"


def latin1_stdout() -> tuple[io.BytesIO, io.TextIOWrapper]:
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="latin-1", write_through=True)


def test_controls_are_escaped_but_newline_and_tab_kept() -> None:
    assert escape_controls("a\nb\tc\x1b\x07\x9f\xa0") == "a\nb\tc\\x1b\\x07\\x9f\xa0"


def test_a_latin1_stream_gets_replacements_not_an_error() -> None:
    raw, stream = latin1_stdout()
    out = SafeOutput(stream)
    for piece in PIECES:
        out.write(piece)
    out.write("\udcff")  # a surrogate-escaped argv byte
    assert raw.getvalue().decode("latin-1") == SHOWN + "?"


class Scripted:
    """A chat session that answers with fixed pieces (chat_loop only calls send and reset)."""

    def send(self, text, notify):
        yield from PIECES

    def reset(self) -> None:
        pass


def test_chat_loop_on_a_latin1_stdout() -> None:
    raw, stream = latin1_stdout()
    assert chat_loop(Scripted(), io.StringIO("hi\n"), stream) == 0
    assert raw.getvalue().decode("latin-1") == SHOWN + "\n"


def test_generate_on_a_latin1_stdout(tmp_path, model, tokenizer, monkeypatch) -> None:
    folder = save_pretrained(model, tmp_path / "ckpt", tokenizer_path=tokenizer.path)
    monkeypatch.setattr("llamaforge.inference.cli.stream", lambda *a, **k: iter(PIECES))
    raw, stream = latin1_stdout()
    monkeypatch.setattr("sys.stdout", stream)
    assert main(["generate", str(folder), "--prompt", "\x1b]0;title\x07漢"]) == 0
    assert raw.getvalue().decode("latin-1") == r"\x1b]0;title\x07?" + SHOWN + "\n"


def test_an_in_memory_stream_keeps_all_text() -> None:
    stream = io.StringIO()  # no encoding to fit: only the controls change
    SafeOutput(stream).write("漢😀\x1b")
    assert stream.getvalue() == "漢😀\\x1b"


def test_bidirectional_controls_are_shown_escaped_and_right_to_left_text_as_it_is():
    """An override (U+202E) would make the terminal show text in another order."""
    from llamaforge.inference.terminal import escape_controls

    shown = escape_controls("x = 1 \u202e# comment\u2066\u2069 \u05e9\u05dc\u05d5\u05dd\u200f")
    assert shown == "x = 1 \\u202e# comment\\u2066\\u2069 \u05e9\u05dc\u05d5\u05dd\\u200f"
