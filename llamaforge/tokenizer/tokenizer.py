"""A thin, lossless wrapper around a SentencePiece BPE model (LLaMA §2.1).

LLaMA's tokenizer is a plain SentencePiece model, so the ``.model`` file this
project writes loads unchanged in ``sentencepiece``, in Hugging Face's
``LlamaTokenizer`` and in Meta's reference code. The wrapper adds what users
of this package rely on:

* clear errors (:class:`~llamaforge.errors.CheckpointError`) for a missing or
  corrupt model file instead of a C++ assertion;
* ``encode_batch`` on SentencePiece's native thread pool (the GIL is released),
  which is what makes tokenizing a corpus fast;
* a fix for the one text SentencePiece cannot round-trip on its own: the
  character U+2581 (``▁``) is SentencePiece's internal stand-in for a space,
  so ``"a▁b"`` would come back as ``"a b"``. We encode that character as its
  three UTF-8 byte-fallback tokens instead. Any SentencePiece decoder turns
  byte tokens back into the literal character, so ids we produce still decode
  correctly with raw ``sentencepiece`` or Hugging Face; only the *ids* for such
  text differ from what raw ``sentencepiece`` would emit. Text without U+2581
  (practically all text) gets exactly SentencePiece's ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from llamaforge.errors import CheckpointError, DataError

SPACE_SYMBOL = "\u2581"  # "▁": SentencePiece's meta symbol for a space

# Appending a serialized ``NormalizerSpec`` (ModelProto field 3) holding only
# ``add_dummy_prefix = false`` (NormalizerSpec field 3) to a model: protobuf
# merges repeated occurrences of a message field, so the copy loads with that
# one setting changed and everything else (vocabulary, rules) untouched.
_NO_DUMMY_PREFIX = b"\x1a\x02\x18\x00"


def _resolve_model_file(model_path: str | os.PathLike) -> Path:
    path = Path(model_path)
    if path.is_dir():
        # A checkpoint folder (see train/checkpoint.py) keeps its tokenizer beside the weights.
        if (path / "tokenizer.model").is_file():
            return path / "tokenizer.model"
        raise CheckpointError(
            f"{path} is a folder without tokenizer.model; pass the SentencePiece .model file"
        )
    if not path.is_file():
        raise CheckpointError(
            f"tokenizer model {path} does not exist; train one with "
            "`llamaforge train-tokenizer --input FILE... --output PATH.model`"
        )
    return path


def _load_processor(proto: bytes, path: Path) -> spm.SentencePieceProcessor:
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a SentencePiece model ({error}); pass the .model file written by "
            "`llamaforge train-tokenizer` (not the .vocab file)"
        ) from error
    if processor.vocab_size() <= 0:
        raise CheckpointError(f"{path} is not a SentencePiece model (it has an empty vocabulary)")
    return processor


def _check_utf8(text: str, what: str = "the text") -> None:
    """A lone surrogate (``"\\ud800"`` from JSON, bad bytes under ``surrogateescape``) is no text.

    SentencePiece's binding would fail on it with a C++ cast error that names
    nothing; this says what is wrong, as a :class:`DataError` the commands
    report in one line (and ``--skip-bad-lines`` readers count).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataError(
            f"{what} holds {text[error.start]!r} at character {error.start}, a lone surrogate "
            "that is not UTF-8 text; fix or drop it"
        ) from None


