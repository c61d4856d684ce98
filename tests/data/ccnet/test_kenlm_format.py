import bz2
import gzip
import math
import struct
import subprocess
import sys

import pytest

from llamaforge.data.ccnet.arpa import train_arpa
from llamaforge.data.ccnet.kenlm_format import check_kenlm_file
from llamaforge.data.ccnet.perplexity import PerplexityScorer
from llamaforge.errors import ConfigError

FIELD = "[sources.commoncrawl].lm_model"
CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the rat on a mat"]
# KenLM's binary header, written out independently of the module under test.
MAGIC = b"mmap lm http://kheafield.com/code format version 5\n\0".ljust(56, b"\0")
SANITY = MAGIC + struct.pack("<fffIIIQ", 0.0, 1.0, -0.5, 1, 0xFFFFFFFF, 0, 1)


def _buckets(entries, multiplier):
    return max(entries + 1, int(multiplier * entries))  # exact here: multipliers are 1.5, 2.0


def probing(counts, multiplier=1.5, model_type=0, vocab_flag=0, words=b""):
    """A structurally sound KenLM probing binary (zero weights, made-up vocabulary hashes).

    Layout of KenLM's GenericModel<HashedSearch, ProbingVocabulary>: header
    with the counts, padded to 8; vocabulary (version, bound, 12-byte entries);
    unigram weights (8 bytes, one more than counts[0]); the middle orders'
    16-byte entries; the top order's 12-byte entries; optionally the words.
    """
    header = SANITY + struct.pack("<B3xfiB3xI", len(counts), multiplier, model_type, vocab_flag, 0)
    header += struct.pack(f"<{len(counts)}Q", *counts)
    header = header.ljust(-(-len(header) // 8) * 8, b"\0")
    slots = [(0, 0)] * _buckets(counts[0], multiplier)
    for word in range(1, counts[0]):  # <unk> (0) is not in the table
        slots[word] = (0x9E3779B97F4A7C15 * word % 2**64, word)
    vocab = struct.pack("<II", 0, counts[0]) + b"".join(struct.pack("<QI", *s) for s in slots)
    tables = bytes(8 * (counts[0] + 1))
    tables += b"".join(bytes(16 * _buckets(c, multiplier)) for c in counts[1:-1])
    tables += bytes(12 * _buckets(counts[-1], multiplier))
    return header + vocab + tables + words


def trie(counts, words=None, hashes=None):
    """A KenLM trie binary's header and vocabulary (a count, sorted hashes); zeros after it."""
    words = counts[0] - 1 if words is None else words
    hashes = sorted(0x9E3779B97F4A7C15 * w % 2**64 for w in range(1, counts[0]))
    header = probing(counts, model_type=2)[:136]
    vocab = struct.pack("<Q", words) + struct.pack(f"<{counts[0]}Q", *hashes, 0)
    return header + vocab + bytes(256)


_SCORE = """
import sys, kenlm
print(kenlm.Model(sys.argv[1]).score("the cat sat", bos=True, eos=True))
"""


def _kenlm(path):
    """KenLM's verdict on ``path``, in a process of its own (damaged files can crash it)."""
    return subprocess.run([sys.executable, "-c", _SCORE, str(path)], capture_output=True, text=True)


def _refused(path, pattern):
    with pytest.raises(ConfigError) as caught:
        check_kenlm_file(path, FIELD)
    message = str(caught.value)
    assert message.startswith(f"{FIELD}: {path} is damaged or not a KenLM model")
    assert pattern in message, message


def test_sizes_match_what_kenlm_loads(tmp_path):
    sound = tmp_path / "sound.binary"
    sound.write_bytes(probing([5, 7, 9]))
    check_kenlm_file(sound, FIELD)
    done = _kenlm(sound)
    assert done.returncode == 0, done.stderr
    assert math.isfinite(float(done.stdout))
    # One byte short, KenLM refuses it too: the check's sizes are KenLM's, not larger.
    short = tmp_path / "short.binary"
    short.write_bytes(sound.read_bytes()[:-1])
    assert "should be at least" in _kenlm(short).stderr
    _refused(short, "call for")


def test_sound_files_pass(tmp_path):
    arpa = train_arpa(CORPUS, 3, tmp_path / "lm.arpa")
    check_kenlm_file(arpa, FIELD)
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress)):
        packed = tmp_path / f"lm.arpa{suffix}"
        packed.write_bytes(compress(arpa.read_bytes()))
        check_kenlm_file(packed, FIELD)
    words = tmp_path / "words.binary"
    words.write_bytes(probing([4, 6], multiplier=2.0, vocab_flag=1, words=b"<unk>\0<s>\0</s>\0a\0"))
    check_kenlm_file(words, FIELD)


def test_trie_binaries_are_refused_naming_what_to_use_instead(tmp_path):
    """Their bit-packed pointers cannot be checked (a damaged one crashes scoring)."""
    path = tmp_path / "trie.binary"
    path.write_bytes(trie([5, 7, 9]))
    with pytest.raises(ConfigError, match=r"lm_model.*trie binary.*build_binary probing"):
        check_kenlm_file(path, FIELD)


