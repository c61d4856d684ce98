"""Re-running ``llamaforge tokenize`` into a finished folder: reuse, redo or refuse."""

import os

import numpy as np
import pytest

from llamaforge import cli as main_cli
from llamaforge.data import cli
from llamaforge.data.shards import INDEX_NAME, TokenIndex, TokenShards
from llamaforge.data.tokenize_folder import describe_inputs, tokenize_to_shards
from llamaforge.errors import DataError


@pytest.fixture
def tokenize(tmp_path, fake_tokenizer, monkeypatch, capsys):
    """``llamaforge tokenize INPUTS --out tmp/t`` through the real entry point; (rc, out, err)."""
    monkeypatch.setattr(cli, "load_tokenizer", lambda path: fake_tokenizer)

    def run(*inputs, extra=()):
        argv = ["tokenize", *map(str, inputs), "--tokenizer", "x.model"]
        argv += ["--out", str(tmp_path / "t"), "--no-progress", "--shard-tokens", "8", *extra]
        rc = main_cli.main(argv)
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run


def stream(folder) -> list[int]:
    shards = TokenShards(folder)
    return shards.read(0, len(shards)).tolist()


def test_changed_input_is_tokenized_again_and_unrelated_files_survive(tmp_path, tokenize):
    doc = tmp_path / "a.jsonl"
    doc.write_text('{"text": "first"}\n')
    assert tokenize(doc)[0] == 0
    notes = tmp_path / "t" / "notes.txt"  # the user's, not ours
    notes.write_text("keep me")
    old = {s.filename for s in TokenIndex.load(tmp_path / "t").shards}

    doc.write_text('{"text": "first"}\n{"text": "and a second one"}\n')
    rc, out, _ = tokenize(doc)
    assert rc == 0
    assert "changed; tokenizing again" in out and "25 tokens" in out and "2 documents" in out
    index = TokenIndex.load(tmp_path / "t")
    assert index.n_tokens == 7 + 18 and index.n_docs == 2
    assert stream(tmp_path / "t")[7:9] == [1, ord("a") + 3]
    names = {p.name for p in (tmp_path / "t").iterdir()}
    assert names == {"notes.txt", INDEX_NAME, *(s.filename for s in index.shards)}
    assert not old & names  # the previous output's shards were ours: gone
    assert notes.read_text() == "keep me"


def test_added_file_in_an_input_folder_is_noticed(tmp_path, tokenize):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("one")
    assert "1 documents" in tokenize(corpus)[1]
    (corpus / "b.txt").write_text("two")
    rc, out, _ = tokenize(corpus)
    assert rc == 0 and "new input" in out and "2 documents" in out


def test_missing_input_is_one_line_error_even_when_the_output_is_finished(tmp_path, tokenize):
    doc = tmp_path / "a.jsonl"
    doc.write_text('{"text": "first"}\n')
    assert tokenize(doc)[0] == 0
    before = (tmp_path / "t" / INDEX_NAME).read_bytes()
    rc, out, err = tokenize(tmp_path / "nope.jsonl")
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and "nope.jsonl does not exist" in err
    assert (tmp_path / "t" / INDEX_NAME).read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = tokenize(empty)
    assert rc != 0 and "holds no input files" in err and err.count("\n") == 1


def test_unchanged_rerun_reuses_without_reading_or_writing(tmp_path, tokenize, fake_tokenizer):
    doc = tmp_path / "a.jsonl"
    doc.write_text('{"text": "first"}\n{"text": "second"}\n')
    assert tokenize(doc)[0] == 0
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "t").iterdir()}
    calls = fake_tokenizer.calls
    rc, out, _ = tokenize(doc)
    assert rc == 0 and "up to date" in out and "2 documents" in out
    assert fake_tokenizer.calls == calls  # nothing tokenized
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "t").iterdir()} == mtimes

    os.utime(doc, ns=(1, 1))  # same bytes, new mtime: redone (size+mtime is the record)
    assert "changed; tokenizing again" in tokenize(doc)[1]
    assert "settings changed: shard_tokens 8 -> 5" in tokenize(doc, extra=["--shard-tokens", "5"])[
        1
    ].replace("'", "")


