"""Instruction data files: which paths ``finetune.data`` names, and their records with line numbers.

Split from :mod:`llamaforge.finetune.data` (which turns records into
messages) to keep each file short. Decisions (2026-12-04, after a red-team
pass; ``data``'s docstring has the earlier ones):

* **Names.** ``~`` is expanded. When the whole ``finetune.data`` string is an
  existing path it is that one path, even if it contains a comma (``a,b.jsonl``);
  otherwise it is split on commas. (Listing a file whose name has a comma
  together with others is therefore not possible: rename it.)
* **A directory** is refused with the data files it holds to name instead:
  reading "every file in it" would be a guess about which files are data.
* **Compressed files** are recognised by their first bytes, not their name:
  gzip, bzip2 and xz are read (the standard library has them); zstd is refused
  with the command that decompresses it. Line numbers in errors are those of the
  decompressed text.
* **Pretty-printed JSON** (objects spread over several lines, one after
  another) is neither JSON-lines nor one array: the first line that is not JSON
  makes us try the file as a stream of JSON values, and when that reads and a
  value spans lines the whole file is refused with the two formats we read,
  instead of counting every line as a bad record.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaforge.errors import ConfigError, DataError

FORMATS_HINT = "one JSON object per line (JSONL) or one JSON array"
_COMPRESSED = (  # (magic bytes, name, decompress or None = not read)
    (b"\x1f\x8b", "gzip", gzip.decompress),
    (b"\xfd7zXZ\x00", "xz", lzma.decompress),
    (b"\x28\xb5\x2f\xfd", "zstd", None),
)
_DATA_SUFFIXES = (".json", ".jsonl", ".gz", ".bz2", ".xz", ".zst")


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
    """One unusable record; ``reason`` is what ``skip_bad_examples`` counts it under."""

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


def no_duplicates(obj: Any, where: str) -> None:
    """Raise BadRecord if a JSON object gave a key twice (JSON keeps the last, silently)."""
    if isinstance(obj, _Object) and obj.duplicates:
        raise BadRecord(
            "duplicate_key",
            f"{where} gives key {obj.duplicates[0]!r} twice (JSON would keep the last one "
            "silently); keep one",
        )


def data_names(data: str) -> list[str]:
    """The names ``finetune.data`` lists: the whole string if it is an existing path, else split."""
    whole = data.strip()
    if whole and Path(whole).expanduser().exists():
        return [whole]
    return [n.strip() for n in data.split(",") if n.strip()]


def local_path(name: str) -> Path | None:
    """The file ``name`` is, None for a dataset name; ConfigError for a missing file or a folder."""
    path = Path(name).expanduser()
    if path.is_dir():
        try:
            names = [p.name for p in path.iterdir()]
        except OSError:
            names = []
        found = sorted(n for n in names if n.lower().endswith(_DATA_SUFFIXES))
        listed = f" (it holds {', '.join(found[:5])}{', ...' if len(found) > 5 else ''})"
        raise ConfigError(
            f"finetune.data: {name} is a directory{listed if found else ''}; name the "
            'instruction data files themselves, comma-separated (finetune.data = "a.jsonl,b.jsonl")'
        )
    if path.exists():
        return path
    suffixes = (".json", ".jsonl", ".txt", ".gz", ".zst", ".bz2", ".xz", ".csv", ".parquet")
    if path.suffix.lower() in suffixes or name.startswith((".", "/", "~")):
        shown = f"{name} ({path})" if str(path) != name else name
        raise ConfigError(f"finetune.data: instruction data file {shown} does not exist")
    return None


def _decompressed(path: Path, raw: bytes) -> bytes:
    kinds = [(n, f) for magic, n, f in _COMPRESSED if raw.startswith(magic)]
    if raw[:3] == b"BZh" and raw[4:10] == b"1AY&SY":
        kinds = [("bzip2", bz2.decompress)]
    if not kinds:
        return raw
    name, decompress = kinds[0]
    if decompress is None:
        raise DataError(
            f"{path} is {name}-compressed, which is not read; decompress it first "
            f"(zstd -d {path}) and name the result"
        )
    try:
        return decompress(raw)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as error:
        raise DataError(
            f"{path}: cannot decompress its {name} data ({error}); the file may be truncated "
            "or damaged: compress it again from the original"
        ) from None


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


def _multiline_value(raw: bytes) -> int | None:
    """Line where a JSON value spanning lines starts, if the file is a stream of JSON values."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder, index, first = json.JSONDecoder(), 0, None
    while True:
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
        if index == len(text):
            return first
        try:
            _, end = decoder.raw_decode(text, index)
        except (ValueError, RecursionError):
            return None
        if first is None and "\n" in text[index:end]:
            first = _line_of(text, index)
        index = end


def records_from_file(path: Path, skip_bad: bool, report: ReadReport) -> Iterator[tuple[str, Any]]:
    """``(file:line, record)`` of a JSON-lines or JSON-array file (maybe compressed)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read instruction data {path}: {error}") from None
    raw = _decompressed(path, raw)
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
    checked_layout = False
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
                spans = None if checked_layout else _multiline_value(raw)
                checked_layout = True
                if spans is not None:
                    raise DataError(
                        f"{path}:{spans}: a JSON record spans several lines (pretty-printed "
                        f"JSON); a data file must be {FORMATS_HINT}, so nothing of it was read"
                    ) from None
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
