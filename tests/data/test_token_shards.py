import gzip
import hashlib
import json
import os

import numpy as np
import pytest

from llamaforge.data.documents import read_documents
from llamaforge.data.shard_writer import JOURNAL_NAME
from llamaforge.data.shards import INDEX_NAME, TokenIndex, TokenShards
from llamaforge.data.tokenize_folder import tokenize_to_shards
from llamaforge.errors import DataError

DOCS = ["hello world", "", "ünïcödé ✓ text", "a" * 57, "short", "the end of the corpus\n"]


def split_docs(stream: np.ndarray, eos: int) -> list[np.ndarray]:
    ends = np.flatnonzero(stream == eos)
    return np.split(stream, ends + 1)[:-1]


def test_roundtrip_framing_shards_and_index(tmp_path, fake_tokenizer):
    out = tmp_path / "tok"
    index = tokenize_to_shards(DOCS, fake_tokenizer, out, shard_tokens=40, progress=False)
    non_empty = [d for d in DOCS if d]
    expected_tokens = sum(len(d.encode()) + 2 for d in non_empty)
    assert index.n_tokens == expected_tokens and index.n_docs == len(non_empty)
    assert index.n_empty_skipped == 1 and index.dtype == "uint16"
    assert [s.n_tokens for s in index.shards[:-1]] == [40] * (len(index.shards) - 1)
    assert 0 < index.shards[-1].n_tokens <= 40 and len(index.shards) >= 3
    on_disk = json.loads((out / INDEX_NAME).read_text())
    assert on_disk["n_tokens"] == expected_tokens and on_disk["eos_id"] == 2
    assert on_disk["bos_id"] == 1 and on_disk["vocab_size"] == 259
    for shard in index.shards:
        data = (out / shard.filename).read_bytes()
        assert len(data) == 2 * shard.n_tokens
        assert hashlib.sha256(data).hexdigest() == shard.sha256
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    shards = TokenShards(out)
    stream = shards.read(0, len(shards))
    docs = split_docs(stream, eos=2)
    assert [fake_tokenizer.decode(d) for d in docs] == non_empty
    assert all(d[0] == 1 and d[-1] == 2 for d in docs)
    # n_docs per shard counts the EOS tokens that landed in it
    per_shard = [
        int(np.sum(shards.read(i * 40, s.n_tokens) == 2)) for i, s in enumerate(index.shards)
    ]
    assert per_shard == [s.n_docs for s in index.shards]


def test_reads_across_shard_boundaries(token_folder):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 65536, size=2345)
    shards = TokenShards(token_folder(tokens, shard_tokens=100))
    assert len(shards) == 2345 and shards.dtype == np.uint16
    for start, length in [(0, 2345), (95, 10), (100, 100), (199, 1), (1234, 1111), (7, 0)]:
        np.testing.assert_array_equal(shards.read(start, length), tokens[start : start + length])
    with pytest.raises(IndexError):
        shards.read(2340, 6)


def test_large_vocab_uses_uint32(tmp_path, fake_tokenizer):
    fake_tokenizer.vocab_size = 70_000
    real_encode = fake_tokenizer.encode_batch

    def encode_batch(texts, bos=True, eos=False, num_threads=0):
        return [[i + 65_000 if i >= 3 else i for i in d] for d in real_encode(texts, bos, eos)]

    fake_tokenizer.encode_batch = encode_batch
    index = tokenize_to_shards(["abc", "xyz"], fake_tokenizer, tmp_path / "t", progress=False)
    assert index.dtype == "uint32"
    stream = TokenShards(tmp_path / "t").read(0, index.n_tokens)
    assert stream.max() == ord("z") + 65_003 and stream.dtype == np.uint32


