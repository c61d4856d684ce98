"""Instruction pairs from Python files: docstrings cut out, one pair per function, bad files skipped."""

from __future__ import annotations

from pathlib import Path

from llamaforge.finetune.data import read_conversations
from llamaforge.finetune.stdlib_instructions import EXPLAIN, build_pairs, write_jsonl

SOURCE = '''
def area(width, height):
    """Return the area of a rectangle of the given size.

    More text that is not the summary.
    """
    result = width * height
    return result


def stub():
    """Nothing but a docstring here."""


def _no_doc(x):
    y = x + 1
    return y
'''


def test_pairs_hold_the_summary_and_the_source_without_docstring(tmp_path: Path) -> None:
    (tmp_path / "geometry.py").write_text(SOURCE, encoding="utf-8")
    (tmp_path / "broken.py").write_text("def (:\n", encoding="utf-8")
    (tmp_path / "latin1.py").write_bytes(b"# \xe9\n")
    pairs = build_pairs(sorted(tmp_path.iterdir()), max_pairs=10, seed=0)
    assert len(pairs) == 1  # stub() has no body, _no_doc() no docstring
    (pair,) = pairs
    source = "def area(width, height):\n    result = width * height\n    return result"
    if pair["instruction"] == EXPLAIN:
        assert pair == {"instruction": EXPLAIN, "input": source,
                        "output": "Return the area of a rectangle of the given size."}  # fmt: skip
    else:
        assert pair["instruction"] == (
            "Write a Python function `area(width, height)`: "
            "Return the area of a rectangle of the given size."
        )
        assert pair["output"] == source and pair["input"] == ""
    assert '"""' not in pair["input"] + pair["output"]
    path = write_jsonl(pairs, tmp_path / "out" / "pairs.jsonl")
    conversations, report = read_conversations(str(path), "alpaca")
    assert report.kept == 1 and conversations[0][-1]["content"] == pair["output"]


def test_both_directions_occur_and_no_function_twice(tmp_path: Path) -> None:
    body = "\n".join(
        f'def f{i}(x):\n    """Return the value number {i} of x."""\n    y = x + {i}\n    return y\n'
        for i in range(40)
    )
    (tmp_path / "many.py").write_text(body, encoding="utf-8")
    pairs = build_pairs([tmp_path / "many.py"], max_pairs=100, seed=1)
    assert len(pairs) == 40
    kinds = {p["instruction"] == EXPLAIN for p in pairs}
    assert kinds == {True, False}
    names = [p["input"] or p["output"] for p in pairs]
    assert len(set(names)) == 40
