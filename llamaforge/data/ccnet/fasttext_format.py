"""A pure-Python structural check of fastText model files (``.bin`` and quantized ``.ftz``).

Why: fastText's C++ loader (``FastText::loadModel``) trusts every size in the
file. It allocates ``m * n`` floats for a matrix before reading them, so a
header edited to ``m = 2**17, n = 2**12`` in a 1.7 KB file corrupts the heap
("double free or corruption", SIGABRT); larger values do the same or raise
``std::bad_alloc``, depending on the memory free. A word without its NUL
terminator makes it append EOF to the word until memory runs out, and an
``Args.dim`` smaller than the matrices' columns makes prediction write past
its buffers (valgrind). So
:func:`check_fasttext_file` walks the whole layout with :mod:`struct` first,
checking each declared size against the bytes left before reading it (it
never allocates from a size in the file).

The layout, as fastText 0.9.x writes it (``src/fasttext.cc`` ``saveModel``,
``args.cc``, ``dictionary.cc``, ``densematrix.cc``, ``quantmatrix.cc``,
``productquantizer.cc``), little-endian:

- int32 magic 793712314, int32 version (11 or 12);
- Args: int32 dim, ws, epoch, minCount, neg, wordNgrams, loss, model, bucket,
  minn, maxn, lrUpdateRate; float64 t;
- Dictionary: int32 size, nwords, nlabels; int64 ntokens, pruneidx_size;
  ``size`` entries (NUL-terminated word, int64 count, int8 type 0 word /
  1 label, words first); ``pruneidx_size`` pairs of int32 (bucket, row);
- bool quant flag; the input matrix: dense (int64 m, n; m*n float32) or
  quantized (bool qnorm; int64 m, n; int32 codesize; codesize bytes; a
  product quantizer: int32 dim, nsubq, dsub, lastdsub, dim*256 float32
  centroids; if qnorm, m bytes of norm codes and a second quantizer);
- bool qout flag; the output matrix, quantized only if both flags are set;
- nothing after it.

On top of the sizes it checks what the loader and prediction rely on: entry
types and order, ``nwords + nlabels == size``, row counts (input:
``nwords + bucket``, or ``nwords + pruneidx_size`` when pruned; output:
``nlabels`` for supervised models, else ``nwords``), columns equal to ``dim``,
quantizers whose ``nsubq``/``dsub``/``lastdsub`` split ``dim`` exactly,
``codesize == m * nsubq``, pruned rows in range, and a nonzero ``bucket``
whenever subwords or word n-grams are hashed into it (fastText divides by
it), and that labels are UTF-8 (fastText's Python ``predict`` decodes them).
Not checked: the float values (NaN or inf only gives wrong scores), the
words' text, and counts beyond their sign.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from llamaforge.errors import ConfigError

MAGIC = 793712314
VERSIONS = (11, 12)  # 12 is fastText 0.9's; 11 differs only in ignoring maxn when supervised
KSUB = 256  # centroids per sub-quantizer (ProductQuantizer's nbits = 8)
# Args' int32 fields in file order (a float64 ``t`` follows them).
ARG_NAMES = ("dim", "ws", "epoch", "minCount", "neg", "wordNgrams")
ARG_NAMES += ("loss", "model", "bucket", "minn", "maxn", "lrUpdateRate")
MODELS = {1: "cbow", 2: "skipgram", 3: "supervised"}
LOSSES = {1: "hs", 2: "ns", 3: "softmax", 4: "ova"}

_I8, _I32 = struct.Struct("<b"), struct.Struct("<i")
_ARGS = struct.Struct("<12id")
_DICT_HEADER = struct.Struct("<iiiqq")
_ENTRY_TAIL = struct.Struct("<qb")  # count, type
_DENSE_HEADER = struct.Struct("<qq")
_QUANT_HEADER = struct.Struct("<qqi")  # after the qnorm bool
_PQ_HEADER = struct.Struct("<iiii")


@dataclass(frozen=True)
class FastTextLayout:
    """What a sound fastText file declares (for messages and tests)."""

    version: int
    model: str
    dim: int
    nwords: int
    nlabels: int
    pruned: bool
    quantized_input: bool
    quantized_output: bool


class _Reader:
    """Little-endian reads from ``data`` that refuse to run past its end."""

    def __init__(self, data: bytes | mmap.mmap, path: Path, field: str) -> None:
        self.data, self.path, self.field, self.pos = data, path, field, 0

    def fail(self, where: str, problem: str) -> NoReturn:
        raise ConfigError(
            f"{self.field}: {self.path} is damaged or not a fastText model "
            f"({where}: {problem}); point it at an intact .bin/.ftz from fasttext.cc "
            "or one saved by fastText"
        )

    def left(self) -> int:
        return len(self.data) - self.pos

    def read(self, layout: struct.Struct, where: str) -> tuple:
        if layout.size > self.left():
            self.fail(where, f"{layout.size} bytes needed, only {self.left()} left")
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def skip(self, count: int, item_size: int, where: str) -> int:
        """Step over ``count`` items (checked against the bytes left); their start offset."""
        if count < 0:
            self.fail(where, f"negative size {count}")
        if count * item_size > self.left():
            self.fail(where, f"{count} x {item_size} bytes declared, {self.left()} left")
        start = self.pos
        self.pos += count * item_size
        return start

    def flag(self, where: str) -> bool:
        (value,) = self.read(_I8, where)
        if value not in (0, 1):
            self.fail(where, f"a bool must be 0 or 1, not {value}")
        return bool(value)

    def word(self, where: str) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            self.fail(where, "the word has no NUL terminator before the end of the file")
        word = self.data[self.pos : end]
        self.pos = end + 1
        return word


def _read_args(r: _Reader) -> dict[str, int | float]:
    (magic,) = r.read(_I32, "magic")
    if magic != MAGIC:
        r.fail("magic", f"{magic} is not fastText's {MAGIC}")
    (version,) = r.read(_I32, "version")
    if version not in VERSIONS:
        r.fail("version", f"{version}, fastText 0.9 reads versions 11 and 12")
    *ints, t = r.read(_ARGS, "Args")
    args: dict[str, int | float] = dict(zip(ARG_NAMES, ints, strict=True))
    args["t"], args["version"] = t, version
    for name in ARG_NAMES:
        if args[name] < 0:
            r.fail(f"Args.{name}", f"negative value {args[name]}")
    if args["dim"] == 0:
        r.fail("Args.dim", "dim must be at least 1")
    if args["model"] not in MODELS:
        r.fail("Args.model", f"{args['model']} is not one of {sorted(MODELS)}")
    if args["loss"] not in LOSSES:
        r.fail("Args.loss", f"{args['loss']} is not one of {sorted(LOSSES)}")
    if version == 11 and args["model"] == 3:
        args["maxn"] = 0  # the loader's backward-compatibility rule
    if args["bucket"] == 0 and (args["maxn"] > 0 or args["wordNgrams"] > 1):
        r.fail("Args.bucket", "bucket is 0 but subwords or word n-grams are hashed into it")
    return args


def _read_dictionary(r: _Reader, args: dict) -> tuple[int, int, int]:
    """``(nwords, nlabels, pruneidx_size)`` after checking every entry and pruned pair."""
    size, nwords, nlabels, ntokens, pruneidx_size = r.read(_DICT_HEADER, "Dictionary header")
    for name, value in (("size", size), ("nwords", nwords), ("nlabels", nlabels)):
        if value < 0:
            r.fail(f"Dictionary.{name}", f"negative value {value}")
    if size == 0:
        r.fail("Dictionary.size", "the dictionary is empty")
    if nwords + nlabels != size:
        r.fail("Dictionary.size", f"nwords {nwords} + nlabels {nlabels} != size {size}")
    if ntokens < 0:
        r.fail("Dictionary.ntokens", f"negative value {ntokens}")
    if pruneidx_size < -1:
        r.fail("Dictionary.pruneidx_size", f"{pruneidx_size} (-1 means not pruned)")
    min_entry = 1 + _ENTRY_TAIL.size  # an empty word's NUL, count, type
    if size * min_entry > r.left():
        r.fail("Dictionary.size", f"{size} entries cannot fit in the {r.left()} bytes left")
    for i in range(size):
        where = f"Dictionary entry {i}"
        word = r.word(where)
        count, kind = r.read(_ENTRY_TAIL, where)
        if count < 0:
            r.fail(where, f"negative count {count}")
        if kind != (0 if i < nwords else 1):
            r.fail(where, f"type {kind}: the first {nwords} entries are words (0), then labels (1)")
        if kind == 1 and not _is_utf8(word):  # fastText's Python predict() decodes labels
            r.fail(where, f"the label {word[:40]!r} is not UTF-8")
    if pruneidx_size > 0:
        start = r.skip(pruneidx_size, 8, "Dictionary.pruneidx_size")
        buckets, rows = _pair_ranges(r.data, start, pruneidx_size)
        if buckets[0] < 0 or buckets[1] >= args["bucket"]:
            r.fail("Dictionary pruneidx", f"a bucket outside 0..{args['bucket'] - 1}")
        if rows[0] < 0 or rows[1] >= pruneidx_size:
            r.fail("Dictionary pruneidx", f"a row outside 0..{pruneidx_size - 1}")
    return nwords, nlabels, pruneidx_size


def _is_utf8(word: bytes) -> bool:
    try:
        word.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _pair_ranges(data: bytes | mmap.mmap, start: int, count: int) -> tuple[tuple, tuple]:
    """((min, max) bucket, (min, max) row) of the pruned pairs.

    A function of its own so the numpy view of ``data`` is gone when it
    returns: an mmap with a live view cannot be closed.
    """
    pairs = np.frombuffer(data, "<i4", 2 * count, start).reshape(-1, 2)
    low, high = pairs.min(axis=0).tolist(), pairs.max(axis=0).tolist()
    return (low[0], high[0]), (low[1], high[1])


def _read_quantizer(r: _Reader, where: str, dim: int) -> int:
    """Check one ProductQuantizer for vectors of ``dim`` floats; its ``nsubq``."""
    pq_dim, nsubq, dsub, lastdsub = r.read(_PQ_HEADER, where)
    if pq_dim != dim:
        r.fail(f"{where}.dim", f"{pq_dim}, but the vectors have {dim} columns")
    if dsub < 1 or nsubq != -(-dim // dsub) or lastdsub != dim - (nsubq - 1) * dsub:
        r.fail(
            where,
            f"nsubq {nsubq}, dsub {dsub}, lastdsub {lastdsub} do not split dim {dim} "
            "(nsubq = ceil(dim / dsub), lastdsub = dim - (nsubq - 1) * dsub)",
        )
    r.skip(dim * KSUB, 4, f"{where} centroids")
    return nsubq


def _read_matrix(r: _Reader, where: str, quantized: bool, rows: int, dim: int) -> None:
    """A dense matrix or a QuantMatrix of ``rows`` x ``dim``."""
    qnorm = r.flag(f"{where} qnorm") if quantized else False
    m, n, *codesize = r.read(_QUANT_HEADER if quantized else _DENSE_HEADER, f"{where} header")
    if m < 0 or n < 0:
        r.fail(where, f"negative shape {m} x {n}")
    if not quantized:
        r.skip(m * n, 4, f"{where} data ({m} x {n} float32)")
    if n != dim:
        r.fail(f"{where} n", f"{n} columns, but Args.dim is {dim}")
    if m != rows:
        r.fail(f"{where} m", f"{m} rows, but the dictionary and Args call for {rows}")
    if not quantized:
        return
    r.skip(codesize[0], 1, f"{where} codes (codesize)")
    nsubq = _read_quantizer(r, f"{where} quantizer", n)
    if codesize[0] != m * nsubq:
        r.fail(f"{where} codesize", f"{codesize[0]}, but {m} rows x {nsubq} sub-quantizers")
    if qnorm:
        r.skip(m, 1, f"{where} norm codes")
        _read_quantizer(r, f"{where} norm quantizer", 1)


def check_fasttext_file(path: str | Path, field: str) -> FastTextLayout:
    """Walk the fastText file at ``path``; a ConfigError naming ``field`` if it is unsound."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                _Reader(b"", path, field).fail("magic", "the file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _walk(_Reader(data, path, field))
    except OSError as error:
        raise ConfigError(f"{field}: cannot read fastText model {path}: {error}") from error


def _walk(r: _Reader) -> FastTextLayout:
    args = _read_args(r)
    nwords, nlabels, pruneidx_size = _read_dictionary(r, args)
    supervised = args["model"] == 3
    if supervised and nlabels == 0:
        r.fail("Dictionary.nlabels", "a supervised model needs at least one label")
    quant = r.flag("quant flag")
    pruned = pruneidx_size >= 0
    if pruned and not quant:
        r.fail("Dictionary.pruneidx_size", "a pruned dictionary needs a quantized input matrix")
    input_rows = nwords + (pruneidx_size if pruned else args["bucket"])
    _read_matrix(r, "input matrix", quant, input_rows, args["dim"])
    qout = r.flag("qout flag")
    output_rows = nlabels if supervised else nwords
    _read_matrix(r, "output matrix", quant and qout, output_rows, args["dim"])
    if r.left():
        r.fail("end of file", f"{r.left()} unexpected bytes after the output matrix")
    return FastTextLayout(
        version=args["version"],
        model=MODELS[args["model"]],
        dim=args["dim"],
        nwords=nwords,
        nlabels=nlabels,
        pruned=pruned,
        quantized_input=quant,
        quantized_output=quant and qout,
    )