def test_finished_folder_is_not_redone(tmp_path, fake_tokenizer):
    out = tmp_path / "tok"
    first = tokenize_to_shards(DOCS, fake_tokenizer, out, shard_tokens=50, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def explode(*args, **kwargs):
        raise AssertionError("re-tokenized a finished folder")

    fake_tokenizer.encode_batch = explode
    again = tokenize_to_shards(iter(DOCS), fake_tokenizer, out, shard_tokens=50, progress=False)
    assert again == first == TokenIndex.load(out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    (out / first.shards[0].filename).unlink()  # damaged: re-running repairs it
    fake_tokenizer.encode_batch = type(fake_tokenizer)().encode_batch
    assert tokenize_to_shards(DOCS, fake_tokenizer, out, shard_tokens=50, progress=False) == first
    assert TokenShards(out).read(0, first.n_tokens).size == first.n_tokens

    fake_tokenizer.eos_id = 3  # another tokenizer
    with pytest.raises(DataError, match="different tokenizer"):
        tokenize_to_shards(DOCS, fake_tokenizer, out, progress=False)


def test_interrupted_run_leaves_unfinished_folder_and_restart_completes(tmp_path, fake_tokenizer):
    def documents():
        yield from DOCS * 20
        raise KeyboardInterrupt

    out = tmp_path / "tok"
    with pytest.raises(KeyboardInterrupt):
        tokenize_to_shards(
            documents(), fake_tokenizer, out, shard_tokens=64, chunk_docs=7, progress=False
        )
    assert not (out / INDEX_NAME).exists()
    assert any(p.name.startswith("shard_") for p in out.iterdir())  # completed shards stayed
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(DataError, match="not a finished token folder"):
        TokenShards(out)

    index = tokenize_to_shards(DOCS * 3, fake_tokenizer, out, shard_tokens=64, progress=False)
    clean = tokenize_to_shards(
        DOCS * 3, fake_tokenizer, tmp_path / "clean", shard_tokens=64, progress=False
    )
    assert index.shards == clean.shards
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "clean").iterdir()
    )


def test_damaged_folders_raise_data_errors_naming_the_file(tmp_path, fake_tokenizer):
    out = tmp_path / "tok"
    index = tokenize_to_shards(DOCS * 5, fake_tokenizer, out, shard_tokens=64, progress=False)
    victim = out / index.shards[1].filename

    data = victim.read_bytes()
    victim.write_bytes(data[:-2])
    with pytest.raises(DataError, match=f"{victim.name}.*re-run tokenization"):
        TokenShards(out)

    victim.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, different content
    shards = TokenShards(out)
    with pytest.raises(DataError, match=f"{victim.name}: sha256 mismatch"):
        shards.verify()

    victim.unlink()
    with pytest.raises(DataError, match=f"{victim.name} is missing"):
        TokenShards(out)

    (out / INDEX_NAME).write_text("{not json")
    with pytest.raises(DataError, match="corrupt"):
        TokenShards(out)


def test_bad_tokenizer_output_and_empty_input(tmp_path, fake_tokenizer):
    fake_tokenizer.vocab_size = 100  # bytes + 3 exceed it
    with pytest.raises(DataError, match="outside vocab_size 100"):
        tokenize_to_shards(["hello"], fake_tokenizer, tmp_path / "a", progress=False)
    assert not (tmp_path / "a" / INDEX_NAME).exists()
    fake_tokenizer.vocab_size = 259
    with pytest.raises(DataError, match="no non-empty documents"):
        tokenize_to_shards(["", ""], fake_tokenizer, tmp_path / "b", progress=False)
    with pytest.raises(DataError, match="not a str"):
        tokenize_to_shards(["ok", b"bytes"], fake_tokenizer, tmp_path / "c", progress=False)


