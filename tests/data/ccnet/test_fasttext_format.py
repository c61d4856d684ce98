import random
import struct
import subprocess
import sys

import pytest

from llamaforge.data.ccnet.fasttext_format import check_fasttext_file
from llamaforge.errors import ConfigError
from tests.data.ccnet.conftest import HEADER, offsets, patch

FIELD = "[sources.commoncrawl].lid_model"


def _refused(path, pattern):
    with pytest.raises(ConfigError) as caught:
        check_fasttext_file(path, FIELD)
    message = str(caught.value)
    assert FIELD in message and str(path) in message
    assert "damaged or not a fastText model" in message
    assert pattern in message, message
    return message


def test_real_tiny_models_pass(fasttext_models):
    dense = check_fasttext_file(fasttext_models["dense"], FIELD)
    assert (dense.model, dense.dim, dense.nlabels) == ("supervised", 10, 3)
    assert not dense.quantized_input and not dense.pruned
    pruned = check_fasttext_file(fasttext_models["pruned"], FIELD)
    assert pruned.quantized_input and pruned.pruned and not pruned.quantized_output
    quant = check_fasttext_file(fasttext_models["quant"], FIELD)
    assert quant.quantized_input and not quant.pruned
    assert pruned.nwords <= dense.nwords == quant.nwords


def _quantized_output(data: bytes, qnorm: bool) -> bytes:
    """``data`` (a .ftz whose output is dense 3 x 10) with a QuantMatrix output (dsub 2)."""
    at = offsets(data).qout_flag
    rng = random.Random(0)
    out = struct.pack("<??qqi", True, qnorm, 3, 10, 3 * 5) + bytes(
        rng.randrange(256) for _ in range(15)
    )
    out += struct.pack("<iiii", 10, 5, 2, 2) + struct.pack(
        "<2560f", *(rng.random() for _ in range(2560))
    )
    if qnorm:
        out += (
            bytes([0, 1, 2]) + struct.pack("<iiii", 1, 1, 1, 1) + struct.pack("<256f", *[1.0] * 256)
        )
    return data[:at] + out


_PREDICT = """
import sys, fasttext
labels, _ = fasttext.load_model(sys.argv[1]).predict("der die und das", k=-1)
print(sorted(labels))
"""


