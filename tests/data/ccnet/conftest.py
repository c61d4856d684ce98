"""Tiny real fastText models, and where their fields sit, for the model-file checks' tests.

The offsets are found by a walk of their own (trusting, since it only reads
files fastText wrote) so damage can be aimed at one field at a time.
"""

import random
import struct
import subprocess
import sys
from dataclasses import dataclass

import pytest

from llamaforge.data.ccnet.fasttext_io import train_classifier

HEADER = 8 + 12 * 4 + 8  # magic, version, the 12 int32 Args and float64 t
WORDS = {
    "en": ["the", "of", "and", "to", "in", "is", "was", "for", "on", "that"],
    "de": ["der", "die", "und", "das", "ist", "nicht", "mit", "von", "zu", "den"],
    "fr": ["le", "la", "les", "et", "est", "une", "des", "du", "pour", "que"],
}

# Pruned (cutoff) and normed with dsub 4 over dim 10 (so lastdsub 2); plain with dsub 2.
_QUANTIZE = """
import sys, fasttext
model = fasttext.load_model(sys.argv[1])
model.quantize(cutoff=300, qnorm=True, dsub=4)
model.save_model(sys.argv[2])
model = fasttext.load_model(sys.argv[1])
model.quantize(dsub=2)
model.save_model(sys.argv[3])
"""


@pytest.fixture(scope="session")
def fasttext_models(tmp_path_factory):
    """``dense`` (.bin with subword and word-bigram buckets), ``pruned`` and ``quant`` (.ftz)."""
    folder = tmp_path_factory.mktemp("fasttext")
    rng = random.Random(0)
    examples = [
        (lang, " ".join(rng.choice(words) for _ in range(8)))
        for lang, words in WORDS.items()
        for _ in range(60)
    ]
    dense = train_classifier(
        examples, folder / "dense.bin", dim=10, bucket=1000, wordNgrams=2, minn=2, maxn=3, epoch=5
    )
    pruned, quant = folder / "pruned.ftz", folder / "quant.ftz"
    subprocess.run(
        [sys.executable, "-c", _QUANTIZE, str(dense), str(pruned), str(quant)],
        check=True,
        capture_output=True,
    )
    return {"dense": dense, "pruned": pruned, "quant": quant}


@dataclass
class Offsets:
    """Byte offsets of a fastText file's fields (``*_m`` point at a matrix's int64 m)."""

    dict_size: int
    first_entry: int
    pruneidx: int  # the first (bucket, row) pair
    quant_flag: int
    input_m: int
    input_codesize: int  # quantized only
    input_pq: int  # quantized only: the ProductQuantizer's dim
    qout_flag: int
    output_m: int


def offsets(data: bytes) -> Offsets:
    size, _, _, _, pruneidx_size = struct.unpack_from("<iiiqq", data, HEADER)
    pos = first_entry = HEADER + 28
    for _ in range(size):
        pos = data.index(b"\0", pos) + 1 + 9
    pruneidx = pos
    quant_flag = pos + 8 * max(pruneidx_size, 0)
    quantized = data[quant_flag] == 1
    codesize_at = pq_at = -1
    if quantized:
        qnorm = data[quant_flag + 1]
        m, n, codesize = struct.unpack_from("<qqi", data, quant_flag + 2)
        codesize_at = quant_flag + 18
        pq_at = codesize_at + 4 + codesize
        end = pq_at + 16 + 4 * 256 * n + (m + 16 + 4 * 256 if qnorm else 0)
        input_m = quant_flag + 2
    else:
        m, n = struct.unpack_from("<qq", data, quant_flag + 1)
        end = quant_flag + 17 + 4 * m * n
        input_m = quant_flag + 1
    return Offsets(
        HEADER, first_entry, pruneidx, quant_flag, input_m, codesize_at, pq_at, end, end + 1
    )


def patch(data: bytes, at: int, fmt: str, *values) -> bytes:
    """``data`` with ``values`` packed (little-endian ``fmt``) over the bytes at ``at``."""
    packed = struct.pack("<" + fmt, *values)
    return data[:at] + packed + data[at + len(packed) :]
