"""Instruction data: records from JSON / JSON-lines files or a ``datasets`` name, as messages.

Schemas (``schema = "auto"`` picks per record by its keys, in this order):

* ``messages``: ``{"messages": [{"role": ..., "content": ...}, ...]}`` with an
  optional leading ``system`` turn and ``user``/``assistant`` turns; every
  assistant turn is trained on (multi-turn).
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
refuses non-alternating turns as well). With
``skip_bad = True`` the record is skipped and counted under its reason in
:class:`ReadReport` instead. Nothing is dropped without being counted.

A name that is not an existing path and does not end like a data file
(``.json``, ``.jsonl``, ``.txt``, ``.gz``, ... in any case) is a Hugging Face
``datasets`` name and is loaded with ``datasets.load_dataset(name, split=split)`` (downloads, so the
tests use local files only); its rows are numbered from 1 in errors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.templates import check_messages

SCHEMAS = ("auto", "messages", "alpaca", "flan")
# Names ending so are files (a typo'd path), never Hugging Face dataset names.
_FILE_SUFFIXES = (".json", ".jsonl", ".txt", ".gz", ".zst", ".bz2", ".xz", ".csv", ".parquet")
_KEYS = {
    "messages": ("messages",),
    "alpaca": ("instruction", "output"),
    "flan": ("inputs", "targets"),
}


@dataclass
class ReadReport:
    """What reading kept and what it skipped, by reason."""

    records: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    where: list[str] = field(default_factory=list)  # file:line (or row) of each kept record

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "kept": self.kept, "skipped": dict(self.skipped)}


class BadRecord(DataError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Object(dict):
    """A JSON object as read, remembering the keys it gave more than once."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        out.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return out


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object)


def _no_duplicates(obj: Any, where: str) -> None:
    if isinstance(obj, _Object) and obj.duplicates:
        raise BadRecord(
            "duplicate_key",
            f"{where} gives key {obj.duplicates[0]!r} twice (JSON would keep the last one "
            "silently); keep one",
        )


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _json_array(path: Path, raw: bytes) -> Iterator[tuple[int, Any]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise BadRecord("not_utf8", f"{path}:{line}: not UTF-8 text ({error.reason})") from None
    decoder = json.JSONDecoder()
    try:
        records = _loads(text)
    except RecursionError:
        raise BadRecord("invalid_json", f"{path}:1: invalid JSON (nested too deeply)") from None
    except json.JSONDecodeError as error:
        raise BadRecord(
            "invalid_json", f"{path}:{error.lineno}: invalid JSON ({error.msg})"
        ) from None
    except ValueError as error:  # an integer past Python's digit limit
        raise BadRecord("invalid_json", f"{path}: unreadable JSON ({error})") from None
    if not isinstance(records, list):
        raise BadRecord("invalid_json", f"{path}:1: expected a JSON array of records")
    # Re-scan for each record's line number (json.loads does not keep it).
    index = text.index("[") + 1
    for record in records:
        while text[index] in " \t\r\n,":
            index += 1
        _, end = decoder.raw_decode(text, index)
        yield _line_of(text, index), record
        index = end


def _records_from_file(path: Path, skip_bad: bool, report: ReadReport) -> Iterator[tuple[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read instruction data {path}: {error}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM (Windows editors): not part of the JSON
    if raw.lstrip()[:1] == b"[":
        try:
            for line, record in _json_array(path, raw):
                yield f"{path}:{line}", record
        except BadRecord as error:  # the whole file is unreadable: never skipped silently
            raise DataError(
                f"{error}; the file is one JSON array, so nothing of it was read"
            ) from None
        return
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise BadRecord("not_utf8", f"{where}: not UTF-8 text ({error.reason})") from None
            try:
                record = _loads(text)
            except json.JSONDecodeError as error:
                raise BadRecord("invalid_json", f"{where}: invalid JSON ({error.msg})") from None
            except ValueError as error:  # an integer past Python's digit limit
                raise BadRecord("invalid_json", f"{where}: unreadable JSON ({error})") from None
            except RecursionError:
                raise BadRecord(
                    "invalid_json", f"{where}: invalid JSON (nested too deeply)"
                ) from None
        except BadRecord as error:
            report.records += 1
            if not skip_bad:
                raise DataError(
                    f"{error}; fix it or set finetune.skip_bad_examples = true"
                ) from None
            report.skipped[error.reason] += 1
            continue
        yield where, record


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
    _no_duplicates(record, "the record")
    if schema == "auto":
        matching = [s for s, keys in _KEYS.items() if all(k in record for k in keys)]
        if len(matching) > 1:
            raise BadRecord(
                "ambiguous_schema",
                f"record has the fields of the {' and the '.join(matching)} schemas; keep one "
                "set of fields or set finetune.schema to the one to read",
            )
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
        raise BadRecord("missing_field", "missing field 'messages'")
    try:
        check_messages(raw)
    except DataError as error:
        reason = "unknown_role" if "unknown role" in str(error) else "bad_messages"
        raise BadRecord(reason, str(error)) from None
    messages = []
    for index, turn in enumerate(raw):
        _no_duplicates(turn, f"messages[{index}]")
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
        messages.append(message)
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        raise BadRecord("no_response", "no assistant turn to train on")
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
    """Every record of ``data`` (comma-separated files or a dataset name) as messages."""
    if schema not in SCHEMAS:
        raise ConfigError(f"finetune.schema {schema!r} is unknown; use one of {', '.join(SCHEMAS)}")
    names = [n.strip() for n in data.split(",") if n.strip()]
    if not names:
        raise ConfigError("finetune.data is empty: give a JSON/JSON-lines file or a dataset name")
    report = ReadReport()
    out: list[list[dict]] = []
    for name in names:
        path = Path(name)
        if path.exists():
            records = _records_from_file(path, skip_bad, report)
        elif path.suffix.lower() in _FILE_SUFFIXES or name.startswith((".", "/", "~")):
            raise ConfigError(f"finetune.data: instruction data file {name} does not exist")
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