@pytest.mark.parametrize("qnorm", [False, True])
def test_quantized_output_layout_matches_what_fasttext_loads(fasttext_models, tmp_path, qnorm):
    path = tmp_path / "qout.ftz"
    path.write_bytes(_quantized_output(fasttext_models["quant"].read_bytes(), qnorm))
    assert check_fasttext_file(path, FIELD).quantized_output
    # The real loader agrees with the layout (in a process of its own, in case it does not).
    done = subprocess.run(
        [sys.executable, "-c", _PREDICT, str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "__label__de" in done.stdout and "__label__fr" in done.stdout
    broken = tmp_path / "qout-broken.ftz"
    broken.write_bytes(path.read_bytes()[:-4])
    _refused(broken, "output matrix")


def _no_nul(data, o):
    return data[: o.first_entry] + b"x" * (len(data) - o.first_entry)


def _entry_type(data, o, value):
    return patch(data, data.index(b"\0", o.first_entry) + 1 + 8, "b", value)


def _bad_label(data, o):
    return data.replace(b"__label__de\0", b"__label__\xff\xfe\0")


# (model, damage, what the message must name)
DAMAGES = {
    "wrong magic": ("dense", lambda d, o: patch(d, 0, "i", 12345), "magic"),
    "newer version": ("dense", lambda d, o: patch(d, 4, "i", 13), "version"),
    "cut in Args": ("dense", lambda d, o: d[:40], "Args"),
    "cut in the entries": ("dense", lambda d, o: d[: o.first_entry + 30], "Dictionary"),
    "word without NUL": ("dense", _no_nul, "Dictionary entry 0"),
    "cut in the input matrix": ("dense", lambda d, o: d[: o.input_m + 116], "input matrix data"),
    "cut in the output matrix": ("dense", lambda d, o: d[:-4], "output matrix data"),
    "trailing bytes": ("dense", lambda d, o: d + b"\0", "end of file"),
    "m, n inflated (heap corruption)": (
        "dense",
        lambda d, o: patch(d, o.input_m, "qq", 2**17, 2**12),
        "input matrix data (131072 x 4096",
    ),
    "one input row too many": (
        "dense",
        lambda d, o: patch(d, o.input_m, "q", struct.unpack_from("<q", d, o.input_m)[0] + 1),
        "input matrix m",
    ),
    "output rows not nlabels": (
        "dense",
        lambda d, o: patch(d, o.output_m, "q", 2),
        "output matrix m",
    ),
    "Args.dim not the columns": ("dense", lambda d, o: patch(d, 8, "i", 2), "input matrix n"),
    "dictionary size inflated": (
        "dense",
        lambda d, o: patch(d, HEADER, "ii", 2**30, 2**30 - 3),
        "entries cannot fit",
    ),
    "size not nwords + nlabels": (
        "dense",
        lambda d, o: patch(d, HEADER, "i", struct.unpack_from("<i", d, HEADER)[0] - 1),
        "Dictionary.size",
    ),
    "negative nwords": ("dense", lambda d, o: patch(d, HEADER + 4, "i", -1), "Dictionary.nwords"),
    "negative shape": ("dense", lambda d, o: patch(d, o.input_m, "qq", -1, -1), "negative shape"),
    "negative pruneidx_size": (
        "dense",
        lambda d, o: patch(d, HEADER + 20, "q", -5),
        "Dictionary.pruneidx_size",
    ),
    "negative Args.ws": ("dense", lambda d, o: patch(d, 12, "i", -1), "Args.ws"),
    "entry type 2": ("dense", lambda d, o: _entry_type(d, o, 2), "Dictionary entry 0"),
    "label first": ("dense", lambda d, o: _entry_type(d, o, 1), "Dictionary entry 0"),
    "label not UTF-8": ("dense", _bad_label, "not UTF-8"),
    "quant flag 2": ("dense", lambda d, o: patch(d, o.quant_flag, "b", 2), "quant flag"),
    "bucket 0 with subwords": ("dense", lambda d, o: patch(d, 8 + 8 * 4, "i", 0), "Args.bucket"),
    "unknown model": ("dense", lambda d, o: patch(d, 8 + 7 * 4, "i", 9), "Args.model"),
    "pruned row out of range": (
        "pruned",
        lambda d, o: patch(d, o.pruneidx + 4, "i", 10**6),
        "Dictionary pruneidx",
    ),
    "cut in the centroids": (
        "pruned",
        lambda d, o: d[: o.input_pq + 16 + 100],
        "input matrix quantizer centroids",
    ),
    "codesize inflated": (
        "quant",
        lambda d, o: patch(d, o.input_codesize, "i", 2**30),
        "input matrix codes",
    ),
    "dsub does not split dim": (
        "quant",
        lambda d, o: patch(d, o.input_pq + 8, "i", 3),
        "do not split dim 10",
    ),
}


@pytest.mark.parametrize("name", DAMAGES)
def test_damaged_model_is_refused_naming_the_field(fasttext_models, tmp_path, name):
    model, damage, pattern = DAMAGES[name]
    data = fasttext_models[model].read_bytes()
    damaged = damage(data, offsets(data))
    assert damaged != data
    path = tmp_path / "damaged.bin"
    path.write_bytes(damaged)
    _refused(path, pattern)


def test_empty_and_missing_files_are_refused(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    _refused(empty, "empty")
    with pytest.raises(ConfigError, match="cannot read fastText model"):
        check_fasttext_file(tmp_path / "absent.bin", FIELD)