def _fixed(data, offset, fmt, value):
    return data[:offset] + struct.pack("<" + fmt, value) + data[offset + struct.calcsize(fmt) :]


SOUND = probing([5, 7, 9])
VOCAB = 136 + 8  # header of an order-3 file, then the vocabulary's (version, bound)
BINARY_DAMAGES = {
    "order 0 (SIGSEGV)": (_fixed(SOUND, 88, "B", 0), "order 0"),
    "NaN multiplier (SIGFPE)": (_fixed(SOUND, 92, "f", math.nan), "probing multiplier nan"),
    "huge multiplier": (_fixed(SOUND, 92, "f", 3e38), "call for"),
    "unknown model type": (_fixed(SOUND, 96, "i", 9), "model type 9"),
    "vocabulary flag 2": (_fixed(SOUND, 100, "B", 2), "vocabulary flag is 2"),
    "test value changed": (_fixed(SOUND, 60, "f", 2.0), "format version 5"),
    "no unigrams": (_fixed(SOUND, 108, "Q", 0), "0 unigrams"),
    "counts inflated": (_fixed(SOUND, 116, "Q", 2**60), "cannot fit"),
    "cut short": (SOUND[:-12], "call for"),
    "trailing bytes without words": (SOUND + b"\0" * 8, "call for"),
    "word index past the unigrams (SIGSEGV once looked up)": (
        _fixed(SOUND, VOCAB + 12 + 8, "I", 2**31),
        "points past the 6 unigrams",
    ),
    "vocabulary table full (lookups loop forever)": (
        SOUND[:VOCAB] + struct.pack("<QI", 1, 1) * 7 + SOUND[VOCAB + 7 * 12 :],  # 7 slots
        "no empty slot",
    ),
    "header cut": (SOUND[:100], "cut short"),
}


@pytest.mark.parametrize("name", BINARY_DAMAGES)
def test_damaged_binary_is_refused(tmp_path, name):
    damaged, pattern = BINARY_DAMAGES[name]
    assert damaged != SOUND
    path = tmp_path / "lm.binary"
    path.write_bytes(damaged)
    _refused(path, pattern)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (("ngram 2=", "ngram 2=-"), "not a nonnegative integer"),  # read as 2**64 - n: SIGSEGV
        (("ngram 2=", "ngram 2=99999999999"), "is more than"),
        (("ngram 2=", "ngram 4="), "orders must run 1, 2, 3"),
        (("\\data\\", "\\dada\\"), "starts with \\data\\"),
        (("ngram 1=", "ngrams 1="), "is not 'ngram N=COUNT'"),
    ],
)
def test_damaged_arpa_counts_are_refused(tmp_path, edit, pattern):
    text = train_arpa(CORPUS, 3, tmp_path / "lm.arpa").read_text()
    path = tmp_path / "bad.arpa"
    path.write_text(text.replace(*edit, 1))
    _refused(path, pattern)


def test_compressed_binary_and_cut_header_are_refused(tmp_path):
    packed = tmp_path / "lm.binary.gz"
    packed.write_bytes(gzip.compress(SOUND))
    _refused(packed, "compressed KenLM binary")
    cut = tmp_path / "cut.arpa"
    cut.write_text("\\data\\\nngram 1=3\n")
    _refused(cut, "ends before its \\data\\ block")


_LOAD = """
import sys
from llamaforge.data.ccnet.perplexity import PerplexityScorer
from llamaforge.errors import ConfigError
from llamaforge.errors import ConfigError
try:
    print("loaded:", PerplexityScorer(sys.argv[1]).perplexity("the cat sat on the mat"))
except ConfigError as error:
    print("refused:", error)
"""


def test_crashing_files_are_refused_before_kenlm_and_the_process_survives(tmp_path):
    # Both crash kenlm 0.3.0 (SIGSEGV) when it loads them; here in a child
    # process, so a regression cannot take pytest down with it.
    arpa = train_arpa(CORPUS, 3, tmp_path / "lm.arpa").read_text()
    negative = tmp_path / "negative.arpa"
    negative.write_text(arpa.replace("ngram 2=", "ngram 2=-", 1))
    order0 = tmp_path / "order0.binary"
    order0.write_bytes(BINARY_DAMAGES["order 0 (SIGSEGV)"][0])
    for path in (negative, order0):
        done = subprocess.run(
            [sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith(f"refused: lm_model: {path} is damaged"), done.stdout


def test_scorer_names_the_field_it_is_given(tmp_path):
    path = tmp_path / "junk.binary"
    path.write_bytes(BINARY_DAMAGES["order 0 (SIGSEGV)"][0])
    with pytest.raises(ConfigError, match=r"^\[x\]\.lm_model: "):
        PerplexityScorer(path, field="[x].lm_model")