def test_read_documents_formats_order_and_bad_lines(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "meta": 1}\n')
    with gzip.open(corpus / "b.jsonl.gz", "wt") as f:
        f.write('{"text": "three"}\n')
    (corpus / "sub" / "c.txt").write_text("four\nstill four\n")
    (corpus / "ignored.csv").write_text("x,y\n")
    assert list(read_documents(corpus)) == ["one", "two", "three", "four\nstill four\n"]
    assert list(read_documents([corpus / "sub" / "c.txt", corpus / "a.jsonl"]))[0].startswith(
        "four"
    )

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"txt": "no"}\n{broken\n\xff\xfe\n{"text": "fine"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: .*errors='skip'"):
        list(read_documents(bad))
    with pytest.warns(UserWarning, match="skipped 3 bad lines \\(first: line 2\\)"):
        assert list(read_documents(bad, errors="skip")) == ["ok", "fine"]

    with pytest.raises(DataError, match="does not exist"):
        list(read_documents(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="unsupported file type"):
        list(read_documents(corpus / "ignored.csv"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt is not UTF-8"):
        list(read_documents(tmp_path / "latin1.txt"))


@pytest.fixture(scope="module")
def real_tokenizer(tmp_path_factory):
    from llamaforge.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("spm")
    lines = [f"line {i} of the tiny corpus, number {i * 7}" for i in range(300)]
    return train_tokenizer(folder / "tok.model", texts=lines, vocab_size=320, progress=False)


def test_with_the_real_tokenizer(tmp_path, real_tokenizer):
    docs = ["line 3 of the tiny corpus", "something ✓ unseen", "number 42"]
    index = tokenize_to_shards(docs, real_tokenizer, tmp_path / "t", progress=False)
    assert index.eos_id == real_tokenizer.eos_id and index.vocab_size == real_tokenizer.vocab_size
    stream = TokenShards(tmp_path / "t").read(0, index.n_tokens)
    pieces = split_docs(stream, eos=real_tokenizer.eos_id)
    assert len(pieces) == 3
    decoded = [real_tokenizer.decode(p[1:-1].tolist()) for p in pieces]
    assert decoded == docs


def test_index_is_written_atomically_last(tmp_path, fake_tokenizer, monkeypatch):
    """The index appears only through os.replace, after every shard was renamed in place."""
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    tokenize_to_shards(DOCS * 4, fake_tokenizer, tmp_path / "t", shard_tokens=50, progress=False)
    assert seen[-1] == INDEX_NAME
    assert all(n.startswith("shard_") or n == JOURNAL_NAME for n in seen[:-1])


def count_descriptors_under_a_low_limit(folder, results) -> None:
    """In a forked child (torch already imported): lower RLIMIT_NOFILE to 128, then read."""
    import resource

    from llamaforge.data.loader import TokenLoader, sequential_batches

    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
    baseline, peak, total = len(os.listdir("/proc/self/fd")), 0, 0
    for inputs, _ in sequential_batches(folder, 16, 8):  # every shard, in order
        total += inputs.numel()
        peak = max(peak, len(os.listdir("/proc/self/fd")))
    loader = TokenLoader(folder, 16, 8, val_fraction=0.0)
    for _ in zip(loader, range(120), strict=False):  # random windows over every shard
        peak = max(peak, len(os.listdir("/proc/self/fd")))
    results.write(f"{baseline} {peak} {total}".encode())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_more_shards_than_the_descriptor_limit(tmp_path, token_folder, monkeypatch):
    """300 shards under RLIMIT_NOFILE 128: one descriptor per shard would crash (EMFILE).

    The child is forked (as the distributed tests' ranks are), not spawned: a
    new interpreter importing torch costs many seconds on a busy machine.
    """
    import traceback

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 300 tiny shards: durability is not tested
    folder = token_folder(np.arange(300 * 16) % 65536, shard_tokens=16)
    monkeypatch.undo()
    assert len(list(folder.glob("shard_*.bin"))) == 300
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        with os.fdopen(write_end, "wb") as results:
            try:
                count_descriptors_under_a_low_limit(folder, results)
            except BaseException:
                results.write(b"ERROR " + traceback.format_exc().encode())
                code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as results:
        report = results.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    baseline, peak, total = map(int, report.split())
    assert total == (300 * 16 - 1) // 16 * 16  # every window was read
    assert peak - baseline <= 32  # the cap: a quarter of the limit


def test_open_descriptors_stay_capped_and_close_with_the_reader(token_folder):
    from llamaforge.data import shards as shards_module

    folder = token_folder(np.arange(2000) % 65536, shard_tokens=10)
    reader = TokenShards(folder)
    np.testing.assert_array_equal(reader.read(0, 2000), np.arange(2000))
    cache = shards_module._OPEN_FILES
    assert 0 < cache.open_count() <= shards_module._OpenShardFiles.capacity() <= 64
    np.testing.assert_array_equal(reader.read(995, 30), np.arange(995, 1025))
    del reader
    assert cache.open_count() == 0


def test_a_reader_collected_mid_read_does_not_deadlock(token_folder):
    """The finalizer may fire while the descriptor cache's lock is held (GC inside a read)."""
    import threading

    from llamaforge.data import shards as shards_module

    cache = shards_module._OPEN_FILES
    folder = token_folder(np.arange(200) % 65536, shard_tokens=10)
    reader = TokenShards(folder)
    reader.read(0, 200)
    before = cache.open_count()
    assert before > 0
    with cache._lock:  # as if the collector ran inside read_into
        forgetting = threading.Thread(target=cache.forget, args=(reader._id,), daemon=True)
        forgetting.start()
        forgetting.join(timeout=10)
        assert not forgetting.is_alive(), "forget waited for a lock its own thread may hold"
        assert cache.open_count() == before  # queued, not closed under someone else's lock
    other = TokenShards(folder)
    np.testing.assert_array_equal(other.read(5, 20), np.arange(5, 25))
    # The queued reader's descriptors went at the next read; the new reader's stay.
    assert {reader_id for reader_id, _ in cache._fds} & {reader._id, other._id} == {other._id}
