"""Every schema reads; every bad input is an error naming file and line, or is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.data import read_conversations


def write_lines(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


ALPACA = {"instruction": "Add", "input": "1 2", "output": "3"}
FLAN = {"inputs": "Translate: chat", "targets": "cat"}
CHAT = {
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
    ]
}


def test_each_schema_becomes_messages(tmp_path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl", [ALPACA, FLAN, CHAT, {"instruction": "x", "output": "y"}]
    )
    conversations, report = read_conversations(str(path))
    assert conversations[0] == [
        {"role": "user", "content": "Add", "input": "1 2"},
        {"role": "assistant", "content": "3"},
    ]
    assert conversations[1] == [
        {"role": "user", "content": "Translate: chat"},
        {"role": "assistant", "content": "cat"},
    ]
    assert conversations[2] == CHAT["messages"]
    assert conversations[3][0]["input"] == ""  # Alpaca without "input"
    assert report.to_dict() == {"records": 4, "kept": 4, "skipped": {}}


def test_json_array_file_and_forced_schema(tmp_path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([ALPACA, ALPACA], indent=2), encoding="utf-8")
    assert len(read_conversations(str(path), schema="alpaca")[0]) == 2
    with pytest.raises(DataError, match=r"data.json:2: missing field 'inputs'"):
        read_conversations(str(path), schema="flan")


U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "r"}
BAD = [
    # an alpaca record lacking "output" says so (it used to "match no schema")
    ({"instruction": "x"}, "missing field 'output'", "missing_field"),
    ({"instruction": "x", "output": None}, "field 'output' is null", "bad_field"),
    ({"messages": None}, "field 'messages' is null", "bad_field"),
    ({"prompt": "x", "completion": "y"}, "matches no schema", "unknown_schema"),
    ({"instruction": "x", "output": "  "}, "empty response", "empty_response"),
    ({"instruction": 3, "output": "y"}, "must be a string", "bad_field"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role", "unknown_role"),
    ({"messages": [{"role": "user", "content": "x"}]}, "no assistant turn", "no_response"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]},
     "empty response", "empty_response"),
    (b"\xff\xfe not utf-8", "not UTF-8", "not_utf8"),
    (b"{not json", "invalid JSON", "invalid_json"),
    ([1, 2], "JSON object", "not_an_object"),
    # valid JSON, but a lone surrogate is no UTF-8 text (SentencePiece would raise on it)
    ({"instruction": "a\ud800", "output": "b"}, "lone surrogate", "not_utf8"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\udc00"}]},
     "lone surrogate", "not_utf8"),
    (b"[" * 100_000, "nested too deeply", "invalid_json"),  # RecursionError in json
    # ValueError (not JSONDecodeError): past Python's 4300-digit limit for int()
    (b'{"instruction": "a", "output": "b", "n": ' + b"9" * 5000 + b"}", "digits", "invalid_json"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y",
                                                       "input": "z"}]},
     "only a user turn", "bad_messages"),
    (b'{"instruction": "a", "output": "b", "output": "c"}', "key 'output' twice", "duplicate_key"),
    (b'{"messages": [{"role": "user", "content": "x", "content": "y"}, '
     b'{"role": "assistant", "content": "z"}]}', r"messages\[0\] gives key 'content' twice",
     "duplicate_key"),
    ({**ALPACA, **CHAT}, "messages and the alpaca schemas", "ambiguous_schema"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"},
                   {"role": "assistant", "content": "z"}]}, "two user turns in a row",
     "bad_messages"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                   {"role": "user", "content": "z"}]}, "ends on a user turn", "bad_messages"),
    # OpenAI's "weight": 0 or 1, on assistant turns only
    *[({"messages": [U, {**A, "weight": w}]}, "'weight' must be 0", "bad_weight")
      for w in (2, 0.5, "0", True, -1)],
    ({"messages": [{**U, "weight": 1}, A]}, r"\(user\) has a 'weight'", "bad_weight"),
    ({"messages": [U, {**A, "weight": 0}]}, "every assistant turn has weight 0", "no_response"),
    ({"messages": [U, {**A, "tool_calls": [{"id": "1"}]}]}, "key 'tool_calls'", "unknown_key"),
    ({"messages": [{**U, "role": "assistant", "content": None}]}, "'content' is null",
     "bad_messages"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "message", "reason"), BAD)
def test_bad_record_names_file_and_line_or_is_counted(tmp_path, record, message, reason) -> None:
    path = write_lines(tmp_path / "d.jsonl", [ALPACA, record, FLAN])
    with pytest.raises(DataError, match=rf"d\.jsonl:2: .*{message}.*skip_bad_examples"):
        read_conversations(str(path))
    conversations, report = read_conversations(str(path), skip_bad=True)
    assert len(conversations) == 2
    assert report.to_dict() == {"records": 3, "kept": 2, "skipped": {reason: 1}}


def test_a_forced_schema_reads_a_record_with_two_schemas_fields(tmp_path) -> None:
    path = write_lines(tmp_path / "both.jsonl", [{**ALPACA, **CHAT}])
    assert read_conversations(str(path), schema="messages")[0] == [CHAT["messages"]]
    assert read_conversations(str(path), schema="alpaca")[0][0][1]["content"] == "3"


def test_duplicate_keys_in_a_json_array_name_the_record(tmp_path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('[\n{"instruction": "a", "output": "b"},\n'
                    '{"instruction": "a", "instruction": "b", "output": "c"}\n]', encoding="utf-8")  # fmt: skip
    with pytest.raises(DataError, match=r"dup\.json:3: .*key 'instruction' twice"):
        read_conversations(str(path))
    assert read_conversations(str(path), skip_bad=True)[1].skipped == {"duplicate_key": 1}


def test_missing_inputs_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_conversations(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="schema"):
        read_conversations(str(tmp_path / "x.jsonl"), schema="sharegpt")
    empty = write_lines(tmp_path / "bad.jsonl", [{"instruction": "x"}])
    with pytest.raises(DataError, match="no usable example"):
        read_conversations(str(empty), skip_bad=True)
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"instruction": "a", "output": "b"},\n{oops}\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json:3: invalid JSON"):
        read_conversations(str(broken), skip_bad=True)  # one array: nothing of it can be skipped


def test_byte_order_mark_null_input_and_messages_input(tmp_path) -> None:
    bom = b"\xef\xbb\xbf"
    array = tmp_path / "array.json"  # a BOM, then one record per line inside [ ... ]
    array.write_bytes(bom + b"[\n" + b",\n".join(json.dumps(ALPACA).encode() for _ in range(3))
                      + b"\n]\n")  # fmt: skip
    for skip in (False, True):
        conversations, report = read_conversations(str(array), skip_bad=skip)
        assert len(conversations) == 3 and report.to_dict()["skipped"] == {}
    lines = write_lines(tmp_path / "bom.jsonl", [ALPACA, FLAN])
    lines.write_bytes(bom + lines.read_bytes())
    assert len(read_conversations(str(lines))[0]) == 2
    nulls = write_lines(
        tmp_path / "null.jsonl", [{"instruction": "x", "input": None, "output": "y"}]
    )
    assert read_conversations(str(nulls))[0][0][0] == {"role": "user", "content": "x", "input": ""}
    turn = {"role": "user", "content": "Sum these.", "input": "1 2 3"}
    kept = write_lines(
        tmp_path / "m.jsonl", [{"messages": [turn, {"role": "assistant", "content": "6"}]}]
    )
    assert read_conversations(str(kept))[0][0][0] == turn  # the template shows it, as Alpaca's


def test_a_mistyped_file_name_is_not_sent_to_the_hub(tmp_path) -> None:
    for name in ("data/good.JSONL", "train.txt", "pairs.json.gz", "~/x.jsonl"):
        with pytest.raises(ConfigError, match="does not exist"):
            read_conversations(name)


def test_weight_name_and_null_keys_of_messages(tmp_path) -> None:
    record = {"id": 7, "source": "x", "messages": [
        {**U, "name": "bob"}, {**A, "weight": 0, "name": None}, U, {**A, "weight": 1},
        U, {**A, "weight": None, "function_call": None},
    ]}  # fmt: skip
    (messages,), _ = read_conversations(str(write_lines(tmp_path / "w.jsonl", [record])))
    # weight 0 is kept (context only), 1 and null are the default; "name" and null keys go
    assert messages == [U, {**A, "weight": 0}, U, A, U, A]
