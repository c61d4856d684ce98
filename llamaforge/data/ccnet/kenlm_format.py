"""Checks on KenLM model files (ARPA text or KenLM binary) before the C++ library loads them.

Why: KenLM trusts its input in ways that crash the process instead of raising.
We measured, with the ``kenlm`` 0.3.0 wheel: an ARPA count written
``ngram 2=-5`` is read as ``2**64 - 5`` and the table sized from it overflows
(SIGSEGV while loading); in a binary file an order of 0 crashes (SIGSEGV), a
NaN probing multiplier divides by zero (SIGFPE), and a word index out of range
in the probing vocabulary, or a damaged trie pointer, reads outside the model
while scoring (SIGSEGV; valgrind saw out-of-bounds reads, no writes).

What :func:`check_kenlm_file` checks:

- ARPA, plain or gzip/bzip2/xz-compressed (KenLM decompresses those itself):
  the ``\\data\\`` block, only. Orders must run 1, 2, ... and every count must
  be a plain decimal, with at most ``2**32 - 1`` unigrams and, for an
  uncompressed file, no count above the file's size (each n-gram takes a line
  of several bytes; compressed files get a bound of ``2**40``). KenLM's own
  parser then checks the n-gram lines strictly, count for count.
- KenLM binary: the whole fixed header (the magic with format version 5 and
  its test values exactly as KenLM writes them, an order of at least 1, a
  finite probing multiplier of at least 1, a known model type, a 0/1
  vocabulary flag, every count at most 8 per byte of the file, fewer than
  ``2**32`` unigrams); for the probing types (``build_binary``'s default and
  what CCNet's ``<lang>.arpa.bin`` files use) also the exact size of every
  table, and every vocabulary entry: its word index must fall inside the
  unigram table and the table must keep an empty slot.

  Trie binaries (``build_binary trie``, ``quant trie``, ...) are refused:
  their bit-packed pointers cannot be checked short of reimplementing the
  trie, and damaged ones crashed scoring in about 4% of random one-field
  edits to our tiny trie files. CCNet's ``<lang>.arpa.bin`` files are probing
  binaries; a trie model can be used as its ARPA, or rebuilt as probing.

Not checked: ARPA n-gram lines (KenLM's parser does); and in probing files the
n-gram tables' contents (hashes and floats: damage there gives wrong scores,
and a table with no empty slot left could make a lookup loop forever).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import mmap
import re
import struct
from pathlib import Path
from typing import IO, NoReturn

import numpy as np

from llamaforge.errors import ConfigError

BINARY_MAGIC = b"mmap lm http://kheafield.com/code"
_MAGIC_V5 = b"mmap lm http://kheafield.com/code format version 5\n\0"
# KenLM's ``Sanity`` header: the magic padded to 8 bytes, then its test values.
SANITY = _MAGIC_V5.ljust(56, b"\0") + struct.pack("<fffIIIQ", 0.0, 1.0, -0.5, 1, 2**32 - 1, 0, 1)
# FixedWidthParameters: order, probing multiplier, model type, has vocabulary, search version.
_FIXED = struct.Struct("<B3xfiB3xI")
MODEL_TYPES = ("probing", "rest probing", "trie", "quant trie", "array trie", "quant array trie")
MAX_UNIGRAMS = 2**32 - 1  # KenLM's WordIndex is 32 bits
MAX_COMPRESSED_COUNT = 2**40
_COMPRESSED = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
_COUNT_LINE = re.compile(r"ngram (\d+)=[ \t]*(\S*)[ \t]*")
_LINE_LIMIT = 1 << 16


def _fail(field: str, path: Path, problem: str) -> NoReturn:
    raise ConfigError(
        f"{field}: {path} is damaged or not a KenLM model ({problem}); "
        "point it at an intact ARPA file or a binary built by KenLM's build_binary"
    )


def check_kenlm_file(path: str | Path, field: str = "lm_model") -> None:
    """A ConfigError naming ``field`` if the module docstring's checks find ``path`` unsound."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(len(SANITY))
            if head.startswith(BINARY_MAGIC):
                if size < len(SANITY) + _FIXED.size:
                    _fail(field, path, "the binary header is cut short")
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    _check_binary(data, field, path)
                return
        opener = next((o for magic, o in _COMPRESSED if head.startswith(magic)), None)
        if opener is None:
            with open(path, "rb") as text:
                _check_arpa_counts(text, size, field, path)
        else:
            with opener(path, "rb") as text:
                _check_arpa_counts(text, MAX_COMPRESSED_COUNT, field, path)
    except (OSError, EOFError, lzma.LZMAError) as error:
        raise ConfigError(f"{field}: cannot load KenLM model {path}: {error}") from error


