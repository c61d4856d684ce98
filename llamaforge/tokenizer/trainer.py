"""Train a LLaMA-style SentencePiece BPE tokenizer (§2.1 of the paper).

The paper: "we tokenize the data with the byte-pair encoding (BPE) algorithm
... using the implementation from SentencePiece. Notably, we split all numbers
into individual digits, and fallback to bytes to decompose unknown UTF-8
characters." The settings below are those stored in the released LLaMA
``tokenizer.model`` (its ``trainer_spec``), so a model trained here behaves
like LLaMA's at a smaller vocabulary:

* BPE, ``split_digits``, ``byte_fallback``; unk 0, BOS 1, EOS 2, no pad;
* lossless text handling: ``identity`` normalization (no NFKC),
  ``remove_extra_whitespaces=False``, whitespace-only pieces allowed (runs of
  indentation become single tokens), ``add_dummy_prefix=True``;
* ``character_coverage=0.99995``: the rarest characters are left to byte
  fallback instead of taking vocabulary slots.

Decisions where the paper is silent:

* Documents are fed to the trainer **one line at a time** (empty lines
  skipped), as SentencePiece's own file reader and LLaMA's training did. No
  learned piece contains a newline, so ``"\\n"`` encodes as the byte token
  ``<0x0A>`` exactly as in LLaMA (id 13 there).
* The ASCII digits 0-9 are ``required_chars``, so each is a vocabulary piece
  even if the corpus lacks one (LLaMA's corpus had them all anyway).
  SentencePiece's ``split_digits`` only concerns ASCII digits; other Unicode
  digits (e.g. Arabic-Indic) may merge, as in LLaMA.
* Lines longer than ``max_sentence_length`` bytes (64 KiB, LLaMA used 4192)
  are skipped by the trainer (not truncated); they still encode normally.
"""

from __future__ import annotations

import io
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm
from tqdm.auto import tqdm

from llamaforge.errors import ConfigError, DataError
from llamaforge.tokenizer.tokenizer import Tokenizer, usable_cpus

# From the released LLaMA tokenizer.model's trainer_spec / normalizer_spec.
LLAMA_TRAINER_OPTIONS: dict[str, Any] = {
    "model_type": "bpe",
    "split_digits": True,
    "byte_fallback": True,
    "normalization_rule_name": "identity",
    "remove_extra_whitespaces": False,
    "add_dummy_prefix": True,
    "allow_whitespace_only_pieces": True,
    "max_sentencepiece_length": 16,
    "split_by_unicode_script": True,
    "split_by_whitespace": True,
    "split_by_number": True,
    "treat_whitespace_as_suffix": False,
    "vocabulary_output_piece_score": True,
    "unk_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "pad_id": -1,
    "unk_surface": " \u2047 ",
}


def train_tokenizer(
    output_path: str | os.PathLike,
    *,
    files: Sequence[str | os.PathLike] | None = None,
    texts: Iterable[str] | None = None,
    vocab_size: int = 32000,
    character_coverage: float = 0.99995,
    max_sentence_length: int = 65536,
    input_sentence_size: int = 0,
    hard_vocab_limit: bool = True,
    num_threads: int = 0,
    progress: bool = True,
    verbose: bool = False,
    extra_options: Mapping[str, Any] | None = None,
) -> Tokenizer:
    """Train on ``files`` and/or ``texts``; write ``output_path`` (``.model``) and its ``.vocab``.

    ``files`` are ``.txt`` (one document each), ``.jsonl`` (``{"text": ...}``
    per line; ``.gz``/``.zst`` too) or folders of them, read by
    :func:`llamaforge.data.read_documents`; ``texts`` is any iterable of
    documents (a generator is streamed, never held in memory). Both may be
    given: files first.

    ``input_sentence_size > 0`` trains on that many lines sampled uniformly
    from the input (SentencePiece's reservoir sampling), for corpora too big
    for RAM; 0 uses every line. With ``hard_vocab_limit=False`` a corpus too
    small for ``vocab_size`` gives a smaller vocabulary instead of an error
    (check ``Tokenizer.vocab_size`` before sizing the model). ``verbose``
    shows SentencePiece's own log, the only progress report of the merge
    phase that follows reading. ``extra_options`` go to
    ``SentencePieceTrainer.train`` last, overriding anything above.

    Both files are written atomically, so a failed or interrupted run leaves
    any previous tokenizer at ``output_path`` intact.
    """
    output = Path(output_path)
    _check_arguments(output, files, texts, vocab_size, character_coverage, max_sentence_length)
    if num_threads < 0:
        raise ConfigError(f"num_threads must be >= 0 (0 = all cores), got {num_threads}")
    sentences = _Sentences(_documents(files, texts), progress, _total(files, texts))
    model = io.BytesIO()
    options = {
        **LLAMA_TRAINER_OPTIONS,
        "vocab_size": vocab_size,
        "character_coverage": character_coverage,
        "max_sentence_length": max_sentence_length,
        "input_sentence_size": input_sentence_size,
        "shuffle_input_sentence": True,
        "hard_vocab_limit": hard_vocab_limit,
        "required_chars": "0123456789",
        "num_threads": num_threads or usable_cpus(),
        "minloglevel": 0 if verbose else 2,
        **(extra_options or {}),
    }
    start = time.perf_counter()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=sentences, model_writer=model, **options)
    except RuntimeError as error:
        if sentences.error is not None:
            raise sentences.error from None
        explained = _explain(error, vocab_size, sentences)
        if explained is None:
            raise
        raise explained from error
    finally:
        sentences.close()
    if sentences.error is not None:  # in case SentencePiece swallowed it
        raise sentences.error
    if progress:
        tqdm.write(
            f"trained {output.name}: {sentences.n_lines:,} lines from {sentences.n_docs:,} "
            f"document{'s' * (sentences.n_docs != 1)} in {time.perf_counter() - start:.1f}s"
        )

    output.parent.mkdir(parents=True, exist_ok=True)
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = "".join(
        f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n"
        for i in range(processor.vocab_size())
    )
    _atomic_write(output.with_suffix(".vocab"), vocab.encode("utf-8"))
    _atomic_write(output, model.getvalue())
    return Tokenizer(output)