class Tokenizer:
    """Encode text to LLaMA-style token ids and back, losslessly.

    ``model_path`` is a SentencePiece ``.model`` file, or a checkpoint folder
    holding ``tokenizer.model``. ``bos=True, eos=False`` are the defaults of
    ``encode`` because that is how LLaMA prompts and training documents start
    (Meta's ``Tokenizer.encode`` asks for both explicitly; HF adds BOS only).
    ``pad_id`` is ``-1``: LLaMA has no padding token.
    """

    def __init__(self, model_path: str | os.PathLike) -> None:
        self.model_path: Path = _resolve_model_file(model_path)
        try:
            proto = self.model_path.read_bytes()
        except OSError as error:
            raise CheckpointError(
                f"cannot read tokenizer model {self.model_path}: {error}"
            ) from error
        self._setup(proto)

    def _setup(self, proto: bytes) -> None:
        self._proto = proto
        self._sp = _load_processor(proto, self.model_path)
        self._sp_no_prefix: spm.SentencePieceProcessor | None = None  # built on first use
        self.vocab_size: int = self._sp.vocab_size()
        self.bos_id: int = self._sp.bos_id()
        self.eos_id: int = self._sp.eos_id()
        self.pad_id: int = self._sp.pad_id()
        self.unk_id: int = self._sp.unk_id()
        space_bytes = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_SYMBOL.encode("utf-8")]
        # Models trained without byte fallback cannot spell U+2581; they stay lossy for it.
        self._space_symbol_ids = (
            space_bytes if all(self._sp.is_byte(i) for i in space_bytes) else None
        )

    # -- pickling: DataLoader workers and multiprocessing pools get a working copy
    def __getstate__(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "proto": self._proto}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model_path = state["model_path"]
        self._setup(state["proto"])

    def __repr__(self) -> str:
        return (
            f"Tokenizer({str(self.model_path)!r}, vocab_size={self.vocab_size}, "
            f"bos_id={self.bos_id}, eos_id={self.eos_id}, pad_id={self.pad_id})"
        )

    # -- encoding
    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of ``text``; BOS/EOS are added only when asked (and the model has them)."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        try:
            if self._space_symbol_ids is not None and SPACE_SYMBOL in text:
                return self._encode_with_space_symbol(text, bos, eos)
            return self._sp.encode(text, add_bos=bos, add_eos=eos)
        except (RuntimeError, TypeError):  # checked only then: no cost on the hot path
            _check_utf8(text)
            raise

    def encode_batch(
        self,
        texts: Sequence[str],
        bos: bool = True,
        eos: bool = False,
        num_threads: int = 0,
    ) -> list[list[int]]:
        """``[encode(t, bos, eos) for t in texts]``, on SentencePiece's thread pool.

        ``num_threads=0`` uses every core this process may run on
        (``os.sched_getaffinity``), which is what a corpus-tokenizing job
        wants; pass 1 to stay single-threaded (e.g. inside DataLoader workers).
        """
        batch = list(texts)
        if not batch:
            return []
        for i, text in enumerate(batch):
            if not isinstance(text, str):
                raise TypeError(f"encode_batch() takes strs, item {i} is a {type(text).__name__}")
        try:
            ids = self._sp.encode(
                batch, add_bos=bos, add_eos=eos, num_threads=_threads(num_threads, len(batch))
            )
        except (RuntimeError, TypeError):
            for i, text in enumerate(batch):
                _check_utf8(text, f"text {i} of the batch")
            raise
        if self._space_symbol_ids is not None:
            for i, text in enumerate(batch):
                if SPACE_SYMBOL in text:
                    ids[i] = self._encode_with_space_symbol(text, bos, eos)
        return ids

    def _encode_with_space_symbol(self, text: str, bos: bool, eos: bool) -> list[int]:
        """Encode the pieces between literal U+2581s; spell each U+2581 as byte tokens.

        The text gets SentencePiece's dummy-prefix space once, at its start
        (the one ``decode`` strips again), even when it starts with U+2581:
        then the prefix stands alone, as the space piece, before the bytes, as
        it does for any other text and in our Hugging Face ``tokenizer.json``.
        Later pieces are encoded by a copy of the model without the prefix, so
        no space appears after each U+2581.
        """
        if self._sp_no_prefix is None:
            self._sp_no_prefix = _load_processor(self._proto + _NO_DUMMY_PREFIX, self.model_path)
        assert self._space_symbol_ids is not None
        first, *rest = text.split(SPACE_SYMBOL)
        ids = [self.bos_id] if bos and self.bos_id >= 0 else []
        if first:
            ids += self._sp.encode(first)
        elif self._sp.encode("a") != self._sp_no_prefix.encode("a"):  # the model adds the prefix
            ids += self._sp_no_prefix.encode(" ")
        for part in rest:
            ids += self._space_symbol_ids
            ids += self._sp_no_prefix.encode(part)
        if eos and self.eos_id >= 0:
            ids.append(self.eos_id)
        return ids

    # -- decoding
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; BOS/EOS/pad are skipped, as in SentencePiece.

        Accepts lists, numpy arrays and torch tensors. Byte tokens that do not
        form valid UTF-8 (e.g. a generation cut mid-character) decode to U+FFFD.
        """
        return self._sp.decode(self._check_ids(ids))

    def decode_batch(self, batch: Sequence[Sequence[int]], num_threads: int = 0) -> list[str]:
        """``[decode(ids) for ids in batch]`` on SentencePiece's thread pool."""
        lists = [self._check_ids(ids) for ids in batch]
        if not lists:
            return []
        return self._sp.decode(lists, num_threads=_threads(num_threads, len(lists)))

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if values and not isinstance(values[0], int):
            values = [int(v) for v in values]
        if values and (min(values) < 0 or max(values) >= self.vocab_size):
            bad = next(v for v in values if not 0 <= v < self.vocab_size)
            raise ValueError(
                f"token id {bad} is outside this tokenizer's vocabulary [0, {self.vocab_size}) "
                f"({self.model_path}); were the ids made with another tokenizer?"
            )
        return values

    # -- vocabulary
    def id_to_piece(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` (``▁`` marks a leading space, ``<0x0A>`` a byte)."""
        return self._sp.id_to_piece(int(token_id))

    def piece_to_id(self, piece: str) -> int:
        """Id of a vocabulary entry; ``unk_id`` if there is no such piece."""
        return self._sp.piece_to_id(piece)


def _threads(num_threads: int, n_items: int) -> int:
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0 = all cores), got {num_threads}")
    return max(1, min(num_threads or usable_cpus(), n_items))


def usable_cpus() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike ``os.cpu_count``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1  # macOS, Windows