def _check_arpa_counts(text: IO[bytes], max_count: int, field: str, path: Path) -> None:
    """Check the ``\\data\\`` block the way KenLM's ``ReadARPACounts`` reads it."""

    def line() -> str:
        raw = text.readline(_LINE_LIMIT)
        if not raw:
            _fail(field, path, "the file ends before its \\data\\ block is complete")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    first = line()
    while not first.strip() or first.startswith("#"):
        first = line()
    if first.startswith(BINARY_MAGIC.decode()):
        _fail(
            field, path, "a compressed KenLM binary: decompress it, KenLM maps binaries as they are"
        )
    if first != "\\data\\":
        _fail(field, path, f"the first line is {first[:60]!r}, an ARPA file starts with \\data\\")
    order = 0
    while (entry := line()).strip():
        match = _COUNT_LINE.fullmatch(entry)
        if not match:
            _fail(field, path, f"ARPA count line {entry[:60]!r} is not 'ngram N=COUNT'")
        n, count = int(match[1]), match[2]
        if n != order + 1:
            _fail(field, path, f"ARPA count line {entry!r}: orders must run 1, 2, 3, ...")
        if not count.isdigit() or not count.isascii():
            _fail(field, path, f"ARPA count line {entry!r}: the count is not a nonnegative integer")
        limit = min(max_count, MAX_UNIGRAMS) if n == 1 else max_count
        if int(count) > limit:
            _fail(field, path, f"ARPA count line {entry!r}: {count} is more than {limit}")
        order = n
    if order == 0:
        _fail(field, path, "the \\data\\ block lists no n-gram counts")


def _check_binary(data: mmap.mmap, field: str, path: Path) -> None:
    if data[: len(SANITY)] != SANITY:
        _fail(
            field, path, "the binary header is not KenLM's format version 5 for this architecture"
        )
    order, multiplier, model_type, has_vocabulary, _ = _FIXED.unpack_from(data, len(SANITY))
    if order < 1:
        _fail(field, path, f"order {order}")
    if not (math.isfinite(multiplier) and multiplier >= 1.0):
        _fail(field, path, f"probing multiplier {multiplier}, it must be finite and at least 1")
    if not 0 <= model_type < len(MODEL_TYPES):
        _fail(field, path, f"model type {model_type} is not one of 0..{len(MODEL_TYPES) - 1}")
    if has_vocabulary not in (0, 1):
        _fail(field, path, f"the vocabulary flag is {has_vocabulary}, not 0 or 1")
    counts_at = len(SANITY) + _FIXED.size
    header_size = -(-(counts_at + 8 * order) // 8) * 8  # KenLM's TotalHeaderSize
    if header_size > len(data):
        _fail(field, path, f"the header lists {order} counts but the file ends first")
    counts = list(struct.unpack_from(f"<{order}Q", data, counts_at))
    if not 1 <= counts[0] <= MAX_UNIGRAMS:
        _fail(field, path, f"{counts[0]} unigrams")
    for n, count in enumerate(counts, 1):
        if count > 8 * len(data):
            _fail(field, path, f"{count} {n}-grams cannot fit in {len(data)} bytes")
    if model_type in (0, 1):
        rest = model_type == 1
        _check_probing(
            data, header_size, counts, multiplier, rest, bool(has_vocabulary), field, path
        )
    else:  # see the module docstring: bit-packed pointers we cannot check
        raise ConfigError(
            f"{field}: {path} is a KenLM {MODEL_TYPES[model_type]} binary, whose bit-packed "
            "pointers cannot be checked before KenLM reads them (a damaged one crashes the "
            "process); pass the .arpa, or a probing binary (`build_binary probing "
            "model.arpa model.bin`, what CCNet's <lang>.arpa.bin files are)"
        )


def _buckets(entries: int, multiplier: float) -> int:
    """``ProbingHashTable::Size``'s bucket count (KenLM multiplies in float32).

    A product past float32 (a damaged multiplier) counts as 2**64 buckets,
    which no file holds.
    """
    with np.errstate(over="ignore"):
        scaled = float(np.float32(multiplier) * np.float32(entries))
    return max(entries + 1, int(min(scaled, 2.0**64)))


_VOCAB_ENTRY = np.dtype([("key", "<u8"), ("value", "<u4")])  # #pragma pack(4): 12 bytes


def _check_probing(
    data: mmap.mmap,
    start: int,
    counts: list[int],
    multiplier: float,
    rest: bool,
    has_vocabulary: bool,
    field: str,
    path: Path,
) -> None:
    """Exact table sizes, and the vocabulary's word indices, of a probing model."""
    vocab_buckets = _buckets(counts[0], multiplier)
    expected = start + 8 + 12 * vocab_buckets  # vocabulary header + its hash table
    expected += (counts[0] + 1) * (12 if rest else 8)  # unigram weights, <unk> included
    for count in counts[1:-1]:  # middle orders: key + weights
        expected += _buckets(count, multiplier) * (20 if rest else 16)
    expected += _buckets(counts[-1], multiplier) * 12  # highest order: key + probability
    if len(data) < expected or (len(data) > expected and not has_vocabulary):
        _fail(
            field,
            path,
            f"the file has {len(data)} bytes, its counts {counts} call for {expected}"
            + (" plus the vocabulary's words" if has_vocabulary else ""),
        )
    version, bound = struct.unpack_from("<II", data, start)
    if version != 0 or bound > counts[0] + 1:
        _fail(field, path, f"probing vocabulary version {version}, bound {bound}")
    full, top = _vocab_table_stats(data, start + 8, vocab_buckets)
    if full:
        _fail(field, path, "the vocabulary hash table has no empty slot")
    if top > counts[0]:
        _fail(field, path, f"a vocabulary entry points past the {counts[0] + 1} unigrams")


def _vocab_table_stats(data: mmap.mmap, offset: int, buckets: int) -> tuple[bool, int]:
    """(no slot empty, largest word index) of the vocabulary table.

    Numpy views of ``data`` live only inside functions like this one, so
    they are gone when it returns: an mmap with a live view cannot be closed.
    """
    table = np.frombuffer(data, _VOCAB_ENTRY, buckets, offset)
    used = table["key"] != 0
    return bool(used.all()), int(table["value"][used].max()) if used.any() else 0