def _check_arguments(
    output: Path,
    files: Sequence[str | os.PathLike] | None,
    texts: Iterable[str] | None,
    vocab_size: int,
    character_coverage: float,
    max_sentence_length: int,
) -> None:
    if output.suffix != ".model":
        raise ConfigError(
            f"tokenizer output {output} must end in .model (the .vocab is written beside it)"
        )
    if output.is_dir():
        raise ConfigError(
            f"tokenizer output {output} is a folder; give a file name ending in .model"
        )
    if files is None and texts is None:
        raise ConfigError("train_tokenizer needs files=[...] and/or texts=... to learn from")
    if isinstance(files, str | os.PathLike):
        raise ConfigError(f"files must be a list of paths, got the single path {files!r}")
    for path in files or []:
        if not Path(path).exists():
            raise DataError(f"tokenizer training input {path} does not exist")
    if isinstance(texts, str):
        raise ConfigError(
            "texts must be an iterable of documents, got a single str; wrap it in [...]"
        )
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ConfigError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if not 0 < character_coverage <= 1:
        raise ConfigError(f"character_coverage must be in (0, 1], got {character_coverage}")
    if max_sentence_length <= 0:
        raise ConfigError(f"max_sentence_length must be positive, got {max_sentence_length}")


def _documents(
    files: Sequence[str | os.PathLike] | None, texts: Iterable[str] | None
) -> Iterator[str]:
    if files:
        # Imported here: llamaforge.data pulls in torch, which training from texts does not need.
        from llamaforge.data.documents import read_documents

        yield from read_documents([Path(f) for f in files])
    if texts is not None:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"texts item {i} is a {type(text).__name__}, not a str")
            yield text


def _total(files: Sequence[Any] | None, texts: Iterable[str] | None) -> int | None:
    return len(texts) if not files and isinstance(texts, Sequence) else None


class _Sentences:
    """The line iterator SentencePiece pulls from, with a tqdm bar over documents.

    SentencePiece turns an exception raised by the iterator into a bare
    ``RuntimeError``; this iterator keeps the original, so ``train_tokenizer``
    can re-raise it (e.g. a ``DataError`` naming the bad JSONL line).
    """

    def __init__(self, documents: Iterator[str], progress: bool, total: int | None) -> None:
        self._lines = self._split(documents)
        self._bar = tqdm(desc="tokenizer: reading", unit="doc", total=total, disable=not progress)
        self.error: BaseException | None = None
        self._done = False
        self.n_docs = 0
        self.n_lines = 0

    def _split(self, documents: Iterator[str]) -> Iterator[str]:
        for document in documents:
            self.n_docs += 1
            self._bar.update(1)
            for line in document.split("\n"):
                if line:
                    self.n_lines += 1
                    yield line

    def __iter__(self) -> _Sentences:
        return self

    def __next__(self) -> str:
        if self.error is not None or self._done:
            raise StopIteration
        try:
            return next(self._lines)
        except StopIteration:
            self._done = True
            self._bar.set_description("tokenizer: learning merges")
            self._bar.refresh()
            raise
        except BaseException as error:  # re-raised by train_tokenizer
            self.error = error
            raise  # SentencePiece aborts with a RuntimeError

    def close(self) -> None:
        self._bar.close()


_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def _explain(error: RuntimeError, vocab_size: int, sentences: _Sentences) -> Exception | None:
    message = str(error)
    if sentences.n_lines == 0 or "sentences_.empty()" in message:
        return DataError(
            "no text to train the tokenizer on: the inputs are empty (or every line is longer "
            "than max_sentence_length)"
        )
    if match := _TOO_HIGH.search(message):
        return ConfigError(
            f"vocab_size={vocab_size} is too large for this corpus ({sentences.n_lines:,} lines): "
            f"BPE can only build {match.group(2)} pieces from it. Use --vocab-size <= "
            f"{match.group(2)}, add more text, or pass hard_vocab_limit=False to accept a "
            "smaller vocabulary"
        )
    if match := _TOO_LOW.search(message):
        return ConfigError(
            f"vocab_size={vocab_size} is below the {match.group(2)} pieces every tokenizer of "
            "this corpus needs (3 special tokens + 256 bytes + the characters kept by "
            "character_coverage); raise vocab_size or lower character_coverage"
        )
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    # Not mkstemp: its 0600 mode would make the tokenizer unreadable to other users.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
