"""Instruction data: records from JSON / JSON-lines files or a ``datasets`` name, as messages.

Schemas (``schema = "auto"`` picks per record by its keys, in this order):

* ``messages``: ``{"messages": [{"role": ..., "content": ...}, ...]}`` with an
  optional leading ``system`` turn and ``user``/``assistant`` turns; every
  assistant turn is trained on (multi-turn) unless it has OpenAI's
  ``"weight": 0`` (context only; see :mod:`llamaforge.finetune.templates`).
* ``alpaca``: ``{"instruction", "input" (optional, may be ""), "output"}``.
* ``flan``: ``{"inputs", "targets"}`` (Chung et al. 2022's field names).

A file is JSON-lines unless its first non-blank character is ``[`` (one JSON
array of records); a leading UTF-8 byte-order mark is ignored. A string that
JSON escapes allow but UTF-8 cannot hold (a lone surrogate such as
``"\\ud800"``) is a bad record (``not_utf8``), like a line that is not UTF-8.
``input`` may be absent, ``""`` or ``null`` (no input); a messages-schema user
turn may carry one too, and it reaches the template as the Alpaca one does. Bad input (invalid JSON, a line that is not UTF-8, a
missing or non-string field, an empty response, an unknown role, a record
matching no schema) raises a :class:`DataError` naming the file and line, and so do
records whose meaning would be a guess: a key given twice in one object (JSON
keeps the last, silently), a record with the keys of two schemas under
``schema = "auto"`` (set ``finetune.schema`` to say which), two user turns in a
row and a conversation ending on a user turn (no reply to learn; torchtune
refuses non-alternating turns as well). ``"output": null`` is reported as a
null field (``bad_field``), and under ``auto`` a record with the fields of one
schema in part (``instruction`` without ``output``) as that schema's missing
field. With
``skip_bad = True`` the record is skipped and counted under its reason in
:class:`ReadReport` instead. Nothing is dropped without being counted.

Unknown keys (decided 2026-12-04): keys of a *record* beyond its schema's are
metadata and ignored (``id``, ``source``; tatsu-lab/alpaca's ``text`` column).
Keys of a *message* change what is trained, so a message may carry only
``role``, ``content``, ``weight`` (assistant), ``input`` (user) and ``name``;
``name`` (OpenAI's participant name) is ignored, since no template shows
speakers, and any other key with a non-null value (``tool_calls``,
``function_call``, ...) is a bad record (``unknown_key``). A null value counts
as absent everywhere: Arrow-backed ``datasets`` rows give every message every
key some message has, as null.

A name that is not an existing path and does not end like a data file
(``.json``, ``.jsonl``, ``.txt``, ``.gz``, ... in any case) is a Hugging Face
``datasets`` name and is loaded with ``datasets.load_dataset(name, split=split)``
(downloads, so the tests use local files only); its rows are numbered from 1 in
errors. How names, folders, compressed and pretty-printed files are handled is
in :mod:`llamaforge.finetune.data_files`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.data_files import BadRecord as BadRecord
from llamaforge.finetune.data_files import ReadReport as ReadReport
from llamaforge.finetune.data_files import (
    data_names,
    local_path,
    no_duplicates,
    records_from_file,
)
from llamaforge.finetune.templates import check_messages

SCHEMAS = ("auto", "messages", "alpaca", "flan")
_MESSAGE_KEYS = {"role", "content", "weight", "input", "name"}
_KEYS = {
    "messages": ("messages",),
    "alpaca": ("instruction", "output"),
    "flan": ("inputs", "targets"),
}


def _records_from_dataset(name: str, split: str) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"finetune.data {name!r} is not a file, and reading a Hugging Face dataset needs "
            "`pip install datasets`"
        ) from None
    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as error:  # datasets raises many types; report it as one line
        raise ConfigError(
            f"finetune.data {name!r} is no existing file, and loading it as a Hugging Face "
            f"dataset (split {split!r}) failed: {error}"
        ) from None
    for index, row in enumerate(rows, start=1):
        yield f"{name}[{split}] row {index}", row


def _text(record: dict, key: str, optional: bool = False) -> str:
    value = record.get(key)
    if value is None:
        if optional:
            return ""
        if key in record:
            raise BadRecord("bad_field", f"field {key!r} is null; give it a string")
        raise BadRecord("missing_field", f"missing field {key!r}")
    if not isinstance(value, str):
        raise BadRecord("bad_field", f"field {key!r} must be a string, got {type(value).__name__}")
    return _utf8(value, key)


def _utf8(value: str, key: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(
            "not_utf8", f"field {key!r} holds a lone surrogate escape, which is not UTF-8 text"
        ) from None
    return value


def _response(value: str, key: str) -> str:
    if not value.strip():
        raise BadRecord("empty_response", f"empty response in {key!r}")
    return value


def to_messages(record: Any, schema: str) -> list[dict]:
    """One record as checked messages (raises BadRecord with a reason)."""
    if not isinstance(record, dict):
        raise BadRecord(
            "not_an_object", f"a record must be a JSON object, got {type(record).__name__}"
        )
    no_duplicates(record, "the record")
    if schema == "auto":
        matching = [s for s, keys in _KEYS.items() if all(k in record for k in keys)]
        if len(matching) > 1:
            raise BadRecord(
                "ambiguous_schema",
                f"record has the fields of the {' and the '.join(matching)} schemas; keep one "
                "set of fields or set finetune.schema to the one to read",
            )
        partial = [s for s, keys in _KEYS.items() if any(k in record for k in keys)]
        if not matching and len(partial) == 1:
            matching = partial  # e.g. "instruction" without "output": say what is missing
        schema = matching[0] if matching else ""
        if not schema:
            raise BadRecord(
                "unknown_schema",
                "record matches no schema (messages | instruction+output | inputs+targets)",
            )
    if schema == "alpaca":
        user = {"role": "user", "content": _text(record, "instruction")}
        user["input"] = _text(record, "input", optional=True)
        return [
            user,
            {"role": "assistant", "content": _response(_text(record, "output"), "output")},
        ]
    if schema == "flan":
        return [
            {"role": "user", "content": _text(record, "inputs")},
            {"role": "assistant", "content": _response(_text(record, "targets"), "targets")},
        ]
    raw = record.get("messages")
    if raw is None:
        if "messages" in record:
            raise BadRecord("bad_field", "field 'messages' is null; give it a list of messages")
        raise BadRecord("missing_field", "missing field 'messages'")
    try:
        check_messages(raw)
    except DataError as error:
        text = str(error)
        reason = "bad_messages"
        if "unknown role" in text:
            reason = "unknown_role"
        elif "'weight'" in text:
            reason = "bad_weight"
        raise BadRecord(reason, text) from None
    messages = []
    for index, turn in enumerate(raw):
        no_duplicates(turn, f"messages[{index}]")
        unknown = sorted(k for k, v in turn.items() if k not in _MESSAGE_KEYS and v is not None)
        if unknown:
            raise BadRecord(
                "unknown_key",
                f"messages[{index}] has key {unknown[0]!r}, which is not read (a message has "
                "role, content, weight, input and name); remove it or convert the record",
            )
        if index and turn["role"] == "user" and raw[index - 1]["role"] == "user":
            raise BadRecord(
                "bad_messages",
                f"messages[{index - 1}] and [{index}] are two user turns in a row; merge them "
                "or put the assistant's reply between them",
            )
        message = {"role": turn["role"], "content": _utf8(turn["content"], f"messages[{index}]")}
        if turn.get("input") is not None:
            if turn["role"] != "user":
                raise BadRecord("bad_messages", f"messages[{index}]: only a user turn has 'input'")
            message["input"] = _text(turn, "input")  # as the Alpaca input: the template shows it
        if turn.get("weight") == 0:  # validated by check_messages; 1 is the default
            message["weight"] = 0
        messages.append(message)
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        raise BadRecord("no_response", "no assistant turn to train on")
    if all(m.get("weight") == 0 for m in answers):
        raise BadRecord(
            "no_response", "every assistant turn has weight 0, so nothing is trained on"
        )
    if messages[-1]["role"] == "user":
        raise BadRecord(
            "bad_messages",
            f"messages[{len(messages) - 1}]: the conversation ends on a user turn with no reply "
            "to learn; drop that turn or add the assistant's reply",
        )
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            _response(message["content"], f"messages[{index}].content")
    return messages


def read_conversations(
    data: str, schema: str = "auto", skip_bad: bool = False, split: str = "train"
) -> tuple[list[list[dict]], ReadReport]:
    """Every record of ``data`` (comma-separated files or a dataset name) as messages.

    A whole ``data`` string that is an existing path is one file, commas and
    all (see :mod:`llamaforge.finetune.data_files`).
    """
    if schema not in SCHEMAS:
        raise ConfigError(f"finetune.schema {schema!r} is unknown; use one of {', '.join(SCHEMAS)}")
    names = data_names(data)
    if not names:
        raise ConfigError("finetune.data is empty: give a JSON/JSON-lines file or a dataset name")
    report = ReadReport()
    out: list[list[dict]] = []
    for name in names:
        path = local_path(name)
        if path is not None:
            records = records_from_file(path, skip_bad, report)
        else:
            records = _records_from_dataset(name, split)
        for where, record in records:
            report.records += 1
            try:
                out.append(to_messages(record, schema))
                report.where.append(where)
            except BadRecord as error:
                if not skip_bad:
                    raise DataError(
                        f"{where}: {error}; fix the record or set finetune.skip_bad_examples = true"
                    ) from None
                report.skipped[error.reason] += 1
    report.kept = len(out)
    if not out:
        raise DataError(f"finetune.data {data!r} holds no usable example ({report.to_dict()})")
    return out, report