def test_interrupted_redo_keeps_the_previous_output(tmp_path, fake_tokenizer):
    out = tmp_path / "t"
    first = tokenize_to_shards(["hello"] * 30, fake_tokenizer, out, shard_tokens=16,
                               progress=False, made_from={"inputs": "v1"})  # fmt: skip
    before = stream(out)

    def documents():
        yield from ["changed"] * 40
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tokenize_to_shards(documents(), fake_tokenizer, out, shard_tokens=16, chunk_docs=4,
                           progress=False, made_from={"inputs": "v2"})  # fmt: skip
    assert TokenIndex.load(out) == first and stream(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [INDEX_NAME, *(s.filename for s in first.shards)]
    )
    again = tokenize_to_shards(["changed"] * 5, fake_tokenizer, out, shard_tokens=16,
                               progress=False, made_from={"inputs": "v2"})  # fmt: skip
    assert again.n_docs == 5 and stream(out)[:3] == [1, ord("c") + 3, ord("h") + 3]
    assert all(s.filename.startswith("g1-") for s in again.shards)


def test_a_different_tokenizer_is_refused_and_nothing_changes(tmp_path, fake_tokenizer):
    out = tmp_path / "t"
    tokenize_to_shards(["hello"], fake_tokenizer, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fake_tokenizer.eos_id = 3
    with pytest.raises(DataError, match="different tokenizer.*another output folder"):
        tokenize_to_shards(["hello"], fake_tokenizer, out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_index_naming_a_path_outside_the_folder_is_corrupt(tmp_path, token_folder):
    folder = token_folder(np.arange(50), shard_tokens=20)
    index = (folder / INDEX_NAME).read_text()
    (folder / INDEX_NAME).write_text(index.replace('"shard_00001.bin"', '"../../etc/passwd"'))
    with pytest.raises(DataError, match="corrupt.*not ours"):
        TokenShards(folder)


def test_skip_bad_lines_covers_non_utf8_txt(tmp_path, tokenize):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("fine")
    (corpus / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    rc, _, err = tokenize(corpus)
    assert rc != 0 and "latin1.txt is not UTF-8" in err and err.count("\n") == 1
    with pytest.warns(UserWarning, match="latin1.txt: skipped"):
        rc, out, _ = tokenize(corpus, extra=["--skip-bad-lines"])
    assert rc == 0 and "1 documents" in out


def test_describe_inputs_records_size_and_mtime(tmp_path):
    (tmp_path / "a.txt").write_text("abc")
    (entry,) = describe_inputs([tmp_path / "a.txt"])
    assert entry["bytes"] == 3 and entry["path"] == str((tmp_path / "a.txt").resolve())
    assert entry["mtime_ns"] == (tmp_path / "a.txt").stat().st_mtime_ns


def test_hostile_jsonl_lines_and_a_truncated_gzip_are_one_clear_error(tmp_path):
    """A lone-surrogate escape, 100,000 nested brackets, a cut .gz: DataErrors naming the file."""
    import gzip
    import json

    from llamaforge.data.documents import read_documents

    good = json.dumps({"text": "fine"})
    lines = {
        "surrogate.jsonl": f'{good}\n{{"text": "a\\ud800b"}}\n{good}\n',
        "deep.jsonl": f"{good}\n" + "[" * 100_000 + f"\n{good}\n",
    }
    for name, text in lines.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=rf"{name}:2: bad JSONL line"):
            list(read_documents(tmp_path / name))
        with pytest.warns(UserWarning):
            assert list(read_documents(tmp_path / name, errors="skip")) == ["fine", "fine"]
    cut = tmp_path / "cut.jsonl.gz"
    rows = "".join(json.dumps({"text": os.urandom(30).hex()}) + "\n" for _ in range(500))
    cut.write_bytes(gzip.compress(rows.encode())[:3000])  # incompressible rows, cut short
    with pytest.raises(DataError, match="damaged or truncated"):
        list(read_documents(cut))


@pytest.mark.parametrize(
    "edit", [{"dtype": "notadtype"}, {"dtype": "float16"}, {"vocab_size": "300"}],
    ids=["junk", "float", "str-vocab"],
)  # fmt: skip
def test_an_index_with_fields_the_writer_never_writes_is_corrupt(token_folder, edit):
    import json

    folder = token_folder(np.arange(50), vocab_size=300)
    path = folder / INDEX_NAME
    data = json.loads(path.read_text())
    data.update(edit)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="is corrupt"):
        TokenIndex.load(folder)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="is corrupt"):
        TokenIndex.load(folder)
